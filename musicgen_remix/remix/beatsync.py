"""Beat sync: put a generated instrumental's downbeats on the song's downbeats.

How sync decides, in four steps:

1. **Global alignment first** (:mod:`musicgen_remix.remix.alignment`): before any threshold, every bar shift
   between the two downbeat sequences (and the tempo ratio of their bar lengths) is scored by how many
   downbeats it explains and, when the song's audio is given, by how well the two recordings' chroma agree
   under it (the instrumental follows the song's chords, so the right bars agree). This finds lead-ins,
   pickup bars and takes that start seconds late, where nearest-neighbour pairing pairs every bar with the
   wrong one.
2. **The threshold keeps the seed's meaning**: walking the downbeats in time order, one further than
   ``beat_sync_threshold`` from where the alignment puts it (the pairs before it and their local tempo, or for
   the first one the alignment fitted on the other pairs) is "not corresponding" and keeps its own time.
3. **Lead-ins and tails are cut or padded**: before the first pair and after the last, the take continues at
   the neighbouring bars' tempo; its lead-in is cut or silence is put before it, and its tail is cut or
   padded, so the result has the song's length. Between pairs, Rubber Band stretches along the time map
   (:mod:`musicgen_remix.remix.stretch`); no region is stretched more than ``MAX_STRETCH``.
4. **Never worse than no sync**: when the song's audio is given, the stretched and the unstretched take are
   both measured against it (onset agreement at the song's beats plus chroma agreement,
   :mod:`musicgen_remix.remix.agreement`) and the better one is kept; the plan says which and why.

Unlike the seed (sakemin/musicgen-remixer), which raised IndexError when no downbeat matched, every case
without anything to align gives a plan with a ``skipped_reason`` and the audio is only padded or trimmed.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from musicgen_remix.audio import Audio
from musicgen_remix.errors import InputError, contract_error
from musicgen_remix.remix import agreement as measuring
from musicgen_remix.remix.alignment import extend, find_alignment, line_without, map_through, match
from musicgen_remix.remix.stretch import DEFAULT_ENGINE, Engine, timemap_stretch

logger = logging.getLogger(__name__)

# The seed's default beat_sync_threshold, in seconds.
DEFAULT_THRESHOLD_S = 0.75
# "Automatic" threshold: this many beats at the song's tempo. A downbeat more than about a beat away from
# where the alignment puts it is more likely a different bar (or a misdetection) than a late one.
AUTO_THRESHOLD_BEATS = 1.1
# Largest stretch (or squeeze, as its inverse) of the audio between two consecutive anchors; a pair that
# needs more is dropped. Past 1.5x Rubber Band misplaces every later anchor by a constant (36 ms after
# 0.3 s -> 0.8 s, 91 ms after 0.1 s -> 0.4 s; see remix.stretch) and WSOLA audibly repeats grains.
MAX_STRETCH = 1.5
# The values of beat_sync_threshold that ask for the automatic threshold (the seed used -1 or None).
_AUTO = -1.0


@dataclass(frozen=True)
class SyncPlan:
    """How a generated instrumental's timeline maps onto the song's.

    Attributes:
        anchors: float64 ``[N, 2]`` (source s, target s), strictly increasing in both columns: where the
            take's kept part starts (one of the two is 0: its lead-in is cut, or silence goes before it), one
            row per matched downbeat, and where it ends (at the take's or the song's end). Empty ``[0, 2]``
            when there was nothing to align.
        matched: float64 ``[M, 2]`` (generated downbeat s, reference downbeat s) pairs used as anchors.
        offsets: float64 ``[M]``, target minus source for each matched pair.
        unmatched: float64 ``[K]`` generated downbeats that are not anchors: further than the threshold from
            where the alignment puts them, anchoring them would stretch a region beyond ``MAX_STRETCH``, or
            they are not strictly inside the generated audio (0 < t < its duration).
        skipped_reason: why the audio was not stretched, or None when ``anchors`` were applied.
        residuals: float64 ``[M]``, each pair's distance from where the alignment put it (target minus
            expected); the threshold was compared with these.
        shift: bar shift of the global alignment (generated downbeat ``i`` is reference downbeat ``i + shift``),
            None when there was none.
        ratio: tempo ratio the alignment started from (target per source second), None when there was none.
        harmony: chroma agreement of the chosen alignment, None when not measured.
        agreement_before: how well the unstretched take agreed with the song (onsets + chroma), None when
            the song's audio was not given.
        agreement_after: the same for the stretched take.
    """

    anchors: np.ndarray
    matched: np.ndarray
    offsets: np.ndarray
    unmatched: np.ndarray
    skipped_reason: str | None = None
    residuals: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    shift: int | None = None
    ratio: float | None = None
    harmony: float | None = None
    agreement_before: float | None = None
    agreement_after: float | None = None

    def __post_init__(self) -> None:
        for name in ("anchors", "matched", "offsets", "unmatched", "residuals"):
            value = np.array(getattr(self, name), dtype=np.float64)
            value.setflags(write=False)  # frozen means the arrays too
            object.__setattr__(self, name, value)

    @property
    def skipped(self) -> bool:
        return self.skipped_reason is not None

    @property
    def decision(self) -> str:
        """``"synced"`` when the stretch was applied, else ``"unsynced"``."""
        return "unsynced" if self.skipped else "synced"

    def map_times(self, times: np.ndarray | list[float]) -> np.ndarray:
        """Where source times land in the result (unchanged when the stretch was not applied)."""
        times = np.asarray(times, dtype=np.float64)
        if self.skipped or len(self.anchors) < 2:
            return times.copy()
        return map_through(self.anchors, times)

    def report(self) -> dict[str, object]:
        """The plan as JSON-ready values (seconds)."""
        return {
            "decision": self.decision,
            "skipped_reason": self.skipped_reason,
            "alignment": None if self.shift is None else {"bar_shift": self.shift, "tempo_ratio": self.ratio,
                                                          "harmony": self.harmony},
            "agreement_before": self.agreement_before,
            "agreement_after": self.agreement_after,
            "anchors": self.anchors.tolist(),
            "matched": self.matched.tolist(),
            "offsets_s": self.offsets.tolist(),
            "residuals_s": self.residuals.tolist(),
            "unmatched": self.unmatched.tolist(),
        }


def check_threshold(value: float | None) -> float | None:
    """The ``beat_sync_threshold`` input checked: seconds, or None for the automatic threshold.

    None or -1 ask for the automatic threshold (see :func:`resolve_threshold`).

    Raises:
        InputError: naming ``beat_sync_threshold`` for 0, other negative values, NaN or infinity.
    """
    if value is None or value == _AUTO:
        return None
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise InputError(
            "beat_sync_threshold", value, "a positive number of seconds, or -1 / None for 1.1 beats of the song"
        )
    return float(value)


def resolve_threshold(value: float | None, bpm: float | None) -> float:
    """The beat-sync threshold in seconds for a ``beat_sync_threshold`` input (checked by :func:`check_threshold`).

    None or -1 ask for the automatic threshold, ``1.1 * 60 / bpm`` (1.1 beats of the song). When the song's
    tempo is unknown too (None, not finite or not positive, e.g. too little audio to track), the seed's
    default of 0.75 s is used: 1.1 beats at 88 bpm, which tolerates a beat-sized error for most tempi.

    Raises:
        InputError: as :func:`check_threshold`.
    """
    checked = check_threshold(value)
    if checked is not None:
        return checked
    if bpm is not None and math.isfinite(bpm) and bpm > 0:
        return AUTO_THRESHOLD_BEATS * 60.0 / bpm
    logger.info("song tempo unknown (bpm=%s): beat sync threshold %.2f s", bpm, DEFAULT_THRESHOLD_S)
    return DEFAULT_THRESHOLD_S


def plan_sync(
    generated_downbeats: np.ndarray,
    reference_downbeats: np.ndarray,
    *,
    threshold: float,
    duration_generated: float,
    duration_target: float,
    max_stretch: float = MAX_STRETCH,
    follow_tempo: bool = True,
    harmony: Callable[[np.ndarray], float | None] | None = None,
    refine: Callable[[np.ndarray], np.ndarray] | None = None,
) -> SyncPlan:
    """Find the global alignment, pair the downbeats within the threshold of it, and build the time map.

    Args:
        generated_downbeats: downbeat times of the audio to stretch, in seconds (any order).
        reference_downbeats: downbeat times to align to, in seconds (any order).
        threshold: largest distance of a paired downbeat from where the alignment puts it, in seconds (see
            :func:`resolve_threshold`).
        duration_generated: length of the audio to stretch, in seconds.
        duration_target: length of the result, in seconds.
        max_stretch: largest stretch ratio (and inverse squeeze ratio) of any region between two pairs.
        follow_tempo: False gives the seed's rule instead of steps 1-2 of the module docstring: raw distances
            against the threshold, closest pairs first (kept to measure what the alignment brings).
        harmony: scores a candidate time map (``[N, 2]`` anchors) by how well the two recordings agree under
            it (see :func:`musicgen_remix.remix.agreement.harmony_agreement`); None: downbeats only.
        refine: moves the paired song times to where the recordings' onsets say they are (see
            :func:`musicgen_remix.remix.agreement.refine_pairs`); applied after the threshold, so the
            threshold still compares detected downbeats. Pairs that would no longer increase are not moved.

    Raises:
        ValueError: non-finite downbeats, a threshold or a duration that is not a positive number, a
            ``max_stretch`` not above 1.
    """
    generated = _downbeats(generated_downbeats, "generated_downbeats")
    reference = _downbeats(reference_downbeats, "reference_downbeats")
    if not (math.isfinite(threshold) and threshold > 0):
        raise contract_error("beat_sync_threshold", threshold, "a positive number of seconds")
    if not (math.isfinite(max_stretch) and max_stretch > 1):
        raise contract_error("max_stretch", max_stretch, "a finite ratio above 1")
    for name, value in (("duration_generated", duration_generated), ("duration_target", duration_target)):
        if not (math.isfinite(value) and value > 0):
            raise contract_error(name, value, "a positive number of seconds")

    # Strictly inside both timelines, so the pairs fit between the start and end anchors.
    source = generated[(generated > 0) & (generated < duration_generated)]
    target = reference[(reference > 0) & (reference < duration_target)]

    def skip(reason: str, **found: object) -> SyncPlan:
        return SyncPlan(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), generated, skipped_reason=reason,
                        **found)  # type: ignore[arg-type]

    if generated.size == 0:
        return skip("no downbeats were found in the generated audio")
    if reference.size == 0:
        return skip("no downbeats were found in the song")
    found: dict[str, object] = {}
    if follow_tempo:
        scorer = None
        if harmony is not None:
            def scorer(pairs: np.ndarray) -> float | None:
                return harmony(extend(pairs, _ratio(pairs), duration_generated, duration_target))
        alignment = find_alignment(source, target, harmony=scorer)
        if alignment is None:
            return skip("no generated downbeat could be paired with a song downbeat")
        found = {"shift": alignment.shift, "ratio": alignment.ratio, "harmony": alignment.harmony}
        pairs, residuals = match(source, target, threshold, line_without(alignment.pairs, alignment.ratio),
                                 alignment.ratio)
        ratio = alignment.ratio
    else:
        pairs = _match_once(source, target, threshold)
        residuals, ratio = pairs[:, 1] - pairs[:, 0], 1.0
    if not len(pairs):
        return skip(f"no generated downbeat is within {threshold:.3f} s of where the alignment puts it", **found)
    if refine is not None:
        moved = refine(pairs)
        if np.all(np.diff(moved[:, 1]) > 0) and np.all((moved[:, 1] > 0) & (moved[:, 1] < duration_target)):
            pairs = moved
    keep = _bound_stretch(pairs, max_stretch)
    pairs, residuals = pairs[keep], residuals[keep]
    anchors = extend(pairs, ratio if len(pairs) < 2 else _ratio(pairs), duration_generated, duration_target)
    unmatched = np.setdiff1d(generated, pairs[:, 0])
    return SyncPlan(anchors, pairs, pairs[:, 1] - pairs[:, 0], unmatched, residuals=residuals,
                    **found)  # type: ignore[arg-type]


def _downbeats(values: np.ndarray, field: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(array).all():
        raise contract_error(field, array.tolist(), "finite downbeat times in seconds")
    return np.unique(array)  # sorted, duplicates dropped


def _ratio(pairs: np.ndarray) -> float:
    """Overall tempo ratio of the pairs (1 for a single pair), clipped to the stretch limits."""
    if len(pairs) < 2:
        return 1.0
    ratio = (pairs[-1, 1] - pairs[0, 1]) / (pairs[-1, 0] - pairs[0, 0])
    return float(np.clip(ratio, 1 / MAX_STRETCH, MAX_STRETCH))


def _match_once(source: np.ndarray, target: np.ndarray, threshold: float) -> np.ndarray:
    """The seed's rule: closest-first monotonic one-to-one pairing of raw distances within the threshold."""
    distance = np.abs(source[:, None] - target[None, :])
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


