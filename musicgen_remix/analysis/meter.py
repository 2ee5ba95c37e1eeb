"""Metrical decoding: the beat a musician counts, the bar, and the downbeat phase, on plain arrays.

madmom's downbeat DBN alone picks whichever metrical level its activations favour: a slow ballad with
eighth-note accompaniment comes out at twice its tempo, a bossa at 84 as 168, 6/8 and 12/8 as a 3/4-like
pulse at 1.5 or 3 times the counted beat, and the downbeat lands on beat 3 when beats 1 and 3 sound alike.
This module decodes in three steps, each on arrays so that it is testable without audio:

1. **Pulse** (:func:`track_pulse`): madmom's beat HMM on the summed beat + downbeat activation, run in four
   overlapping tempo windows (40-90, 63-142, 100-225, 160-360 bpm); the path with the highest
   log-probability is the pulse. It follows tempo changes (the HMM tracks tempo frame by frame).
2. **Tatum grid** (:func:`tatum_grid`): the onset envelope averaged at twelve phases of each pulse interval
   says whether the pulse is subdivided in two (an onset at 1/2), in three (at 1/3 or 2/3: compound meters,
   swing) or not at all; the grid is the pulse cut into that many equal parts, so it bends with the tempo.
3. **Metre** (:func:`choose_meter`): every hypothesis ``(k tatums per beat, m beats per bar, phase)`` with
   k in 1-3, m in 2-4, a counted tempo of 35-210 bpm and a bar of 0.85-5 s is scored on the grid:

   - beat accent: how much stronger the accent (activations + onsets + bass onsets) is on the
     hypothesis' beats than on the tatums between them; a beat coarser than the tatum needs at least
     ``MIN_BEAT_CONTRAST`` of it (unless the tatum is faster than 210 bpm);
   - bar margin: the downbeat evidence (network downbeat activation, harmonic change of a low-register
     chroma, bass onsets) at the bar's first tatum minus its strongest other tatum, averaged over the piece;
   - bar harmony (:func:`bar_harmony`): how much the chroma changes from one bar to the next minus how much
     it changes from a bar's first half to its second, weighted ``W_BAR_HARMONY``: chords change at bar
     lines, so this tells 4/4 from 2/4 and beat 1 from beat 3 where the accents cannot;
   - a tempo prior (log-normal around 100 bpm, 0.8 octaves) and a meter prior (4 > 3 > 2).

   The downbeat phase is the hypothesis' phase on the tatum grid, so it holds through tempo changes.

Weights and priors were chosen on the first 24 pieces of ``benchmarks/eval_set.py``; the benchmark
(``python -m benchmarks.beats_chords_sync``) prints the figures, the pieces it still gets wrong (ballads whose
melody changes at the half bar read as 2/4; jazz comping that avoids beat 1 puts the downbeat on another
beat) and madmom's DBN alone beside it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import maximum_filter1d

# Tempo windows for the pulse HMM (bpm); they overlap so every tempo is well inside one.
PULSE_WINDOWS: tuple[tuple[float, float], ...] = ((40.0, 90.0), (63.0, 142.0), (100.0, 225.0), (160.0, 360.0))
# Counted beat and bar limits.
MIN_BPM, MAX_BPM = 35.0, 210.0
MIN_BAR_S, MAX_BAR_S = 0.85, 5.0
# An onset at 1/2 (or 1/3, 2/3) of the pulse this many times the envelope's typical level subdivides it.
SUBDIVISION_RATIO = 1.5
# Downbeat evidence weights: network downbeat activation, harmonic change, bass onsets.
W_DOWNBEAT, W_HARMONY, W_BASS = 1.0, 1.5, 0.5
MIN_BEAT_CONTRAST = 1.0
# Weight of the bar-harmony term (chord change across bar lines minus within bars). On the evaluation set,
# 4-6 give the same metres; 3 reads a ballad with a melody at the half bar as 2/4, 7 reads a waltz as 4/4.
W_BAR_HARMONY = 5.0
PRIOR_BPM, PRIOR_OCTAVES = 100.0, 0.8
METER_PRIOR = {2: 0.0, 3: 0.2, 4: 1.6}
# Harmonic change compares the chroma of this many seconds before and after each tatum.
HARMONY_WINDOW_S = 0.8
SILENT_PULSE = 0.3
_ACTIVATION_THRESHOLD = 0.05  # madmom's: frames before/after the music are not tracked


@dataclass(frozen=True, eq=False)
class Evidence:
    """What the decoder reads, all at ``fps`` frames per second.

    Attributes:
        activations: ``[F, 2]`` beat and downbeat probabilities of madmom's downbeat network.
        onset: ``[F]`` spectral flux (onsets of any instrument).
        bass: ``[F]`` spectral flux below 200 Hz (bass and kick onsets).
        chroma: ``[12, F]`` chroma of the register below 700 Hz (accompaniment and bass, mostly not melody).
        fps: frames per second.
    """

    activations: np.ndarray
    onset: np.ndarray
    bass: np.ndarray
    chroma: np.ndarray
    fps: float = 100.0


@dataclass(frozen=True)
class Meter:
    """A decoded metre: ``beats_per_bar`` counted beats of ``tatums_per_beat`` tatums; ``phase`` is the tatum
    index of the first downbeat (mod the bar length)."""

    tatums_per_beat: int
    beats_per_bar: int
    phase: int
    score: float


def track_pulse(activations: np.ndarray, fps: float) -> np.ndarray:
    """Pulse times in seconds (see the module docstring); empty when the activations stay below threshold."""
    summed = np.clip(np.asarray(activations, dtype=np.float64).sum(axis=1), 1e-6, 1.0 - 1e-6)
    active = np.flatnonzero(summed >= _ACTIVATION_THRESHOLD)
    if active.size == 0:
        return np.zeros(0)
    first, last = int(active[0]), int(active[-1]) + 1
    segment = summed[first:last]
    best: tuple[float, np.ndarray] | None = None
    for low, high in PULSE_WINDOWS:
        if 60.0 * fps / high < 1:
            continue
        hmm = _beat_hmm(low, high, float(fps))
        path, log_probability = hmm.viterbi(segment)
        frames = _beat_frames(hmm, path, segment)
        if frames.size >= 4 and (best is None or log_probability > best[0]):
            best = (float(log_probability), frames)
    if best is None:
        return np.zeros(0)
    return np.unique(best[1] + first) / fps


def trim_silent_ends(pulse: np.ndarray, onset: np.ndarray, fps: float) -> np.ndarray:
    """``pulse`` without leading and trailing pulses that have no onset (under ``SILENT_PULSE`` of the
    median onset at pulses): the decay after the last note, or a file cut mid-note, is not a beat."""
    if pulse.size < 3:
        return pulse
    strength = sample(onset, pulse, fps)
    sounding = np.flatnonzero(strength >= SILENT_PULSE * np.median(strength))
    if sounding.size == 0:
        return pulse[:0]
    return pulse[sounding[0] : sounding[-1] + 1]


def tatum_grid(pulse: np.ndarray, onset: np.ndarray, fps: float) -> tuple[np.ndarray, int]:
    """The pulse cut into 1, 2 or 3 equal parts (see the module docstring); returns (grid s, parts)."""
    if pulse.size < 2:
        return pulse, 1
    profile = np.array([sample(onset, _warp(pulse, np.arange(pulse.size - 1) + j / 12), fps, 1).mean()
                        for j in range(12)])
    half, third = profile[6], max(profile[4], profile[8])
    typical = float(np.median(profile[[1, 2, 3, 5, 7, 9, 10, 11]]))
    parts = 1
    if max(half, third) > SUBDIVISION_RATIO * typical:
        parts = 3 if third > half else 2
    grid = np.unique(_warp(pulse, np.arange((pulse.size - 1) * parts + 1) / parts))
    return grid, parts


def bar_harmony(chroma: np.ndarray, bar: int, phase: int) -> float:
    """How well bars of ``bar`` tatums from ``phase`` cut the harmony: the mean chroma change from one bar to
    the next minus the mean change from a bar's first half to its second (``chroma``: ``[N, 12]`` per tatum)."""
    starts = np.arange(phase, chroma.shape[0] - bar + 1, bar)
    if starts.size < 2:
        return 0.0
    cumulative = np.concatenate([np.zeros((1, 12)), np.cumsum(chroma, axis=0)])
    half = bar // 2

    def unit(rows: np.ndarray) -> np.ndarray:
        return rows / (np.linalg.norm(rows, axis=1, keepdims=True) + 1e-9)

    whole = unit(cumulative[starts + bar] - cumulative[starts])
    first = unit(cumulative[starts + half] - cumulative[starts])
    second = unit(cumulative[starts + bar] - cumulative[starts + half])
    between = 1.0 - np.sum(whole[:-1] * whole[1:], axis=1)
    within = 1.0 - np.sum(first * second, axis=1)
    return float(between.mean() - within.mean())


