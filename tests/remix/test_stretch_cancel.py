"""A cancel during a Rubber Band stretch takes effect within a second and leaves nothing behind.

coglet delivers a cancel by raising an exception into the prediction thread (``PyThreadState_SetAsyncExc``),
which only lands while Python bytecode runs; this test raises one the same way while a long stretch waits for
the rubberband program.
"""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import pytest

from fixtures.processes import cancel_while_a_child_runs, children
from musicgen_remix.remix import stretch

pytestmark = pytest.mark.skipif(shutil.which("rubberband") is None, reason="the rubberband program is missing")
SR = 32000


def test_an_exception_raised_into_the_waiting_thread_stops_the_stretch_and_kills_rubberband(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    wav = (np.random.default_rng(0).standard_normal((2, 240 * SR)) * 0.1).astype(np.float32)  # 4 minutes
    anchors = np.array([[0.0, 0.0], [120.0, 130.0], [240.0, 250.0]])
    seconds = cancel_while_a_child_runs(lambda: stretch.timemap_stretch(wav, SR, anchors, engine="rubberband"),
                                        program="rubberband", join_timeout_s=5.0)
    assert seconds < 1.0
    assert not children(program="rubberband")
    assert list(tmp_path.iterdir()) == []


def test_the_wait_polls_often_enough_for_a_cancel() -> None:
    assert stretch.POLL_S <= 0.1
