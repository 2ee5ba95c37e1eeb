"""Progress reporting per generation step, with a cancellation check at each step."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from musicgen_remix.errors import Canceled

logger = logging.getLogger(__name__)

# (stage, done, total): the CLI draws a bar from it, the server logs it.
ProgressFn = Callable[[str, int, int], None]


@dataclass
class Progress:
    """Counts steps of a stage across generation windows and stops when asked to.

    Args:
        report: called with (stage, done, total) at each step.
        cancel: set it (from any thread) to stop at the next step with :class:`Canceled`.
    """

    report: ProgressFn | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def step(self, stage: str, done: int, total: int) -> None:
        if self.cancel.is_set():
            raise Canceled(f"canceled during {stage} at step {done}/{total}")
        if self.report is not None:
            self.report(stage, done, total)

    def check(self) -> None:
        if self.cancel.is_set():
            raise Canceled("canceled")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """A stage done in one go (no steps of its own): reported when it starts and when it ends."""
        self.step(name, 0, 1)
        yield
        self.step(name, 1, 1)


def log_progress(every_s: float = 2.0) -> ProgressFn:
    """A reporter for logs: the first and last step of each stage, and a line at most every ``every_s``
    seconds in between, with the time left at the stage's pace so far."""
    stage_now: list[str | None] = [None]
    started = [0.0]
    last = [0.0]

    def report(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != stage_now[0]:
            stage_now[0], started[0], last[0] = stage, now, 0.0
        if done <= 1 or done >= total or now - last[0] >= every_s:
            last[0] = now
            left = f", about {(now - started[0]) / done * (total - done):.0f} s left" if 1 < done < total else ""
            logger.info("%s: %d/%d steps%s", stage, done, total, left)

    return report