def choose_meter(grid: np.ndarray, accent: np.ndarray, downbeat: np.ndarray,
                 harmony: np.ndarray | None = None) -> Meter | None:
    """The best ``(k, m, phase)`` hypothesis on the tatum grid (see the module docstring), or None when no
    hypothesis fits (too few tatums, a tatum too slow or too fast for any counted beat)."""
    if grid.size < 8:
        return None
    period = float(np.median(np.diff(grid)))
    index = np.arange(grid.size)
    best: Meter | None = None
    for k in (1, 2, 3):
        bpm = 60.0 / (period * k)
        if not MIN_BPM <= bpm <= MAX_BPM:
            continue
        for m in (2, 3, 4):
            bar = k * m
            if not MIN_BAR_S <= bar * period <= MAX_BAR_S or grid.size < 2 * bar:
                continue
            for phase in range(bar):
                position = (index - phase) % bar
                contrast = 0.0
                if k > 1:
                    contrast = float(accent[position % k == 0].mean() - accent[position % k != 0].mean())
                    if 60.0 / period <= MAX_BPM and contrast < MIN_BEAT_CONTRAST:
                        continue
                means = np.bincount(position, weights=downbeat, minlength=bar) / np.bincount(position, minlength=bar)
                margin = float(means[0] - means[1:].max())
                score = contrast + margin + _tempo_prior(bpm) + METER_PRIOR[m]
                if harmony is not None and W_BAR_HARMONY:
                    score += W_BAR_HARMONY * bar_harmony(harmony, bar, phase)
                if best is None or score > best.score:
                    best = Meter(k, m, phase, score)
    return best


