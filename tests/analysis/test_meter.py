"""Tests for musicgen_remix.analysis.meter (the metrical decoder) and the tempo a musician would state.

Decoding is tested on synthetic per-tatum arrays; the tracker on short rendered pieces where madmom's DBN
alone reports another tempo or puts the downbeat elsewhere: a slow ballad in eighths, a bossa (read at double
tempo), a swung piano ballad, a 6/8 song (read at three times the counted beat) and a ballad's ritardando.
Chord boundaries are snapped to beats (plain arrays).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import mir_eval
import numpy as np
import pytest

from fixtures.songs import Piece, Song, have_fluidsynth, ramp, render_piece
from musicgen_remix.analysis import Beats, Chord, track_beats
from musicgen_remix.analysis.chords import snap_to_beats
from musicgen_remix.analysis.meter import bar_harmony, choose_meter, tatum_grid, track_pulse

needs_fluidsynth = pytest.mark.skipif(not have_fluidsynth(), reason="fluidsynth or the GM soundfont is missing")


def pattern(tatums: int, bar: int, accents: dict[int, float], downbeat: dict[int, float], period: float):
    """A tatum grid of ``tatums`` steps of ``period`` s with per-position accent and downbeat evidence."""
    grid = np.arange(tatums) * period
    position = np.arange(tatums) % bar
    accent = np.array([accents.get(int(p), -1.0) for p in position])
    evidence = np.array([downbeat.get(int(p), 0.0) for p in position])
    return grid, accent, evidence


@pytest.mark.parametrize(
    ("case", "bar", "accents", "downbeat", "period", "expected"),
    [
        # Eighths at 144 bpm, accents on the quarters, the chord changing on beat 1: 4/4 at 72.
        ("ballad", 8, {0: 2, 2: 1.5, 4: 2, 6: 1.5}, {0: 3, 4: 1.5}, 60 / 144, (2, 4)),
        # Eighths at 210 bpm in groups of three, the bar every six: 6/8 at 70.
        ("6/8", 6, {0: 2, 3: 1.8}, {0: 3, 3: 0.5}, 60 / 210, (3, 2)),
        # Quarters at 100 bpm, the bar every three: 3/4 at 100 (not 6/4 at 50).
        ("waltz", 3, {0: 2, 1: 0.5, 2: 0.5}, {0: 3}, 60 / 100, (1, 3)),
        # Eighths at 220 bpm, the chord changing every two beats: 2/4 at 110.
        ("march", 4, {0: 2, 2: 1.8}, {0: 3, 2: 0.2}, 60 / 220, (2, 2)),
    ],
)
def test_choose_meter_finds_the_counted_beat_and_the_bar(case, bar, accents, downbeat, period, expected):
    grid, accent, evidence = pattern(96, bar, accents, downbeat, period)
    shifted = 5  # the first downbeat is the fifth tatum
    meter = choose_meter(grid, np.roll(accent, shifted), np.roll(evidence, shifted))
    assert (meter.tatums_per_beat, meter.beats_per_bar) == expected, case
    assert meter.phase == shifted % (expected[0] * expected[1])


def test_bar_harmony_prefers_bars_cut_where_the_chords_change():
    rng = np.random.default_rng(3)
    chords = rng.random((12, 12))
    chroma = np.repeat(chords, 8, axis=0)[5:]  # a new chord every 8 tatums, the first change at tatum 3
    chroma = chroma + 0.05 * rng.random(chroma.shape)
    right = bar_harmony(chroma, 8, 3)
    assert right > bar_harmony(chroma, 8, 7)  # bar lines at the half bar
    assert right > bar_harmony(chroma, 4, 3)  # bars half as long
    assert right > 0 > bar_harmony(chroma, 8, 7)  # changes at bar lines, not inside bars


def test_choose_meter_needs_enough_tatums():
    assert choose_meter(np.arange(6) * 0.25, np.zeros(6), np.zeros(6)) is None


def test_tatum_grid_subdivides_by_where_the_onsets_are():
    fps, pulse = 100, np.arange(1.0, 9.0, 0.6)
    for parts, fraction in ((2, 1 / 2), (3, 2 / 3)):
        onset = np.full(1000, 0.01)
        for t in pulse:
            onset[round(t * fps)] = 1.0
            onset[round((t + fraction * 0.6) * fps)] = 0.7
        grid, found = tatum_grid(pulse, onset, fps)
        assert found == parts
        np.testing.assert_allclose(grid[::parts], pulse, atol=1e-9)


def test_track_pulse_of_silence_is_empty():
    assert track_pulse(np.full((500, 2), 1e-4), 100).size == 0


def test_snap_to_beats_moves_near_boundaries_and_keeps_half_bar_changes():
    beats = np.arange(0.0, 8.01, 0.5)  # 120 bpm
    chords = [Chord(0.0, 2.06, "C:maj"), Chord(2.06, 2.94, "F:maj"), Chord(2.94, 4.3, "G:7"),
              Chord(4.3, 8.0, "C:maj")]  # fmt: skip
    snapped = snap_to_beats(chords, beats)
    # 2.06 -> 2.0 and 2.94 -> 3.0 (within a quarter beat): the half-bar change stays a half bar; 4.3 is
    # 0.2 s from the nearest beat (more than a quarter of 0.5 s) and is kept.
    assert [(c.start, c.end, c.label) for c in snapped] == [
        (0.0, 2.0, "C:maj"), (2.0, 3.0, "F:maj"), (3.0, 4.3, "G:7"), (4.3, 8.0, "C:maj")]  # fmt: skip


def test_snap_to_beats_drops_segments_that_collapse():
    beats = np.arange(0.0, 4.01, 0.5)
    chords = [Chord(0.0, 1.02, "C:maj"), Chord(1.02, 1.06, "D:min"), Chord(1.06, 4.0, "G:maj")]
    assert [(c.start, c.label) for c in snap_to_beats(chords, beats)] == [(0.0, "C:maj"), (1.0, "G:maj")]


# ----------------------------------------------------------------------------------------------------
# Rendered pieces

PIECES = {
    "ballad-66": Piece("ballad-66", ("C:maj", "A:min", "F:maj", "G:7"), bpm=66, style="ballad", chord_program=4,
                       bass_program=32),
    "bossa-84": Piece("bossa-84", ("D:min7 G:7", "C:maj7", "A:min7 D:7", "G:maj7"), bpm=84, style="bossa",
                      chord_program=24, bass_program=32),
    "swung-ballad-64": Piece("swung-ballad-64", ("C:maj", "A:min7", "D:min7", "G:7"), bpm=64, style="ballad",
                             swing=2 / 3, chord_program=0, bass_program=33),
    "folk-6-8-70": Piece("folk-6-8-70", ("G:maj", "C:maj", "D:maj", "G:maj") * 2, meter=2, division=3, bpm=70,
                         style="folk", chord_program=25, bass_program=32),
    "ritardando": Piece("ritardando", ("C:maj", "A:min", "F:maj", "G:7") * 2, bpm=70, style="ballad",
                        tempo=ramp(16, 32, 70, 52), chord_program=0, bass_program=0),
}
_folder: list[tempfile.TemporaryDirectory] = []


@functools.cache
def tracked(name: str) -> tuple[Song, Beats]:
    if not _folder:
        _folder.append(tempfile.TemporaryDirectory(prefix="meter-"))
    song = render_piece(Path(_folder[0].name) / f"{name}.wav", PIECES[name], sample_rate=22050)
    from musicgen_remix.audio import read_audio

    return song, track_beats(read_audio(song.path))


@needs_fluidsynth
@pytest.mark.parametrize(("name", "bpm", "signature"), [
    # madmom's DBN alone (meters 3, 4) on these renders: 66.3 bpm but every downbeat on beat 3 (F 0.0) ...
    ("ballad-66", 66, "4/4"),
    ("bossa-84", 84, "4/4"),  # ... 166.7 bpm (downbeat F 0.62) ...
    ("swung-ballad-64", 64, "12/8"),  # ... 63.8 bpm, downbeat F 0.0; swung eighths divide the beat in three ...
    ("folk-6-8-70", 70, "6/8"),  # ... 206.9 bpm (every eighth) in 3/4
])  # fmt: skip
def test_tempo_is_the_beat_a_musician_counts(name: str, bpm: float, signature: str) -> None:
    song, beats = tracked(name)
    assert beats.bpm == pytest.approx(bpm, rel=0.04)
    assert beats.time_signature == signature
    assert mir_eval.beat.f_measure(np.array(song.beats), beats.times) >= 0.95
    assert mir_eval.beat.f_measure(np.array(song.downbeats), beats.downbeats) >= 0.9


@needs_fluidsynth
def test_downbeat_phase_holds_through_a_ritardando() -> None:
    song, beats = tracked("ritardando")
    slowing = np.array(song.downbeats)[np.array(song.downbeats) >= song.beats[16]]
    found = beats.downbeats[beats.downbeats >= song.beats[16] - 0.07]
    assert mir_eval.beat.f_measure(slowing, found) == 1.0
    assert beats.meter == 4
