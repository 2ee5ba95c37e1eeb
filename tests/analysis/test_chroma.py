"""Tests for musicgen_remix.analysis.chroma: chord segments to a multi-hot chroma, the denoising majority
vote MusicGen-Chord's own extractor applied, and the ``chroma_coefficient`` check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from musicgen_remix.analysis import Chord, check_chroma_coefficient, chords_to_chroma, pitch_classes
from musicgen_remix.analysis.chroma import majority_vote, tile_chords
from musicgen_remix.errors import InputError

FPS = 50.0


def bins(frame: np.ndarray) -> set[int]:
    return {int(i) for i in np.flatnonzero(frame)}


def test_chords_land_on_their_frames_with_the_coefficient() -> None:
    chords = [Chord(0.0, 1.0, "N"), Chord(1.0, 3.0, "C:maj"), Chord(3.0, 4.0, "A:min")]

    chroma = chords_to_chroma(chords, duration=4.0, frame_rate=FPS, coefficient=1.5, denoise=False)

    assert chroma.shape == (200, 12)
    assert chroma.dtype == np.float32
    assert not chroma[:50].any()  # N
    for frame in chroma[50:150]:
        assert bins(frame) == {0, 4, 7}
        assert set(frame[[0, 4, 7]]) == {1.5}
    for frame in chroma[150:]:
        assert bins(frame) == {9, 0, 4}


CHORD_FPS = 235 / 30  # MusicGen-Chord: 235 frames per 30 s window


@pytest.mark.parametrize(
    ("duration", "frame_rate", "frames"),
    [(10.0, 50.0, 500), (10.02, 50.0, 501), (10.0, CHORD_FPS, 78), (20.0, CHORD_FPS, 157), (0.0, 50.0, 0),
     (0.001, 50.0, 0)],
)
def test_a_song_covers_its_duration_times_frame_rate_rounded(duration: float, frame_rate: float, frames: int) -> None:
    """sakemin's extractor ends the last chord at ``round(end / timebin)``: the period a short song cycles with."""
    chroma = chords_to_chroma([Chord(0.0, duration, "G:maj")], duration, frame_rate)
    assert chroma.shape == (frames, 12)


def test_no_chord_and_gaps_are_zeros() -> None:
    chroma = chords_to_chroma([Chord(1.0, 2.0, "D:min")], duration=3.0, frame_rate=FPS)
    assert not chroma[:50].any() and not chroma[100:].any()
    assert bins(chroma[75]) == {2, 5, 9}
    assert not chords_to_chroma([Chord(0.0, 2.0, "N")], 2.0, FPS).any()
    assert not chords_to_chroma([], 2.0, FPS).any()


def test_majority_vote_is_sakemins_moving_average_filter() -> None:
    """ChordExtractor.forward: per pitch class, conv1d with ones(7)/7 and 3 zeros of padding, then > 0.5."""
    rng = np.random.default_rng(0)
    chroma = (rng.random((300, 12)) > 0.4).astype(np.float32)
    kernel = torch.ones(1, 1, 7) / 7
    theirs = torch.stack([torch.nn.functional.conv1d(torch.from_numpy(chroma[:, i]).view(1, 1, -1), kernel,
                                                     padding=3).view(-1) for i in range(12)], dim=-1) > 0.5
    assert np.array_equal(majority_vote(chroma, 7, 0.5), theirs.numpy().astype(np.float32))


def test_recognition_flicker_shorter_than_half_a_window_is_dropped() -> None:
    # At 235/30 frames/s: a 0.3 s chord is 2-3 frames (< 4 of 7: dropped), a 0.7 s one 5-6 frames (kept).
    chords = [Chord(0.0, 3.0, "C:maj"), Chord(3.0, 3.3, "G:maj"), Chord(3.3, 6.0, "A:min"), Chord(6.0, 6.7, "F:maj"),
              Chord(6.7, 9.0, "C:maj")]
    chroma = chords_to_chroma(chords, duration=9.0, frame_rate=CHORD_FPS)
    labels = {frozenset(bins(frame)) for frame in chroma}
    assert frozenset({7, 11, 2}) not in labels  # the 0.3 s G is gone
    assert frozenset({5, 9, 0}) in labels  # the 0.7 s F stays
    # A chord the caller wrote is theirs to keep, however short.
    written = chords_to_chroma(chords, duration=9.0, frame_rate=CHORD_FPS, denoise=False)
    assert frozenset({7, 11, 2}) in {frozenset(bins(frame)) for frame in written}


def test_the_vote_keeps_a_steady_chord_to_the_song_edges() -> None:
    chroma = chords_to_chroma([Chord(0.0, 5.0, "E:min")], duration=5.0, frame_rate=CHORD_FPS)
    assert all(bins(frame) == {4, 7, 11} for frame in chroma)


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


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf])
def test_chords_to_chroma_takes_a_checked_coefficient(value: float) -> None:
    with pytest.raises(ValueError, match="coefficient") as info:
        chords_to_chroma([Chord(0.0, 1.0, "C:maj")], 1.0, FPS, coefficient=value)
    assert not isinstance(info.value, InputError)


@pytest.mark.parametrize(("kwargs", "field"), [({"duration": -1.0}, "duration"), ({"frame_rate": 0.0}, "frame_rate")])
def test_other_arguments_are_checked(kwargs: dict, field: str) -> None:
    arguments = {"duration": 1.0, "frame_rate": FPS} | kwargs
    with pytest.raises(ValueError, match=f"^{field}="):
        chords_to_chroma([Chord(0.0, 1.0, "C:maj")], **arguments)
