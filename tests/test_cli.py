"""The command line, run as users run it (``python -m musicgen_remix ...`` in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, weights: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if weights is not None:
        env["MUSICGEN_REMIX_WEIGHTS"] = str(weights)
    return subprocess.run([sys.executable, "-m", "musicgen_remix", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.songs import have_fluidsynth, render_song

    if not have_fluidsynth():
        pytest.skip("fluidsynth or its General MIDI soundfont is missing")
    path = tmp_path_factory.mktemp("cli") / "song.wav"
    render_song(path, progression=["C:maj", "G:maj", "A:min", "F:maj"], bpm=120, bars=6, offset=0.5,
                vocal_line=True)
    return path


def test_generate_writes_the_requested_file(tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen.flac"
    done = run_cli("generate", "--prompt", "lofi beat", "--duration", "3", "--seed", "0", "-o", str(out),
                   weights=tiny_weights)
    assert done.returncode == 0, done.stderr
    info = sf.info(out)
    assert info.format == "FLAC" and info.samplerate == 32000 and abs(info.duration - 3.0) < 0.01
    assert "seed 0" in done.stderr


def test_generate_reports_bad_input_with_the_field_name(tiny_weights: Path, tmp_path: Path) -> None:
    done = run_cli("generate", "--prompt", "x", "--top-p", "2", "-o", str(tmp_path / "x.wav"), weights=tiny_weights)
    assert done.returncode == 2
    assert "top_p" in done.stderr and not (tmp_path / "x.wav").exists()


def test_analyze_json_prints_one_object_with_the_contract(song: Path) -> None:
    done = run_cli("analyze", str(song), "--json")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert isinstance(data["duration"], float) and isinstance(data["sample_rate"], int)
    assert data["bpm"] == pytest.approx(120, abs=1.5)
    assert all(isinstance(t, float) for t in data["beats"] + data["downbeats"])
    assert data["downbeats"][0] == pytest.approx(0.5, abs=0.07)
    assert {"start", "end", "label"} <= set(data["chords"][0])
    labels = [c["label"] for c in data["chords"] if c["end"] - c["start"] > 1.0]
    assert labels[:4] == ["C:maj", "G:maj", "A:min", "F:maj"]


def test_analyze_without_json_prints_a_summary(song: Path) -> None:
    done = run_cli("analyze", str(song))
    assert done.returncode == 0, done.stderr
    assert "tempo: 120" in done.stdout and "C:maj" in done.stdout


def test_sync_aligns_a_take_to_the_reference(tmp_path: Path) -> None:
    from fixtures.songs import have_fluidsynth, render_song

    if not have_fluidsynth():
        pytest.skip("fluidsynth or its General MIDI soundfont is missing")
    progression = ["A:min", "F:maj", "C:maj", "G:maj"]
    ref = render_song(tmp_path / "ref.wav", progression=progression, bpm=120, bars=6)
    render_song(tmp_path / "take.wav", progression=progression, bpm=114, bars=6, offset=0.3)
    out = tmp_path / "synced.wav"
    done = run_cli("sync", "--reference", str(tmp_path / "ref.wav"), "--audio", str(tmp_path / "take.wav"),
                   "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert sf.info(out).frames == sf.info(tmp_path / "ref.wav").frames
    found = json.loads(run_cli("analyze", str(out), "--json").stdout)["downbeats"]
    # Every bar after the first (whose region from 0 s is beyond the stretch bound) lands on the reference.
    errors = [min(abs(f - d) for f in found) for d in ref.downbeats[1:]]
    assert max(errors) <= 0.02, errors


def test_remix_writes_the_mix_and_the_extras(tiny_weights: Path, song: Path, tmp_path: Path) -> None:
    outs = {name: tmp_path / name for name in ("mix.mp3", "inst.wav", "voc.wav", "analysis.json", "plot.png")}
    done = run_cli("remix", "--music-input", str(song), "--prompt", "reggae", "--seed", "1", "--model-version",
                   "chord", "-o", str(outs["mix.mp3"]), "--instrumental", str(outs["inst.wav"]), "--vocals",
                   str(outs["voc.wav"]), "--analysis", str(outs["analysis.json"]), "--plot", str(outs["plot.png"]),
                   weights=tiny_weights)
    assert done.returncode == 0, done.stderr
    assert all(path.exists() for path in outs.values())
    assert sf.info(outs["inst.wav"]).duration == pytest.approx(sf.info(song).duration, abs=0.01)
    assert json.loads(outs["analysis.json"].read_text())["analysis"]["bpm"] == pytest.approx(120, abs=1.5)
    assert outs["plot.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_weights_list_names_every_asset() -> None:
    done = run_cli("weights", "list")
    assert done.returncode == 0, done.stderr
    for name in ("musicgen-melody", "musicgen-stereo-chord", "htdemucs", "t5-base", "mbd", "encodec-32khz"):
        assert name in done.stdout
