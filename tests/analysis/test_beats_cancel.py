"""A cancel during beat tracking of a long piece takes effect within a second and leaves no process behind.

coglet delivers a cancel by raising an exception into the prediction thread (``PyThreadState_SetAsyncExc``),
which only lands while Python bytecode runs. madmom's beat-HMM Viterbi holds the GIL for seconds on a long
piece, so pulse tracking of a long piece runs in a forked child (``beats.in_child``); these tests raise an
exception the same way while the child computes.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

from fixtures.processes import cancel_while_a_child_runs, children
from musicgen_remix.analysis import beats
from musicgen_remix.analysis import meter as metre
from musicgen_remix.errors import AnalysisError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the child process needs fork")
FPS = 100.0


def pulse_activations(seconds: float, bpm: float = 100.0, seed: int = 0) -> np.ndarray:
    """``[F, 2]`` activations with a beat peak every ``60 / bpm`` s over low noise."""
    rng = np.random.default_rng(seed)
    frames = int(seconds * FPS)
    activations = 0.02 * rng.random((frames, 2))
    for beat, frame in enumerate(np.arange(0, frames, 60.0 * FPS / bpm).astype(int)):
        activations[frame, 1 if beat % 4 == 0 else 0] = 0.9
    return activations.astype(np.float32)


def test_a_long_piece_is_tracked_in_a_child_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    activations = pulse_activations(40.0)
    assert activations.shape[0] >= beats.PULSE_CHILD_MIN_FRAMES
    forks = []
    real_fork = os.fork

    def counting_fork() -> int:
        forks.append(threading.get_ident())
        return real_fork()

    monkeypatch.setattr(os, "fork", counting_fork)
    in_child = beats._track_pulse(activations, FPS)
    # Forked on a thread of its own: a cancel raised into this one cannot land in Python's at-fork handlers.
    assert len(forks) == 1 and forks[0] != threading.get_ident()
    np.testing.assert_array_equal(in_child, metre.track_pulse(activations, FPS))
    assert in_child.size > 50
    short = pulse_activations(10.0)
    np.testing.assert_array_equal(beats._track_pulse(short, FPS), metre.track_pulse(short, FPS))
    assert len(forks) == 1  # a short piece is tracked in this process
    assert not children() and not children(zombies=True)


def test_an_exception_raised_into_the_waiting_thread_kills_the_child_within_a_second() -> None:
    # Random activations keep the Viterbi of the slowest tempo window busy for over a second per 300 s.
    activations = np.random.default_rng(1).random((30000, 2)).astype(np.float32) * 0.5
    assert cancel_while_a_child_runs(lambda: beats._track_pulse(activations, FPS)) < 1.0
    assert not children() and not children(zombies=True)  # killed and reaped


def _fails(_: object) -> None:
    raise ValueError("broken on purpose")


def _dies(_: object) -> None:
    os._exit(3)


def test_a_failure_in_the_child_is_an_analysis_error() -> None:
    with pytest.raises(AnalysisError, match="_fails failed in its child process: ValueError: broken on purpose"):
        beats.in_child(_fails, 1)
    with pytest.raises(AnalysisError, match=r"_dies died in its child process \(exit status 3\)"):
        beats.in_child(_dies, 1)
    assert not children() and not children(zombies=True)


def _hangs(_: object) -> None:
    time.sleep(3600)


def test_a_child_that_does_not_answer_in_time_is_killed() -> None:
    started = time.monotonic()
    with pytest.raises(AnalysisError, match=r"_hangs did not answer from its child process within 0.3 s"):
        beats.in_child(_hangs, 1, deadline_s=0.3)
    assert time.monotonic() - started < 2.0
    assert not children() and not children(zombies=True)  # killed and reaped


def test_pulse_tracking_falls_back_to_this_process_when_the_child_fails(monkeypatch, caplog) -> None:
    activations = pulse_activations(30.0)
    expected = metre.track_pulse(activations, FPS)

    def stuck(*_: object, **__: object) -> None:
        raise AnalysisError("track_pulse did not answer from its child process within 120 s")

    monkeypatch.setattr(beats, "in_child", stuck)
    with caplog.at_level("WARNING", logger=beats.__name__):
        result = beats._track_pulse(activations, FPS)
    assert np.array_equal(result, expected)
    assert "tracking in this process instead" in caplog.text
