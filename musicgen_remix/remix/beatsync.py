"""Beat sync: align a generated instrumental's downbeats with the song's downbeats.

Works on plain arrays of downbeat times (seconds), so it does not depend on how they were found.
:func:`plan_sync` pairs each generated downbeat with the nearest song ("reference") downbeat, one to one and
in time order, and turns the pairs within the threshold into a time map (following a tempo difference
between the two, so that a slightly faster or slower instrumental is aligned bar after bar, not only at its
start); :func:`sync_to_reference` stretches
the audio along that map (:mod:`musicgen_remix.remix.stretch`) and returns exactly the target length.

Unlike the seed (sakemin/musicgen-remixer), which raised IndexError when no downbeat matched, every case
without anything to align (no generated downbeats, no reference downbeats, none within the threshold) gives a
plan with a ``skipped_reason``, and the audio is then only padded or trimmed. Pairs are also one to one and
in time order (nearest-neighbour pairing alone can send two generated downbeats to one song downbeat), and no
region between anchors is stretched more than ``MAX_STRETCH``.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from musicgen_remix.audio import Audio
from musicgen_remix.errors import InputError
from musicgen_remix.remix.stretch import DEFAULT_ENGINE, Engine, timemap_stretch

logger = logging.getLogger(__name__)

# The seed's default beat_sync_threshold, in seconds.
DEFAULT_THRESHOLD_S = 0.75
# "Automatic" threshold: this many beats at the song's tempo. A downbeat more than about a beat away from
# every song downbeat is more likely a different bar (or a misdetection) than a late one.
AUTO_THRESHOLD_BEATS = 1.1
# Largest stretch (or squeeze, as its inverse) of the audio between two consecutive anchors; a pair that
# needs more is dropped. Past 1.5x Rubber Band misplaces every later anchor by a constant (36 ms after
# 0.3 s -> 0.8 s, 91 ms after 0.1 s -> 0.4 s; see remix.stretch) and WSOLA audibly repeats grains. The
# first pair meets this most often, its region being (0, 0) to a downbeat a fraction of a second in.
MAX_STRETCH = 1.5
# Pairs whose tempo ratio predicts where the next generated downbeat lands (see _match): a few bars, so a
# slowly changing tempo is followed and one misplaced downbeat does not tilt the whole estimate.
TEMPO_WINDOW_PAIRS = 4
# The values of beat_sync_threshold that ask for the automatic threshold (the seed used -1 or None).
_AUTO = -1.0


@dataclass(frozen=True)
class SyncPlan:
    """How a generated instrumental's timeline maps onto the song's.

    Attributes:
        anchors: float64 ``[N, 2]`` (source s, target s), strictly increasing in both columns: (0, 0), one
            row per matched downbeat, (generated duration, target duration). Empty ``[0, 2]`` when skipped.
        matched: float64 ``[M, 2]`` (generated downbeat s, reference downbeat s) pairs used as anchors.
        offsets: float64 ``[M]``, target minus source for each matched pair.
        unmatched: float64 ``[K]`` generated downbeats that are not anchors: no free reference downbeat within
            the threshold in time order, anchoring them would stretch a region beyond ``MAX_STRETCH``, or
            they are not strictly inside the generated audio (0 < t < its duration).
        skipped_reason: why there is nothing to sync, or None when ``anchors`` is to be applied.
    """

    anchors: np.ndarray
    matched: np.ndarray
    offsets: np.ndarray
    unmatched: np.ndarray
    skipped_reason: str | None = None

    def __post_init__(self) -> None:
        for name in ("anchors", "matched", "offsets", "unmatched"):
            value = np.array(getattr(self, name), dtype=np.float64)
            value.setflags(write=False)  # frozen means the arrays too
            object.__setattr__(self, name, value)

    @property
    def skipped(self) -> bool:
        return self.skipped_reason is not None


def resolve_threshold(value: float | None, bpm: float | None) -> float:
    """The beat-sync threshold in seconds for the ``beat_sync_threshold`` input.

    None or -1 ask for the automatic threshold, ``1.1 * 60 / bpm`` (1.1 beats of the song). When the song's
    tempo is unknown too (None, not finite or not positive, e.g. too little audio to track), the seed's
    default of 0.75 s is used: 1.1 beats at 88 bpm, which tolerates a beat-sized error for most tempi.

    Raises:
        InputError: naming ``beat_sync_threshold`` for 0, other negative values, NaN or infinity.
    """
    if value is None or value == _AUTO:
        if bpm is not None and math.isfinite(bpm) and bpm > 0:
            return AUTO_THRESHOLD_BEATS * 60.0 / bpm
        logger.info("song tempo unknown (bpm=%s): beat sync threshold %.2f s", bpm, DEFAULT_THRESHOLD_S)
        return DEFAULT_THRESHOLD_S
    if not (math.isfinite(value) and value > 0):
        raise InputError(
            "beat_sync_threshold", value, "a positive number of seconds, or -1 / None for 1.1 beats of the song"
        )
    return float(value)


def plan_sync(
    generated_downbeats: np.ndarray,
    reference_downbeats: np.ndarray,
    *,
    threshold: float,
    duration_generated: float,
    duration_target: float,
    max_stretch: float = MAX_STRETCH,
    follow_tempo: bool = True,
) -> SyncPlan:
    """Pair generated downbeats with reference downbeats and build the time map.

    Candidate pairs are all (generated, reference) pairs at most ``threshold`` apart, strictly inside both
    timelines. They are accepted closest first, each downbeat at most once, and only when the accepted pairs
    stay in time order on both sides; so every generated downbeat gets its nearest free reference downbeat
    that keeps the map strictly monotonic, and a spurious extra or missing downbeat on either side costs only
    its own pair. Then, in time order, a pair is dropped when the region between it and the previous anchor
    would be stretched or squeezed by more than ``max_stretch``, and the last pairs while the region to the
    end anchor would be.

    Args:
        generated_downbeats: downbeat times of the audio to stretch, in seconds (any order).
        reference_downbeats: downbeat times to align to, in seconds (any order).
        threshold: largest accepted distance between paired downbeats, in seconds (see
            :func:`resolve_threshold`).
        duration_generated: length of the audio to stretch, in seconds.
        duration_target: length of the result, in seconds.
        max_stretch: largest stretch ratio (and inverse squeeze ratio) of any region between anchors.
        follow_tempo: measure each gap from where the generated downbeat is expected to land given the pairs
            before it (see :func:`_match`), so a tempo difference does not lose every bar after the first few.
            False gives the seed's rule: the raw gap against the threshold.

    Raises:
        InputError: non-finite downbeats, a threshold or a duration that is not a positive number, a
            ``max_stretch`` not above 1.
    """
    generated = _downbeats(generated_downbeats, "generated_downbeats")
    reference = _downbeats(reference_downbeats, "reference_downbeats")
    if not (math.isfinite(threshold) and threshold > 0):
        raise InputError("beat_sync_threshold", threshold, "a positive number of seconds")
    if not (math.isfinite(max_stretch) and max_stretch > 1):
        raise InputError("max_stretch", max_stretch, "a finite ratio above 1")
    for name, value in (("duration_generated", duration_generated), ("duration_target", duration_target)):
        if not (math.isfinite(value) and value > 0):
            raise InputError(name, value, "a positive number of seconds")

    reason = None
    if generated.size == 0:
        reason = "no downbeats were found in the generated audio"
    elif reference.size == 0:
        reason = "no downbeats were found in the song"
    else:
        matched = _match(generated, reference, threshold, duration_generated, duration_target, follow_tempo)
        if not matched.size:
            reason = f"no generated downbeat is within {threshold:.3f} s of a song downbeat"
        else:
            matched = _bound_stretch(matched, duration_generated, duration_target, max_stretch)
            if not matched.size:
                reason = (
                    f"every generated downbeat within {threshold:.3f} s of a song downbeat would stretch the audio "
                    f"around it by more than {max_stretch:g}x"
                )
    if reason is not None:
        return SyncPlan(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), generated, skipped_reason=reason)

    anchors = np.concatenate([[[0.0, 0.0]], matched, [[duration_generated, duration_target]]])
    unmatched = np.setdiff1d(generated, matched[:, 0])
    return SyncPlan(anchors, matched, matched[:, 1] - matched[:, 0], unmatched)


def _downbeats(values: np.ndarray, field: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(array).all():
        raise InputError(field, array.tolist(), "finite downbeat times in seconds")
    return np.unique(array)  # sorted, duplicates dropped


def _match(
    generated: np.ndarray,
    reference: np.ndarray,
    threshold: float,
    end_generated: float,
    end_target: float,
    follow_tempo: bool = True,
) -> np.ndarray:
    """Monotonic one-to-one (generated s, reference s) pairs; ``[M, 2]``.

    Without ``follow_tempo``: the seed's rule, raw gaps against the threshold, closest pairs first. With it:
    when two instrumentals differ in tempo, bars drift apart a little more each bar and a fixed threshold
    loses every bar after the first few (or pairs a bar with the next one). So the generated downbeats are
    walked in time order, each compared with where it is expected to land: its own time until a first pair
    is found, then the last pair plus the local tempo ratio of the pairs so far.
    """
    # Strictly inside both timelines, so the pairs fit between the (0, 0) and end anchors.
    source = generated[(generated > 0) & (generated < end_generated)]
    target = reference[(reference > 0) & (reference < end_target)]
    if not follow_tempo:
        return _match_once(source, target, source, threshold)
    pairs: list[tuple[float, float]] = []
    for index, s in enumerate(source):
        expected = _expected(pairs, float(s))
        free = target[target > pairs[-1][1]] if pairs else target
        if free.size == 0:
            break
        nearest = float(free[np.argmin(np.abs(free - expected))])
        gap = abs(nearest - expected)
        # A spurious downbeat just before a real one: leave the song's downbeat to the closer next one.
        if index + 1 < len(source) and abs(nearest - _expected(pairs, float(source[index + 1]))) < gap:
            continue
        if gap <= threshold:
            pairs.append((float(s), nearest))
    return np.array(pairs, dtype=np.float64).reshape(-1, 2)


def _expected(pairs: list[tuple[float, float]], source: float) -> float:
    """Where ``source`` should land given the pairs before it: last pair + local tempo ratio."""
    if not pairs:
        return source
    last_s, last_t = pairs[-1]
    slope = 1.0
    recent = np.array(pairs[-TEMPO_WINDOW_PAIRS:])
    if len(recent) >= 2:
        slope = float(np.clip(np.polyfit(recent[:, 0], recent[:, 1], 1)[0], 1 / MAX_STRETCH, MAX_STRETCH))
    return last_t + slope * (source - last_s)


def _match_once(source: np.ndarray, target: np.ndarray, expected: np.ndarray, threshold: float) -> np.ndarray:
    """One pass of closest-first monotonic pairing, gaps measured from ``expected`` (aligned with source)."""
    distance = np.abs(expected[:, None] - target[None, :])
    rows, cols = np.nonzero(distance <= threshold)
    # Closest first; ties broken by time so the result does not depend on the order of equal distances.
    order = np.lexsort((cols, rows, distance[rows, cols]))
    accepted_source: list[float] = []  # sorted; accepted_target[i] pairs with accepted_source[i]
    accepted_target: list[float] = []
    for row, col in zip(rows[order], cols[order], strict=True):
        s, t = float(source[row]), float(target[col])
        at = bisect.bisect_left(accepted_source, s)
        # Strict order against both neighbours keeps the map monotonic and uses each downbeat once.
        if at < len(accepted_source) and not (accepted_source[at] > s and accepted_target[at] > t):
            continue
        if at > 0 and not (accepted_source[at - 1] < s and accepted_target[at - 1] < t):
            continue
        accepted_source.insert(at, s)
        accepted_target.insert(at, t)
    return np.column_stack([accepted_source, accepted_target]).reshape(-1, 2)


def _bound_stretch(pairs: np.ndarray, end_generated: float, end_target: float, max_stretch: float) -> np.ndarray:
    """The pairs (in time order) that keep every region's stretch ratio within [1 / max_stretch, max_stretch]."""

    def ratio_ok(start: tuple[float, float], stop: tuple[float, float]) -> bool:
        ratio = (stop[1] - start[1]) / (stop[0] - start[0])
        return 1.0 / max_stretch <= ratio <= max_stretch

    kept: list[tuple[float, float]] = [(0.0, 0.0)]
    for source, target in pairs:
        if ratio_ok(kept[-1], (source, target)):
            kept.append((float(source), float(target)))
    while len(kept) > 1 and not ratio_ok(kept[-1], (end_generated, end_target)):
        kept.pop()
    return np.array(kept[1:], dtype=np.float64).reshape(-1, 2)


