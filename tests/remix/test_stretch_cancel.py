"""A cancel during a Rubber Band stretch takes effect within a second and leaves nothing behind.

coglet delivers a cancel by raising an exception into the prediction thread (``PyThreadState_SetAsyncExc``),
which only lands while Python bytecode runs; this test raises one the same way while a long stretch waits for
the rubberband program.
"""

from __future__ import annotations

import ctypes
import shutil
import tempfile
import threading
import time

import numpy as np
import pytest

from fixtures.processes import children
from musicgen_remix.remix import stretch

pytestmark = pytest.mark.skipif(shutil.which("rubberband") is None, reason="the rubberband program is missing")
SR = 32000


class InjectedCancel(BaseException):
    """Stands in for cog.CancelationException (a BaseException under coglet)."""


def test_an_exception_raised_into_the_waiting_thread_stops_the_stretch_and_kills_rubberband(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    wav = (np.random.default_rng(0).standard_normal((2, 240 * SR)) * 0.1).astype(np.float32)  # 4 minutes
    anchors = np.array([[0.0, 0.0], [120.0, 130.0], [240.0, 250.0]])
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            stretch.timemap_stretch(wav, SR, anchors, engine="rubberband")
            outcome["result"] = "finished"
        except InjectedCancel:
            outcome["result"] = "canceled"
            outcome["at"] = time.monotonic()

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 20
    while not children(program="rubberband") and time.monotonic() < deadline:  # wait until rubberband runs
        time.sleep(0.02)
    assert children(program="rubberband"), "rubberband did not start"
    time.sleep(0.3)
    raised = time.monotonic()
    raise_into = ctypes.pythonapi.PyThreadState_SetAsyncExc
    assert raise_into(ctypes.c_ulong(worker.ident), ctypes.py_object(InjectedCancel)) == 1
    worker.join(timeout=5)

    assert not worker.is_alive()
    assert outcome["result"] == "canceled"
    assert outcome["at"] - raised < 1.0  # type: ignore[operator]
    assert not children(program="rubberband")
    assert list(tmp_path.iterdir()) == []


def test_the_wait_polls_often_enough_for_a_cancel() -> None:
    assert stretch.POLL_S <= 0.1