def _bound_stretch(pairs: np.ndarray, max_stretch: float) -> np.ndarray:
    """Indices of the pairs (in time order) that keep every region between two kept pairs within
    [1 / max_stretch, max_stretch]: a pair that would break it is dropped."""
    kept = [0] if len(pairs) else []
    for index in range(1, len(pairs)):
        (s0, t0), (s1, t1) = pairs[kept[-1]], pairs[index]
        if 1.0 / max_stretch <= (t1 - t0) / (s1 - s0) <= max_stretch:
            kept.append(index)
    return np.array(kept, dtype=np.int64)


def sync_to_reference(
    audio: Audio,
    generated_downbeats: np.ndarray,
    reference_downbeats: np.ndarray,
    *,
    threshold: float,
    target_duration: float,
    engine: Engine = DEFAULT_ENGINE,
    follow_tempo: bool = True,
    reference: Audio | None = None,
    reference_harmony: Audio | None = None,
    reference_beats: np.ndarray | None = None,
) -> tuple[Audio, SyncPlan]:
    """Stretch ``audio`` so its downbeats land on the reference downbeats; exactly ``target_duration`` long.

    Args:
        audio: the generated instrumental.
        generated_downbeats: its downbeat times in seconds.
        reference_downbeats: the song's downbeat times in seconds.
        threshold: see :func:`plan_sync` and :func:`resolve_threshold`.
        target_duration: length of the result in seconds (the song's).
        engine: the stretch engine (see :mod:`musicgen_remix.remix.stretch`).
        follow_tempo: see :func:`plan_sync`.
        reference: the song. When given, the alignment also weighs chroma agreement and the result is the
            better (by :func:`musicgen_remix.remix.agreement.measure`) of the stretched and unstretched take.
        reference_harmony: the song's audio for chroma (e.g. its drumless stem); default ``reference``.
        reference_beats: the song's beat times for the onset agreement; default its downbeats.

    Returns:
        The result (same sample rate and channels) and the plan; ``plan.skipped_reason`` says why the audio
        was only padded or trimmed.
    """
    take = measure_ref = harmony_ref = None
    harmony = refine = None
    if reference is not None:
        take, measure_ref = measuring.features(audio), measuring.features(reference)
        harmony_ref = measuring.features(reference_harmony) if reference_harmony is not None else measure_ref
        take_features, song_features = take, harmony_ref
        take_onsets, song_onsets = measuring.fine_onsets(audio), measuring.fine_onsets(reference)

        def harmony(anchors: np.ndarray) -> float | None:
            return measuring.harmony_agreement(take_features, song_features, anchors)

        def refine(pairs: np.ndarray) -> np.ndarray:
            return measuring.refine_pairs(pairs, take_onsets, song_onsets)

    plan = plan_sync(generated_downbeats, reference_downbeats, threshold=threshold,
                     duration_generated=audio.duration, duration_target=target_duration, follow_tempo=follow_tempo,
                     harmony=harmony, refine=refine if follow_tempo else None)
    wav = audio.wav.detach().cpu().numpy().astype(np.float32, copy=False)
    unsynced = _fit(wav, round(target_duration * audio.sample_rate))
    if plan.skipped:
        logger.info("beat sync skipped: %s", plan.skipped_reason)
        return _audio(unsynced, audio), plan
    synced = apply_anchors(wav, audio.sample_rate, plan.anchors, round(target_duration * audio.sample_rate), engine)
    if take is not None and measure_ref is not None:
        beats = np.asarray(reference_beats if reference_beats is not None else reference_downbeats, dtype=np.float64)
        before = measuring.measure(measuring.features(_audio(unsynced, audio)), measure_ref, beats, harmony_ref)
        after = measuring.measure(measuring.features(_audio(synced, audio)), measure_ref, beats, harmony_ref)
        plan = dataclasses.replace(plan, agreement_before=before.total, agreement_after=after.total)
        if after.total < before.total:
            plan = dataclasses.replace(plan, skipped_reason=(
                f"the stretched take agreed less with the song ({after.total:.3f}: onsets {after.onset:.3f}, "
                f"harmony {after.harmony:.3f}) than the unstretched one ({before.total:.3f})"))
            logger.info("beat sync measured worse than none, kept unstretched: %s", plan.skipped_reason)
            return _audio(unsynced, audio), plan
    distance = np.abs(plan.residuals)
    logger.info(
        "beat sync: %d of %d generated downbeats matched (bar shift %s, tempo ratio %.3f), |residual| median "
        "%.1f ms, max %.1f ms; agreement with the song %s -> %s (%s)",
        len(plan.matched), len(plan.matched) + len(plan.unmatched), plan.shift,
        plan.ratio if plan.ratio is not None else 1.0, 1000 * float(np.median(distance)),
        1000 * float(distance.max()), _fmt(plan.agreement_before), _fmt(plan.agreement_after), engine,
    )
    return _audio(synced, audio), plan