def sync_to_reference(
    audio: Audio,
    generated_downbeats: np.ndarray,
    reference_downbeats: np.ndarray,
    *,
    threshold: float,
    target_duration: float,
    engine: Engine = DEFAULT_ENGINE,
    follow_tempo: bool = True,
) -> tuple[Audio, SyncPlan]:
    """Stretch ``audio`` so its downbeats land on the reference downbeats; exactly ``target_duration`` long.

    When the plan is skipped (nothing to align), the audio is only padded with silence or trimmed.

    Args:
        audio: the generated instrumental.
        generated_downbeats: its downbeat times in seconds.
        reference_downbeats: the song's downbeat times in seconds.
        threshold: largest distance between paired downbeats in seconds (see :func:`resolve_threshold`).
        target_duration: length of the result in seconds (the song's).
        engine: the stretch engine (see :mod:`musicgen_remix.remix.stretch`).

    Returns:
        The stretched audio (same sample rate and channels) and the plan that was applied.
    """
    plan = plan_sync(
        generated_downbeats,
        reference_downbeats,
        threshold=threshold,
        duration_generated=audio.duration,
        duration_target=target_duration,
        follow_tempo=follow_tempo,
    )
    length = round(target_duration * audio.sample_rate)
    wav = audio.wav.detach().cpu().numpy().astype(np.float32, copy=False)
    if plan.skipped:
        logger.info("beat sync skipped: %s", plan.skipped_reason)
        result = np.zeros((wav.shape[0], length), dtype=np.float32)
        kept = min(length, wav.shape[1])
        result[:, :kept] = wav[:, :kept]
    else:
        distance = np.abs(plan.offsets)
        logger.info(
            "beat sync: %d of %d generated downbeats matched, |offset| median %.1f ms, max %.1f ms (%s)",
            len(plan.matched),
            len(plan.matched) + len(plan.unmatched),
            1000 * float(np.median(distance)),
            1000 * float(distance.max()),
            engine,
        )
        # timemap_stretch returns round(target_duration * sample_rate) frames, i.e. ``length``.
        result = timemap_stretch(wav, audio.sample_rate, plan.anchors, engine=engine)
    return Audio(torch.from_numpy(result).to(audio.wav.device), audio.sample_rate), plan