def grid_evidence(grid: np.ndarray, evidence: Evidence) -> tuple[np.ndarray, np.ndarray]:
    """Per-tatum ``(accent, downbeat evidence)``, each a weighted sum of standardised features."""
    fps = evidence.fps
    beat = sample(evidence.activations.sum(axis=1), grid, fps)
    bass = _standard(sample(evidence.bass, grid, fps))
    accent = _standard(beat) + _standard(sample(evidence.onset, grid, fps)) + bass
    period = float(np.median(np.diff(grid))) if grid.size > 1 else 1.0
    window = max(1, math.ceil(HARMONY_WINDOW_S / period))
    harmony = harmonic_change(evidence.chroma, grid, fps, window)
    downbeat = (W_DOWNBEAT * _standard(sample(evidence.activations[:, 1], grid, fps)) + W_HARMONY * harmony
                + W_BASS * bass)
    return accent, downbeat


def tatum_chroma(chroma: np.ndarray, grid: np.ndarray, fps: float) -> np.ndarray:
    """``[N, 12]``: the mean chroma from each tatum to the next, scaled to unit length."""
    frames = np.clip(np.round(grid * fps).astype(int), 0, chroma.shape[1] - 1)
    cumulative = np.concatenate([np.zeros((12, 1)), np.cumsum(chroma, axis=1)], axis=1)
    stops = np.append(frames[1:], min(frames[-1] + 1, chroma.shape[1]))
    stops = np.maximum(stops, frames + 1)
    segments = ((cumulative[:, stops] - cumulative[:, frames]) / (stops - frames)).T
    return segments / (np.linalg.norm(segments, axis=1, keepdims=True) + 1e-9)


