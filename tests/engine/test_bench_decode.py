"""``python -m benchmarks.decode``: on the tiny weights its last line is one JSON object with the figures; on a
weights root with nothing in it the lookup-table text conditioner stands in for T5, and an architecture that cannot
run without an asset says so in one line instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_bench_decode_reports_json(tiny_weights: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import decode

    monkeypatch.setenv("MUSICGEN_REMIX_WEIGHTS", str(tiny_weights))
    assert decode.main(["--arch", "tiny", "--seconds", "0.3", "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["text_conditioner"] == "t5"  # the tiny weights' T5
    assert result["tokens_equal"] is True and result["tokens_equal_sampled"] is True and result["fast_path"]
    assert result["steps"] == 15 + 3 and result["stock_steps_per_s"] > 0 and result["ours_steps_per_s"] > 0
    assert result["ratio"] > 0 and result["peak_mem_bytes"] >= 0 and result["bound_steps_per_s"] is None
    with pytest.raises(SystemExit):
        decode.main(["--arch", "tiny", "--seconds", "0"])
    assert "--seconds=0.0 is not allowed" in capsys.readouterr().err


@pytest.fixture
def empty_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "weights"
    (root / "hf" / "models--t5-base" / "snapshots").mkdir(parents=True)  # what a failed fetch may leave
    monkeypatch.setenv("MUSICGEN_REMIX_WEIGHTS", str(root))
    return root


def test_without_t5_the_lookup_table_stands_in(empty_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import decode

    assert decode.main(["--arch", "tiny", "--seconds", "0.1", "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["text_conditioner"] == "lut" and result["tokens_equal"] is True


def test_melody_without_htdemucs_is_one_error_line(empty_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import decode

    assert decode.main(["--arch", "melody", "--seconds", "0.1", "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error" in line]
    assert line.startswith("python -m benchmarks.decode: error: weights 'htdemucs' are not under")
    assert "--arch melody needs it" in line and "weights fetch htdemucs" in line and "fixtures.weights" in line
    assert "Traceback" not in err and "usage:" not in err
