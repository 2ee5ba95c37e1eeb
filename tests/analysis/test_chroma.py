"""Tests for musicgen_remix.analysis.chroma: chord segments to a multi-hot chroma, flicker smoothing,
and the ``chroma_coefficient`` check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicgen_remix.analysis import Chord, check_chroma_coefficient, chords_to_chroma, pitch_classes
from musicgen_remix.analysis.chroma import smooth_chords, tile_chords
from musicgen_remix.errors import InputError

FPS = 50.0


def bins(frame: np.ndarray) -> set[int]:
    return {int(i) for i in np.flatnonzero(frame)}


def test_chords_land_on_their_frames_with_the_coefficient() -> None:
    chords = [Chord(0.0, 1.0, "N"), Chord(1.0, 3.0, "C:maj"), Chord(3.0, 4.0, "A:min")]

    chroma = chords_to_chroma(chords, duration=4.0, frame_rate=FPS, coefficient=1.5)

    assert chroma.shape == (200, 12)
    assert chroma.dtype == np.float32
    assert not chroma[:50].any()  # N
    for frame in chroma[50:150]:
        assert bins(frame) == {0, 4, 7}
        assert set(frame[[0, 4, 7]]) == {1.5}
    for frame in chroma[150:]:
        assert bins(frame) == {9, 0, 4}


@pytest.mark.parametrize(
    ("duration", "frame_rate", "frames"),
    [(10.0, 50.0, 500), (10.01, 50.0, 501), (4.0, 43.06640625, 173), (0.0, 50.0, 0), (0.001, 50.0, 1)],
)
def test_shape_is_duration_times_frame_rate_rounded_up(duration: float, frame_rate: float, frames: int) -> None:
    chroma = chords_to_chroma([Chord(0.0, duration, "G:maj")], duration, frame_rate)
    assert chroma.shape == (frames, 12)
    assert frames == math.ceil(duration * frame_rate - 1e-6)


def test_no_chord_and_gaps_are_zeros() -> None:
    chroma = chords_to_chroma([Chord(1.0, 2.0, "D:min")], duration=3.0, frame_rate=FPS)
    assert not chroma[:50].any() and not chroma[100:].any()
    assert bins(chroma[75]) == {2, 5, 9}
    assert not chords_to_chroma([Chord(0.0, 2.0, "N")], 2.0, FPS).any()
    assert not chords_to_chroma([], 2.0, FPS).any()


def test_flicker_is_absorbed_into_the_longer_neighbour() -> None:
    chords = [Chord(0.0, 2.0, "C:maj"), Chord(2.0, 2.1, "G:maj"), Chord(2.1, 3.0, "A:min"), Chord(3.0, 4.0, "F:maj")]

    chroma = chords_to_chroma(chords, duration=4.0, frame_rate=FPS, min_chord_s=0.25)

    assert all(bins(frame) == {0, 4, 7} for frame in chroma[:100])  # C absorbed the 0.1 s G
    assert not any(bins(frame) == {7, 11, 2} for frame in chroma)
    assert all(bins(frame) == {9, 0, 4} for frame in chroma[105:150])
    assert all(bins(frame) == {5, 9, 0} for frame in chroma[150:])


def test_flicker_of_no_chord_and_at_the_edges_is_absorbed() -> None:
    chords = [Chord(0.0, 0.1, "G:maj"), Chord(0.1, 2.0, "C:maj"), Chord(2.0, 2.05, "N"), Chord(2.05, 4.0, "C:maj"),
              Chord(4.0, 4.2, "E:min")]  # fmt: skip
    assert smooth_chords(tile_chords(chords, 4.2), 0.25) == [Chord(0.0, 4.2, "C:maj")]
    chroma = chords_to_chroma(chords, duration=4.2, frame_rate=FPS)
    assert all(bins(frame) == {0, 4, 7} for frame in chroma)


def test_smoothing_keeps_segments_at_the_limit_and_can_be_disabled() -> None:
    chords = [Chord(0.0, 1.0, "C:maj"), Chord(1.0, 1.25, "G:maj"), Chord(1.25, 2.0, "C:maj")]
    assert smooth_chords(tile_chords(chords, 2.0), 0.25) == chords
    flicker = [Chord(0.0, 1.0, "C:maj"), Chord(1.0, 1.02, "G:maj"), Chord(1.02, 2.0, "A:min")]
    assert smooth_chords(flicker, 0.0) == flicker
    chroma = chords_to_chroma(flicker, 2.0, frame_rate=FPS, min_chord_s=0.0)
    assert bins(chroma[50]) == {7, 11, 2}  # frame [1.00, 1.02) is G


def test_a_tie_goes_to_the_previous_segment() -> None:
    # Binary fractions, so both neighbours are exactly 1 s long.
    chords = [Chord(0.0, 1.0, "C:maj"), Chord(1.0, 1.125, "G:maj"), Chord(1.125, 2.125, "A:min")]
    assert smooth_chords(chords, 0.25) == [Chord(0.0, 1.125, "C:maj"), Chord(1.125, 2.125, "A:min")]


def test_tiling_clips_fills_gaps_and_cuts_overlaps() -> None:
    chords = [Chord(2.5, 9.0, "G:maj"), Chord(-1.0, 1.0, "C:maj"), Chord(1.5, 3.0, "A:min")]
    assert tile_chords(chords, 4.0) == [
        Chord(0.0, 1.0, "C:maj"),
        Chord(1.0, 1.5, "N"),
        Chord(1.5, 2.5, "A:min"),  # cut where the later-starting G begins
        Chord(2.5, 4.0, "G:maj"),
    ]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("C:maj", {0, 4, 7}),
        ("A:min", {9, 0, 4}),
        ("G:7", {7, 11, 2, 5}),
        ("F#:min7", {6, 9, 1, 4}),
        ("Bb:maj", {10, 2, 5}),
        ("C:maj/b7", {0, 4, 7, 10}),  # the bass note sounds too
        ("C:maj9", {0, 4, 7, 11, 2}),  # extensions fold into the octave
        ("D:sus4", {2, 7, 9}),
        ("N", set()),
        ("X", set()),
    ],
)
def test_pitch_classes_are_absolute(label: str, expected: set[int]) -> None:
    assert bins(pitch_classes(label)) == expected
    assert pitch_classes(label).dtype == np.float32


def test_unreadable_labels_are_input_errors() -> None:
    with pytest.raises(InputError) as info:
        chords_to_chroma([Chord(0.0, 1.0, "C:nope")], 1.0, FPS)
    assert info.value.field == "chords"


@pytest.mark.parametrize("value", [0.5, 1, 1.25, 2.0])
def test_chroma_coefficient_in_range(value: float) -> None:
    assert check_chroma_coefficient(value) == float(value)


@pytest.mark.parametrize("value", [0.49, 2.01, 0, -1, math.nan, math.inf, "1", None, True])
def test_chroma_coefficient_out_of_range_names_the_field(value: object) -> None:
    with pytest.raises(InputError) as info:
        check_chroma_coefficient(value)  # type: ignore[arg-type]
    assert info.value.field == "chroma_coefficient"
    assert "0.5" in info.value.allowed and "2" in info.value.allowed
    with pytest.raises(InputError):
        chords_to_chroma([Chord(0.0, 1.0, "C:maj")], 1.0, FPS, coefficient=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"duration": -1.0}, "duration"), ({"frame_rate": 0.0}, "frame_rate"), ({"min_chord_s": -0.1}, "min_chord_s")],
)
def test_other_arguments_are_checked(kwargs: dict, field: str) -> None:
    arguments = {"duration": 1.0, "frame_rate": FPS, "min_chord_s": 0.25} | kwargs
    with pytest.raises(InputError) as info:
        chords_to_chroma([Chord(0.0, 1.0, "C:maj")], **arguments)
    assert info.value.field == field
