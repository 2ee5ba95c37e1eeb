"""Global alignment of two downbeat sequences: which bar of the take is which bar of the song.

Pairing each downbeat with the nearest one fails as soon as the two first downbeats are further apart than
the threshold (a lead-in, a pickup bar, a take that starts a second later): nothing is paired, or every bar
is paired with its neighbour. So before any threshold, :func:`find_alignment` tries every bar shift ``k``
(take downbeat ``i`` is song downbeat ``i + k``) whose first pair is at most ``MAX_OFFSET_S`` apart, at the
bar-length tempo ratio and at 1, and scores each:

- **downbeat agreement**: the downbeats are walked in time order from that first pair, each compared with
  where the pairs before it put it (the line through the last few pairs, so a drifting tempo is followed); a
  soft count ``exp(-(residual / 60 ms)^2)`` over the pairs, divided by the shorter sequence's length;
- **harmony** (when the caller gives a similarity function, :mod:`musicgen_remix.remix.agreement`): the
  chroma agreement of the two recordings under that hypothesis' time map, weighted ``W_HARMONY``; an
  instrumental follows the song's chords, so the right bar shift agrees and a shifted one does not;
- a small prior for the first-downbeat-to-first-downbeat shift (``W_SHIFT`` per bar away from it), which
  decides between shifts that nothing else tells apart.

:func:`match` is the walk itself; :func:`line_without` gives the alignment's prediction for a downbeat from
the other pairs only, so that a pair's distance from "where the alignment puts it" is a real prediction error
(the caller's threshold is compared with it), never zero by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAX_OFFSET_S = 4.0
"""Largest distance between the first paired downbeats that is searched (lead-ins, takes starting late)."""
MAX_RATIO = 1.5
"""Largest tempo ratio (and inverse) considered; as beatsync.MAX_STRETCH."""
MATCH_TOLERANCE_S = 0.25
"""While scoring hypotheses, a downbeat this close to its predicted place counts (softly) as agreeing."""
RESIDUAL_SCALE_S = 0.06
W_HARMONY = 1.0
W_SHIFT = 0.02
TEMPO_WINDOW_PAIRS = 5
"""Pairs whose tempo predicts the next downbeat: a few bars, so a slow change is followed."""

Pairs = np.ndarray  # float64 [M, 2] (source s, target s)


@dataclass(frozen=True)
class Alignment:
    """The chosen global alignment.

    Attributes:
        shift: bar shift: take downbeat ``i`` is song downbeat ``i + shift`` (counted inside both timelines).
        ratio: tempo ratio the walk started from (target seconds per source second).
        pairs: float64 ``[M, 2]`` the hypothesis' pairs at ``MATCH_TOLERANCE_S`` (not yet thresholded).
        agreement: soft share of agreeing downbeats, 0-1.
        harmony: chroma agreement under the hypothesis' map (-1 to 1), None when not measured.
        score: ``agreement + W_HARMONY * harmony - W_SHIFT * |bars from first-to-first|``.
    """

    shift: int
    ratio: float
    pairs: Pairs
    agreement: float
    harmony: float | None
    score: float

    @property
    def offset(self) -> float:
        """Target minus source at the first pair, in seconds."""
        return float(self.pairs[0, 1] - self.pairs[0, 0]) if len(self.pairs) else 0.0


def find_alignment(
    source: np.ndarray,
    target: np.ndarray,
    *,
    harmony: Callable[[Pairs], float | None] | None = None,
) -> Alignment | None:
    """The best bar shift and tempo between two sorted downbeat sequences (see the module docstring).

    Args:
        source: downbeats of the audio to be stretched (seconds, sorted, inside its timeline).
        target: downbeats of the song (seconds, sorted, inside its timeline).
        harmony: scores a hypothesis' pairs by how well the two recordings agree under the map through them.

    Returns:
        None when either sequence is empty or no hypothesis pairs two downbeats.
    """
    if source.size == 0 or target.size == 0:
        return None
    ratios = {1.0}
    if source.size > 1 and target.size > 1:
        bar_ratio = float(np.median(np.diff(target)) / np.median(np.diff(source)))
        if 1 / MAX_RATIO <= bar_ratio <= MAX_RATIO:
            ratios.add(round(bar_ratio, 6))
    best: Alignment | None = None
    for shift in range(-(source.size - 1), target.size):
        first_source, first_target = max(0, -shift), max(0, shift)
        if abs(target[first_target] - source[first_source]) > MAX_OFFSET_S:
            continue
        for ratio in sorted(ratios):
            start = (float(source[first_source]), float(target[first_target]))
            pairs, residuals = match(source[first_source:], target[first_target:], MATCH_TOLERANCE_S, start, ratio)
            if len(pairs) < 1:
                continue
            agreement = float(np.exp(-((residuals / RESIDUAL_SCALE_S) ** 2)).sum()) / min(source.size, target.size)
            agreement_in_harmony = harmony(pairs) if harmony is not None else None
            score = agreement - W_SHIFT * abs(shift)
            if agreement_in_harmony is not None:
                score += W_HARMONY * agreement_in_harmony
            if best is None or score > best.score:
                best = Alignment(shift, ratio, pairs, agreement, agreement_in_harmony, score)
    return best


def match(
    source: np.ndarray,
    target: np.ndarray,
    tolerance: float,
    start: tuple[float, float] | Callable[[float], float],
    ratio: float,
) -> tuple[Pairs, np.ndarray]:
    """Walk ``source`` in time order, pairing each downbeat with the nearest free ``target`` downbeat after the
    last pair when it is within ``tolerance`` of where it is expected.

    The first expectation comes from ``start``: a (source, target) point the map goes through at ``ratio``,
    or a function giving the expected target time of a source time. After the first pair, a downbeat is
    expected on the line through the last ``TEMPO_WINDOW_PAIRS`` pairs (Theil-Sen, so one misplaced pair does
    not tilt it; the last pair at ``ratio`` while there is only one). A downbeat whose nearest target is
    nearer to the next source downbeat's expectation is skipped (a spurious downbeat just before a real one).
    Pairs are one to one and strictly increasing in both columns.

    Returns:
        ``[M, 2]`` pairs and ``[M]`` residuals (target minus expected, seconds).
    """
    pairs: list[tuple[float, float]] = []
    residuals: list[float] = []

    def expected(s: float) -> float:
        if not pairs:
            if callable(start):
                return float(start(s))
            return start[1] + ratio * (s - start[0])
        recent = np.array(pairs[-TEMPO_WINDOW_PAIRS:])
        if len(recent) < 2:
            return float(recent[0, 1] + ratio * (s - recent[0, 0]))
        slope, intercept = _theil_sen(recent)
        return slope * s + intercept

    for index, s in enumerate(source):
        free = target[target > pairs[-1][1]] if pairs else target
        if free.size == 0:
            break
        prediction = expected(float(s))
        nearest = float(free[np.argmin(np.abs(free - prediction))])
        gap = abs(nearest - prediction)
        if index + 1 < len(source) and abs(nearest - expected(float(source[index + 1]))) < gap:
            continue
        if gap <= tolerance and (not pairs or s > pairs[-1][0]):
            pairs.append((float(s), nearest))
            residuals.append(nearest - prediction)
    return np.array(pairs, dtype=np.float64).reshape(-1, 2), np.array(residuals, dtype=np.float64)


def _theil_sen(points: np.ndarray) -> tuple[float, float]:
    """Median of the pairwise slopes (clipped to the tempo limits) and the median intercept: a line that one
    misplaced downbeat among the recent pairs does not tilt."""
    first, second = np.triu_indices(len(points), k=1)
    slopes = (points[second, 1] - points[first, 1]) / (points[second, 0] - points[first, 0])
    slope = float(np.clip(np.median(slopes), 1 / MAX_RATIO, MAX_RATIO))
    return slope, float(np.median(points[:, 1] - slope * points[:, 0]))


def line_without(pairs: Pairs, ratio: float) -> Callable[[float], float]:
    """The alignment's prediction for a source time, fitted on ``pairs`` other than the one at that time.

    Least squares over the other pairs (slope clipped to the tempo limits); with one other pair, the line
    through it at ``ratio``; with none, the identity (so the caller's threshold still means something).
    """

    def predict(s: float) -> float:
        others = pairs[np.abs(pairs[:, 0] - s) > 1e-9] if len(pairs) else pairs
        if len(others) >= 2:
            slope, intercept = np.polyfit(others[:, 0], others[:, 1], 1)
            slope = float(np.clip(slope, 1 / MAX_RATIO, MAX_RATIO))
            centre_s, centre_t = others.mean(axis=0)
            return float(centre_t + slope * (s - centre_s))
        if len(others) == 1:
            return float(others[0, 1] + ratio * (s - others[0, 0]))
        return s

    return predict


def map_through(anchors: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Piecewise-linear map of ``times`` through ``anchors`` (``[N, 2]``, N >= 2), extrapolated at the ends
    with the first and last regions' slopes."""
    anchors = np.asarray(anchors, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    mapped = np.interp(times, anchors[:, 0], anchors[:, 1])
    first = (anchors[1, 1] - anchors[0, 1]) / (anchors[1, 0] - anchors[0, 0])
    last = (anchors[-1, 1] - anchors[-2, 1]) / (anchors[-1, 0] - anchors[-2, 0])
    before, after = times < anchors[0, 0], times > anchors[-1, 0]
    mapped[before] = anchors[0, 1] + first * (times[before] - anchors[0, 0])
    mapped[after] = anchors[-1, 1] + last * (times[after] - anchors[-1, 0])
    return mapped


def extend(pairs: Pairs, ratio: float, end_source: float, end_target: float) -> np.ndarray:
    """Anchors for ``pairs`` with the lead-in and the tail added at the neighbouring region's tempo.

    Before the first pair the map continues at the first region's slope back to where the source or the
    target starts (the other then starts later: the take's lead-in is cut, or silence is put before it);
    after the last pair, at the last region's slope until the source or the target ends. ``ratio`` is the
    slope when there is a single pair. Returns ``[M + 2, 2]`` anchors (rows equal to a neighbour dropped).
    """
    if len(pairs) == 0:
        raise ValueError("no pairs to extend")
    first_slope = last_slope = ratio
    if len(pairs) >= 2:
        first_slope = (pairs[1, 1] - pairs[0, 1]) / (pairs[1, 0] - pairs[0, 0])
        last_slope = (pairs[-1, 1] - pairs[-2, 1]) / (pairs[-1, 0] - pairs[-2, 0])
    s, t = pairs[0]
    head = (0.0, t - first_slope * s) if t - first_slope * s >= 0 else (s - t / first_slope, 0.0)
    s, t = pairs[-1]
    room_source, room_target = end_source - s, end_target - t
    tail = (end_source, t + last_slope * room_source) if last_slope * room_source <= room_target else (
        s + room_target / last_slope, end_target)
    anchors = [head, *map(tuple, pairs), tail]
    kept = [anchors[0]]
    for row in anchors[1:]:
        if row[0] - kept[-1][0] > 1e-9 and row[1] - kept[-1][1] > 1e-9:
            kept.append(row)
    return np.array(kept, dtype=np.float64)
