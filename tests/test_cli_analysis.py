"""The ``analyze`` and ``sync`` commands as users run them (``python -m musicgen_remix ...``): their contracts
are unchanged by the new tempo and sync (``analyze --json`` may only add keys), and they give the new results.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fixtures.songs import Piece, have_fluidsynth, render_piece

pytestmark = pytest.mark.skipif(not have_fluidsynth(), reason="fluidsynth or its General MIDI soundfont is missing")
REPO = Path(__file__).resolve().parents[1]
CONTRACT = {"duration": float, "sample_rate": int, "bpm": float, "beats": list, "downbeats": list, "chords": list,
            "meter": int}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "musicgen_remix", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_analyze_json_keeps_its_contract_and_states_a_6_8_tempo_as_a_musician_would(tmp_path: Path) -> None:
    piece = Piece("folk", ("G:maj", "C:maj", "D:maj", "G:maj") * 2, meter=2, division=3, bpm=70, style="folk",
                  chord_program=25, bass_program=32, lead_in=0.4)
    song = render_piece(tmp_path / "folk.wav", piece, sample_rate=22050)
    plot = tmp_path / "folk.pdf"
    done = run_cli("analyze", str(song.path), "--json", "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    assert plot.read_bytes().startswith(b"%PDF")  # the suffix decides the plot's format
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    data = json.loads(lines[0])
    for key, kind in CONTRACT.items():
        assert isinstance(data[key], kind), key
    assert all(isinstance(t, float) for t in data["beats"] + data["downbeats"])
    assert all(set(chord) == {"start", "end", "label", "name"} for chord in data["chords"])
    assert set(data) - set(CONTRACT) == {"time_signature", "key"}  # added keys only
    assert data["key"] == "G major"
    assert {c["name"] for c in data["chords"] if c["end"] - c["start"] > 1.0} >= {"G", "C", "D"}
    # The dotted-quarter tempo, two beats per bar (madmom's DBN alone said 207 bpm in 3/4).
    assert data["bpm"] == pytest.approx(70, rel=0.04)
    assert data["meter"] == 2 and data["time_signature"] == "6/8"
    assert data["downbeats"][0] == pytest.approx(0.4, abs=0.07)
    # A bar per stage on stderr, filled when the stage ends.
    assert "beats and tempo: 100%" in done.stderr and "1/1" in done.stderr, done.stderr
    assert "chords: 100%" in done.stderr


@pytest.mark.slow
def test_sync_aligns_a_take_that_starts_further_than_the_threshold_from_the_song(tmp_path: Path) -> None:
    from musicgen_remix.analysis.beats import track_beats
    from musicgen_remix.audio import read_audio
    from musicgen_remix.audio.tags import SOFTWARE, read_tags

    song = Piece("song", ("A:min", "F:maj", "C:maj", "G:maj") * 2, bpm=120, lead_in=0.2)
    take = dataclasses.replace(song, name="take", bpm=114, lead_in=1.4, chord_program=4)  # 1.2 s late, 5 % slower
    reference = render_piece(tmp_path / "ref.wav", song, sample_rate=32000)
    render_piece(tmp_path / "take.wav", take, sample_rate=32000)
    out = tmp_path / "synced.wav"
    plot = tmp_path / "sync.png"
    done = run_cli("sync", "--reference", str(reference.path), "--audio", str(tmp_path / "take.wav"), "-o", str(out),
                   "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    assert sf.info(out).frames == sf.info(reference.path).frames
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "moved 8 downbeats by" in done.stderr and "to land on ref.wav's" in done.stderr, done.stderr
    # Progress: the two downbeat grids as two steps, then the stretch.
    assert "beats and tempo: 100%" in done.stderr and "2/2" in done.stderr and "beat sync: 100%" in done.stderr
    # The output says what it is.
    tags = read_tags(out)
    assert tags["title"] == "take.wav synced to ref.wav" and tags["software"] == SOFTWARE
    record = json.loads(tags["comment"])
    assert (record["entrypoint"], record["reference"], record["audio"]) == ("sync", "ref.wav", "take.wav")
    assert record["inputs"] == {"threshold": None} and record["threshold_s"] > 0
    found = track_beats(read_audio(out)).downbeats
    errors = np.array([np.abs(found - d).min() for d in reference.downbeats])
    # madmom decodes at 10 ms frames: within 20 ms is within two frames of the song's downbeats.
    assert errors.max() <= 0.02, np.round(errors * 1000)
