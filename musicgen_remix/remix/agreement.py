"""How well two recordings agree in time: the measurements beat sync decides with.

Two cues, each from one short-time spectrum of 22.05 kHz mono audio (2048-point frames every 256 samples):

- **harmony**: chroma averaged to 10 frames per second and smoothed over half a second, each frame centred
  (its mean over the 12 pitch classes removed) and scaled to unit length, silent frames left out. The
  agreement of two recordings under a time map is the mean cosine of the song's frames with the take's
  frames at the mapped times: about 0.6-0.9 when the take plays the song's chords in the song's bars, about 0
  or below when it is a bar or two off. It tells bar shifts apart, which downbeats alone cannot.
- **onsets**: the log-spectral flux, smoothed with a 15 ms Gaussian; the agreement is its correlation with
  the song's within 70 ms of the song's beats. It measures the timing that the stretch is for.
- **fine onsets** (64-sample hop, 2.9 ms): :func:`refine_pairs` moves each paired song downbeat by the lag
  (within ``REFINE_S``) at which the song's onsets around it best match the take's around its own downbeat,
  so the pairs carry the two recordings' actual offset rather than two trackers' 10 ms frames.

:func:`measure` scores an output (the unstretched take, or the stretched one) against the song; beat sync
keeps whichever scores higher (:func:`musicgen_remix.remix.beatsync.sync_to_reference`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d, uniform_filter1d

from musicgen_remix.audio import Audio, convert

SAMPLE_RATE = 22050
N_FFT, HOP = 2048, 256
CHROMA_FPS = 10.0
CHROMA_SMOOTH_S = 0.5
ONSET_SMOOTH_S = 0.015
BEAT_WINDOW_S = 0.07
FINE_HOP = 64
REFINE_S = 0.03
# Onset windows compared by refine_pairs: from this long before a downbeat to this long after it.
REFINE_WINDOW_S = (0.08, 0.2)
REFINE_MIN_CORRELATION = 0.5
# Chroma frames quieter than this (relative to the loudest) carry no harmony.
_SILENT = 1e-4
_MIN_FRAMES = 5


@dataclass(frozen=True, eq=False)
class Features:
    """Onset and harmony envelopes of one recording.

    Attributes:
        onset: ``[F]`` smoothed spectral flux at ``fps`` frames per second.
        chroma: ``[C, 12]`` centred unit chroma at ``CHROMA_FPS``; all-zero rows are silent.
        fps: frames per second of ``onset``.
        duration: seconds.
    """

    onset: np.ndarray
    chroma: np.ndarray
    fps: float
    duration: float


@dataclass(frozen=True, eq=False)
class FineOnsets:
    """``envelope``: ``[F]`` spectral flux of 22.05 kHz mono audio at ``fps`` (about 345) frames per second."""

    envelope: np.ndarray
    fps: float


@dataclass(frozen=True)
class Agreement:
    """``onset`` correlation at the song's beats (-1 to 1) and ``harmony`` (mean chroma cosine, -1 to 1, None
    when either recording is silent); ``total`` is their sum (a missing cue counts 0)."""

    onset: float
    harmony: float | None

    @property
    def total(self) -> float:
        return self.onset + (self.harmony or 0.0)


def features(audio: Audio) -> Features:
    """Onset and chroma envelopes of ``audio`` (any rate and channels)."""
    import librosa

    mono = convert(audio, SAMPLE_RATE, 1).wav[0].detach().cpu().numpy().astype(np.float32)
    mono = np.pad(mono, (0, max(0, N_FFT - mono.size)))
    power = np.abs(librosa.stft(mono, n_fft=N_FFT, hop_length=HOP)) ** 2
    fps = SAMPLE_RATE / HOP
    log_power = np.log1p(100.0 * power)
    flux = np.maximum(0.0, np.diff(log_power, axis=1, prepend=np.zeros_like(log_power[:, :1]))).sum(axis=0)
    onset = gaussian_filter1d(flux, ONSET_SMOOTH_S * fps)
    chroma = librosa.feature.chroma_stft(S=power, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, tuning=0.0, norm=None)
    loud = power.sum(axis=0) > _SILENT * max(float(power.sum(axis=0).max()), 1e-12)
    # Average to CHROMA_FPS, then smooth over CHROMA_SMOOTH_S.
    per_frame = max(1, int(round(fps / CHROMA_FPS)))
    count = chroma.shape[1] // per_frame
    blocks = chroma[:, : count * per_frame].reshape(12, count, per_frame).mean(axis=2).T
    voiced = loud[: count * per_frame].reshape(count, per_frame).mean(axis=1) > 0.5
    blocks = uniform_filter1d(blocks, size=max(1, int(round(CHROMA_SMOOTH_S * CHROMA_FPS))), axis=0, mode="nearest")
    blocks = blocks - blocks.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(blocks, axis=1, keepdims=True)
    blocks = np.where((norms > 1e-9) & voiced[:, None], blocks / np.maximum(norms, 1e-9), 0.0)
    return Features(onset=onset, chroma=blocks, fps=fps, duration=audio.duration)


def fine_onsets(audio: Audio) -> FineOnsets:
    """Spectral flux of ``audio`` every ``FINE_HOP`` samples at 22.05 kHz (1024-point frames)."""
    import librosa

    mono = convert(audio, SAMPLE_RATE, 1).wav[0].detach().cpu().numpy().astype(np.float32)
    mono = np.pad(mono, (0, max(0, 1024 - mono.size)))
    log_power = np.log1p(100.0 * np.abs(librosa.stft(mono, n_fft=1024, hop_length=FINE_HOP)) ** 2)
    flux = np.maximum(0.0, np.diff(log_power, axis=1, prepend=np.zeros_like(log_power[:, :1]))).sum(axis=0)
    return FineOnsets(envelope=gaussian_filter1d(flux, 1.0), fps=SAMPLE_RATE / FINE_HOP)


def refine_pairs(pairs: np.ndarray, take: FineOnsets, song: FineOnsets) -> np.ndarray:
    """``pairs`` (``[M, 2]`` take s, song s) with each song time moved by the lag, within ``REFINE_S``, at
    which the song's onsets best match the take's around the pair (normalised correlation, parabolic
    sub-frame peak). A pair whose best correlation is under ``REFINE_MIN_CORRELATION`` (different onsets,
    near an edge) is kept as it was."""
    refined = np.array(pairs, dtype=np.float64).reshape(-1, 2)
    fps = take.fps
    before, after = (round(w * fps) for w in REFINE_WINDOW_S)
    reach = round(REFINE_S * fps)
    for row, (s, t) in enumerate(refined):
        a, b = round(s * fps), round(t * fps)
        if a - before < 0 or a + after > take.envelope.size or b - before - reach < 0:
            continue
        if b + after + reach > song.envelope.size:
            continue
        template = take.envelope[a - before : a + after]
        template = template - template.mean()
        scores = np.empty(2 * reach + 1)
        for index, lag in enumerate(range(-reach, reach + 1)):
            window = song.envelope[b - before + lag : b + after + lag]
            window = window - window.mean()
            norm = float(np.linalg.norm(template) * np.linalg.norm(window))
            scores[index] = float(np.dot(template, window)) / norm if norm > 0 else -1.0
        best = int(np.argmax(scores))
        if scores[best] < REFINE_MIN_CORRELATION:
            continue
        offset = float(best - reach)
        if 0 < best < scores.size - 1:
            left, centre, right = scores[best - 1], scores[best], scores[best + 1]
            curvature = left - 2 * centre + right
            if curvature < 0:
                offset += 0.5 * (left - right) / curvature
        refined[row, 1] = t + offset / fps
    return refined


def harmony_agreement(source: Features, target: Features, anchors: np.ndarray) -> float | None:
    """Mean cosine between ``target``'s chroma frames and ``source``'s at the times ``anchors`` (``[N, 2]``
    source s -> target s, increasing) map them from; frames outside the anchors or silent are left out."""
    anchors = np.asarray(anchors, dtype=np.float64)
    if len(anchors) < 2:
        return None
    times = (np.arange(target.chroma.shape[0]) + 0.5) / CHROMA_FPS
    inside = (times >= anchors[0, 1]) & (times <= anchors[-1, 1])
    source_times = np.interp(times[inside], anchors[:, 1], anchors[:, 0])
    source_frames = np.floor(source_times * CHROMA_FPS).astype(int)
    valid = (source_frames >= 0) & (source_frames < source.chroma.shape[0])
    a = target.chroma[np.flatnonzero(inside)[valid]]
    b = source.chroma[source_frames[valid]]
    both = (np.abs(a).sum(axis=1) > 0) & (np.abs(b).sum(axis=1) > 0)
    if both.sum() < _MIN_FRAMES:
        return None
    return float(np.mean(np.sum(a[both] * b[both], axis=1)))


def onset_agreement(output: Features, reference: Features, times: np.ndarray) -> float:
    """Correlation of the two onset envelopes over the frames within ``BEAT_WINDOW_S`` of ``times``."""
    length = min(output.onset.size, reference.onset.size)
    frames = np.zeros(length, dtype=bool)
    radius = int(round(BEAT_WINDOW_S * reference.fps))
    for frame in np.round(np.asarray(times) * reference.fps).astype(int):
        frames[max(frame - radius, 0) : max(min(frame + radius + 1, length), 0)] = True
    a, b = output.onset[:length][frames], reference.onset[:length][frames]
    if a.size < 3 or a.std() <= 0 or b.std() <= 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def measure(output: Features, reference: Features, beats: np.ndarray, harmony: Features | None = None) -> Agreement:
    """How well ``output`` agrees with the song: onsets against ``reference`` at ``beats`` (the song's beat or
    downbeat times), harmony against ``harmony`` (e.g. the song's drumless stem; default ``reference``)."""
    harmonic = harmony if harmony is not None else reference
    end = min(output.duration, harmonic.duration)
    identity = np.array([[0.0, 0.0], [end, end]]) if end > 0 else np.zeros((0, 2))
    return Agreement(onset=onset_agreement(output, reference, beats),
                     harmony=harmony_agreement(output, harmonic, identity))