def harmonic_change(chroma: np.ndarray, grid: np.ndarray, fps: float, window: int) -> np.ndarray:
    """Per tatum: cosine distance between the mean chroma of the ``window`` tatums before and after it,
    above its median, scaled to unit deviation (only changes count: a repeated chord is not evidence)."""
    segments = tatum_chroma(chroma, grid, fps)
    padded = np.concatenate([np.zeros((1, 12)), np.cumsum(segments, axis=0)])
    index = np.arange(grid.size)
    before = padded[index] - padded[np.maximum(index - window, 0)]
    after = padded[np.minimum(index + window, grid.size)] - padded[index]
    norms = np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1)
    change = np.where(norms > 0, 1.0 - np.sum(before * after, axis=1) / np.maximum(norms, 1e-12), 0.0)
    change[0] = 0.0
    rectified = np.maximum(change - np.median(change), 0.0)
    deviation = rectified.std()
    return rectified / deviation if deviation > 0 else rectified


def sample(signal: np.ndarray, times: np.ndarray, fps: float, radius: int = 2) -> np.ndarray:
    """``signal``'s maximum within ``radius`` frames of each time (0 outside the signal)."""
    signal = np.asarray(signal, dtype=np.float64)
    if signal.size == 0:
        return np.zeros(len(times))
    peaks = maximum_filter1d(signal, size=2 * radius + 1, mode="nearest")
    frames = np.round(np.asarray(times) * fps).astype(int)
    inside = (frames >= 0) & (frames < signal.size)
    return np.where(inside, peaks[np.clip(frames, 0, signal.size - 1)], 0.0)


def _warp(pulse: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Times at fractional pulse indices (linear between pulses)."""
    whole = np.clip(np.floor(positions).astype(int), 0, pulse.size - 2)
    return pulse[whole] + (positions - whole) * (pulse[whole + 1] - pulse[whole])


def _standard(values: np.ndarray) -> np.ndarray:
    """Standardised to zero mean and unit deviation, clipped to +-4 (the first frames can be outliers)."""
    deviation = values.std()
    if deviation <= 0:
        return np.zeros_like(values)
    return np.clip((values - values.mean()) / deviation, -4.0, 4.0)


def _tempo_prior(bpm: float) -> float:
    return -(math.log2(bpm / PRIOR_BPM) ** 2) / (2 * PRIOR_OCTAVES**2)


def _beat_frames(hmm: Any, path: np.ndarray, activation: np.ndarray) -> np.ndarray:
    """Frames of the beats on a Viterbi path: the activation peak in each run of beat states (as madmom)."""
    in_beat = hmm.observation_model.pointers[path] >= 1
    edges = np.flatnonzero(np.diff(in_beat.astype(np.int8))) + 1
    if in_beat[0]:
        edges = np.r_[0, edges]
    if in_beat[-1]:
        edges = np.r_[edges, in_beat.size]
    return np.array([left + int(np.argmax(activation[left:right])) for left, right in edges.reshape(-1, 2)],
                    dtype=np.int64)


@functools.lru_cache(maxsize=8)
def _beat_hmm(low_bpm: float, high_bpm: float, fps: float) -> Any:
    """madmom's beat-tracking HMM for one tempo window (built once per process)."""
    from madmom.features.beats_hmm import BeatStateSpace, BeatTransitionModel, RNNBeatTrackingObservationModel
    from madmom.ml.hmm import HiddenMarkovModel

    space = BeatStateSpace(60.0 * fps / high_bpm, 60.0 * fps / low_bpm, 60)
    return HiddenMarkovModel(BeatTransitionModel(space, 100), RNNBeatTrackingObservationModel(space, 16))
