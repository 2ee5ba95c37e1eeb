"""Chord segments to a frame-wise chroma: the conditioning signal of chord-guided generation.

Each frame holds the pitch classes of the chord sounding at its centre as a multi-hot 12-vector
(C = bin 0 ... B = bin 11) scaled by a coefficient; ``N`` and unlabelled time are all zeros.

Parity with what MusicGen-Chord saw (sakemin's ``ChordExtractor.forward`` in cog-musicgen-chord's
``audiocraft/modules/chord_chroma.py``): recognised chords become frames at ``round(time * frame_rate)``
boundaries, a song covers ``round(duration * frame_rate)`` frames (the period a short song is cycled
with), and the multi-hot frames are denoised by a 7-frame majority vote per pitch class (a moving average
zero-padded by 3 frames, kept where it exceeds 0.5), which drops chords shorter than about 0.45 s. His
text-chord path is not denoised, and neither are chords a caller gives (:func:`chords_to_chroma`'s
``denoise``). One difference, kept on purpose: the vote runs over the whole song, where his ran per
30 s generation window and so thinned chords at every window edge.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import mir_eval
import numpy as np

from musicgen_remix.analysis.chords import NO_CHORD, Chord, merge_chords
from musicgen_remix.errors import InputError, contract_error

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


DENOISE_FRAMES = 7
"""Frames of sakemin's majority vote (``denoise_window_size``): about 0.89 s at 7.83 frames/s."""
DENOISE_THRESHOLD = 0.5


def chords_to_chroma(
    chords: Sequence[Chord],
    duration: float,
    frame_rate: float,
    *,
    coefficient: float = 1.0,
    denoise: bool = True,
) -> np.ndarray:
    """Render chord segments as a frame-wise multi-hot chroma.

    Steps:

    1. The segments are laid on ``[0, duration]``: clipped, gaps become ``N``, and a segment overlapped by a
       later-starting one ends where that one starts.
    2. Frame ``i`` covers ``[i / frame_rate, (i + 1) / frame_rate)`` and takes the chord at its centre: the
       pitch classes of ``mir_eval.chord.encode`` (root, quality, added degrees with extensions folded into
       the octave, and the bass note) rotated from the root to absolute pitch classes.
    3. With ``denoise``, each pitch class keeps only frames where most of the 7 frames around it sound it
       (recognition flicker shorter than about 0.45 s disappears), as MusicGen-Chord's own extractor did.
    4. Every value is multiplied by ``coefficient``.

    Args:
        chords: Harte-labelled segments in seconds, in any order.
        duration: seconds to cover; the chroma has ``round(duration * frame_rate)`` frames.
        frame_rate: frames per second.
        coefficient: value of a sounding pitch class, see :func:`check_chroma_coefficient`.
        denoise: apply the majority vote (recognised chords); False for chords a caller wrote.

    Returns:
        float32 ``[frames, 12]``.

    Raises:
        InputError: naming ``chords`` for a label mir_eval cannot read.
        ValueError: a coefficient, ``duration`` or ``frame_rate`` that is not a positive finite number (a bug:
            the ``chroma_coefficient`` input is checked by :func:`check_chroma_coefficient` up front).
    """
    if not (math.isfinite(coefficient) and coefficient > 0):
        raise contract_error("coefficient", coefficient, "a finite number > 0")
    if not (math.isfinite(duration) and duration >= 0):
        raise contract_error("duration", duration, "a non-negative number of seconds")
    if not (math.isfinite(frame_rate) and frame_rate > 0):
        raise contract_error("frame_rate", frame_rate, "a positive number of frames per second")

    frames = round(duration * frame_rate)
    if frames == 0:
        return np.zeros((0, 12), dtype=np.float32)
    segments = tile_chords(chords, duration)
    centres = (np.arange(frames) + 0.5) / frame_rate
    ends = np.array([segment.end for segment in segments])
    index = np.minimum(np.searchsorted(ends, centres, side="right"), len(segments) - 1)
    chroma = np.stack([pitch_classes(segment.label) for segment in segments])[index]
    if denoise:
        chroma = majority_vote(chroma, DENOISE_FRAMES, DENOISE_THRESHOLD)
    return (chroma * np.float32(coefficient)).astype(np.float32, copy=False)


def majority_vote(chroma: np.ndarray, window: int, threshold: float) -> np.ndarray:
    """Per pitch class, 1 where the mean of the ``window`` frames centred on a frame (zeros beyond the
    ends) exceeds ``threshold``, else 0. ``chroma``: ``[frames, 12]`` of 0/1; ``window`` odd."""
    pad = (window - 1) // 2
    padded = np.pad(chroma.astype(np.float32), ((pad + 1, pad), (0, 0)))
    sums = np.cumsum(padded, axis=0)
    mean = (sums[window:] - sums[:-window]) / window
    return (mean > threshold).astype(np.float32)


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
