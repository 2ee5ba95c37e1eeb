"""Serving helpers shared by the Cog entrypoints, free of any Cog import.

Per-request temporary directories (one live at a time, removed as soon as it is no longer needed) and the
cancel flag that a prediction server's signal raises; both are process-level plumbing, kept here so that
``predict.py`` stays a thin typed adapter.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType

REQUEST_DIR_PREFIX = "musicgen-remix-"


class RequestDirs:
    """One temporary directory per request; the previous one is removed when the next request starts
    (Cog uploads the output after ``predict`` returns, so it cannot be removed any earlier)."""

    def __init__(self) -> None:
        self._last: Path | None = None

    def new(self) -> Path:
        self.cleanup()
        self._last = Path(tempfile.mkdtemp(prefix=REQUEST_DIR_PREFIX))
        return self._last

    def cleanup(self) -> None:
        if self._last is not None:
            shutil.rmtree(self._last, ignore_errors=True)
            self._last = None


def cancel_signal() -> threading.Event:
    """An event set when Cog asks to cancel the running prediction.

    Cog 0.16 cancels by sending SIGUSR1 to the worker, whose handler raises ``CancelationException`` in
    the predict thread. That class derives from ``Exception`` there, so any ``except Exception`` it passes
    through (logging's ``emit``, a model build) can swallow it. Chaining the handler keeps a record that
    the package's progress checks act on at the next step. Outside Cog 0.16's worker (no handler to
    chain, or not the main thread) the event is simply never set.
    """
    event = threading.Event()
    previous = signal.getsignal(signal.SIGUSR1)
    if not callable(previous):
        return event

    def handler(signum: int, frame: FrameType | None) -> None:
        event.set()
        previous(signum, frame)

    with contextlib.suppress(ValueError):  # signal handlers can only be set from the main thread
        signal.signal(signal.SIGUSR1, handler)
    return event