def apply_anchors(wav: np.ndarray, sample_rate: int, anchors: np.ndarray, length: int,
                  engine: Engine = DEFAULT_ENGINE) -> np.ndarray:
    """Cut ``[C, T]`` audio to the anchors' source span, stretch it along them (see :class:`SyncPlan`) and place
    it at their target start in ``length`` frames of silence."""
    (s0, t0), s1 = anchors[0], anchors[-1, 0]
    first, last = round(s0 * sample_rate), min(round(s1 * sample_rate), wav.shape[1])
    segment = wav[:, first:last]
    local = anchors - np.array([s0, t0])
    local[-1, 0] = segment.shape[1] / sample_rate
    stretched = timemap_stretch(segment, sample_rate, local, engine=engine)
    out = np.zeros((wav.shape[0], length), dtype=np.float32)
    start = min(round(t0 * sample_rate), length)
    kept = min(stretched.shape[1], length - start)
    out[:, start : start + kept] = stretched[:, :kept]
    return out


def _fit(wav: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros((wav.shape[0], length), dtype=np.float32)
    kept = min(length, wav.shape[1])
    out[:, :kept] = wav[:, :kept]
    return out


def _audio(wav: np.ndarray, like: Audio) -> Audio:
    return Audio(torch.from_numpy(wav).to(like.wav.device), like.sample_rate)


def _fmt(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.3f}"
