"""Chord segments to a frame-wise chroma: the conditioning signal of chord-guided generation.

Each frame holds the pitch classes of the chord sounding at its centre as a multi-hot 12-vector
(C = bin 0 ... B = bin 11) scaled by a coefficient; ``N`` and unlabelled time are all zeros. Segments
shorter than ``min_chord_s`` are first absorbed into a neighbour so that recognition flicker (a 0.1 s chord
between two long ones) does not reach the conditioning.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import mir_eval
import numpy as np

from musicgen_remix.analysis.chords import NO_CHORD, Chord, merge_chords
from musicgen_remix.errors import InputError

CHROMA_COEFFICIENT_RANGE = (0.5, 2.0)
"""Allowed ``chroma_coefficient`` values (inclusive)."""


def check_chroma_coefficient(value: float) -> float:
    """Return ``value`` as a float if it is a valid ``chroma_coefficient``.

    Raises:
        InputError: naming ``chroma_coefficient`` when ``value`` is not a number within [0.5, 2].
    """
    low, high = CHROMA_COEFFICIENT_RANGE
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not low <= number <= high:
        raise InputError("chroma_coefficient", value, f"a number from {low:g} to {high:g}")
    return number


def chords_to_chroma(
    chords: Sequence[Chord],
    duration: float,
    frame_rate: float,
    *,
    coefficient: float = 1.0,
    min_chord_s: float = 0.25,
) -> np.ndarray:
    """Render chord segments as a frame-wise multi-hot chroma.

    Steps:

    1. The segments are laid on ``[0, duration]``: clipped, gaps become ``N``, and a segment overlapped by a
       later-starting one ends where that one starts.
    2. Flicker is smoothed: while some segment is shorter than ``min_chord_s`` and others remain, the
       shortest is absorbed into its longer neighbour (the previous one on a tie, the only one at either end)
       and equal neighbours are merged.
    3. Frame ``i`` covers ``[i / frame_rate, (i + 1) / frame_rate)`` and takes the chord at its centre: the
       pitch classes of ``mir_eval.chord.encode`` (root, quality, added degrees with extensions folded into
       the octave, and the bass note) rotated from the root to absolute pitch classes, times ``coefficient``.

    Args:
        chords: Harte-labelled segments in seconds, in any order.
        duration: seconds to cover; the chroma has ``ceil(duration * frame_rate)`` frames.
        frame_rate: frames per second.
        coefficient: value of a sounding pitch class, see :func:`check_chroma_coefficient`.
        min_chord_s: segments shorter than this are absorbed; 0 keeps every segment.

    Returns:
        float32 ``[frames, 12]``.

    Raises:
        InputError: for an invalid ``chroma_coefficient``, a negative or non-finite ``duration`` or
            ``min_chord_s``, a non-positive ``frame_rate``, or a label mir_eval cannot read.
    """
    coefficient = check_chroma_coefficient(coefficient)
    if not (math.isfinite(duration) and duration >= 0):
        raise InputError("duration", duration, "a non-negative number of seconds")
    if not (math.isfinite(frame_rate) and frame_rate > 0):
        raise InputError("frame_rate", frame_rate, "a positive number of frames per second")
    if not (math.isfinite(min_chord_s) and min_chord_s >= 0):
        raise InputError("min_chord_s", min_chord_s, "a non-negative number of seconds")

    # A tiny tolerance keeps 10.0 s at 50 fps at 500 frames despite floating-point error.
    frames = max(0, math.ceil(duration * frame_rate - 1e-6))
    if frames == 0:
        return np.zeros((0, 12), dtype=np.float32)
    segments = smooth_chords(tile_chords(chords, duration), min_chord_s)
    centres = (np.arange(frames) + 0.5) / frame_rate
    ends = np.array([segment.end for segment in segments])
    index = np.minimum(np.searchsorted(ends, centres, side="right"), len(segments) - 1)
    table = np.stack([pitch_classes(segment.label) for segment in segments]) * np.float32(coefficient)
    return table[index].astype(np.float32, copy=False)


def tile_chords(chords: Sequence[Chord], duration: float) -> list[Chord]:
    """Contiguous segments covering ``[0, duration]``: clipped to it, gaps filled with ``N``, and a segment
    overlapped by a later-starting one cut where that one starts."""
    clipped = sorted(
        (max(c.start, 0.0), min(c.end, duration), c.label) for c in chords if min(c.end, duration) > max(c.start, 0.0)
    )
    tiles: list[Chord] = []
    cursor = 0.0
    for k, (start, end, label) in enumerate(clipped):
        if k + 1 < len(clipped):
            end = min(end, clipped[k + 1][0])
        if start > cursor:
            tiles.append(Chord(cursor, start, NO_CHORD))
        if end > start:
            tiles.append(Chord(start, end, label))
            cursor = end
    if cursor < duration or not tiles:
        tiles.append(Chord(cursor, duration, NO_CHORD))
    return merge_chords(tiles)


def smooth_chords(segments: Sequence[Chord], min_chord_s: float) -> list[Chord]:
    """Absorb segments shorter than ``min_chord_s`` into a neighbour, shortest first (rule: see
    :func:`chords_to_chroma`). ``segments`` must be contiguous, as :func:`tile_chords` returns them."""
    result = merge_chords(segments)
    while len(result) > 1:
        lengths = [s.end - s.start for s in result]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_chord_s:
            break
        before = lengths[i - 1] if i > 0 else -1.0
        after = lengths[i + 1] if i + 1 < len(result) else -1.0
        if before >= after:
            result[i - 1] = Chord(result[i - 1].start, result[i].end, result[i - 1].label)
        else:
            result[i + 1] = Chord(result[i].start, result[i + 1].end, result[i + 1].label)
        del result[i]
        result = merge_chords(result)
    return result


@functools.lru_cache(maxsize=512)
def pitch_classes(label: str) -> np.ndarray:
    """Multi-hot ``[12]`` float32 absolute pitch classes (C = 0) of a Harte label; ``N``/``X`` give zeros.

    Raises:
        InputError: naming ``chords`` when mir_eval cannot read ``label``.
    """
    try:
        root, bitmap, _ = mir_eval.chord.encode(label, reduce_extended_chords=True)
    except (mir_eval.chord.InvalidChordException, ValueError, KeyError, IndexError) as error:
        raise InputError("chords", label, "Harte chord labels such as C:maj, A:min7 or N") from error
    result = np.zeros(12, dtype=np.float32)
    if root >= 0:
        result[:] = np.roll(bitmap, root) > 0
    result.flags.writeable = False  # cached: shared between callers
    return result
