"""Cleaning and level normalisation of ``[C, T]`` audio.

This is the one module that changes audio levels. Four strategies, named as the Cog input
``normalization_strategy`` names them:

- ``loudness``: BS.1770 integrated loudness (pyloudnorm) to -14 LUFS, audiocraft's default
  ``loudness_headroom_db=14``, followed by a look-ahead peak limiter at -1 dBFS, because a loudness gain
  alone can push peaks far above full scale.
- ``clip``: clamp to [-1, 1]. audiocraft clamps with a 1 dB headroom; we keep full scale so that audio
  already within range passes unchanged.
- ``peak``: scale so that the largest absolute sample is exactly 1.0.
- ``rms``: scale the mono mix to -18 dBFS RMS (audiocraft's ``rms_headroom_db=18``), then limit at 1.0.

NaN or Inf input is a bug upstream and is reported, never masked. Silence stays silence.
"""

from __future__ import annotations

import logging
import math
from typing import Literal, get_args

import numpy as np
import pyloudnorm
import torch
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from musicgen_remix.errors import MusicgenRemixError, contract_error

logger = logging.getLogger(__name__)

Strategy = Literal["loudness", "clip", "peak", "rms"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

LOUDNESS_TARGET_LUFS = -14.0
LOUDNESS_CEILING_DBFS = -1.0
# The limiter lowers loudness while it engages, so gain and limiting are repeated until the result is
# this close to the target.
LOUDNESS_TOLERANCE_LU = 0.1
RMS_TARGET_DBFS = -18.0
LIMITER_LOOKAHEAD_S = 0.005
# BS.1770 gating block: pyloudnorm cannot measure anything shorter.
LOUDNESS_BLOCK_S = 0.4

_LOUDNESS_ROUNDS = 10
# Beyond this much extra gain over the first estimate the limiter would only be flattening noise into
# the ceiling; the target is then unreachable (e.g. one click in digital silence).
_MAX_EXTRA_GAIN_DB = 40.0
# pyloudnorm knows the channel weights of the 5-channel layout only.
_PYLOUDNORM_MAX_CHANNELS = 5


def normalize(wav: torch.Tensor, sample_rate: int, strategy: Strategy) -> torch.Tensor:
    """Return ``wav`` (``[C, T]``) normalised with ``strategy``, as float32 on the same device.

    Raises:
        ValueError: unknown strategy, or ``wav`` is not ``[C, T]``.
        MusicgenRemixError: ``wav`` contains NaN or Inf.
    """
    if strategy not in STRATEGIES:
        raise contract_error("normalization_strategy", strategy, "one of " + ", ".join(STRATEGIES))
    samples = _as_numpy(wav)
    if strategy == "clip":
        result = np.clip(samples, -1.0, 1.0)
    elif strategy == "peak":
        result = _peak(samples, 1.0)
    elif strategy == "rms":
        result = _rms(samples, sample_rate)
    else:
        result = _loudness(samples, sample_rate)
    return torch.from_numpy(result.astype(np.float32)).to(wav.device)


def integrated_loudness(wav: torch.Tensor, sample_rate: int) -> float:
    """BS.1770 integrated loudness of ``[C, T]`` audio in LUFS; ``-inf`` for silence.

    More than five channels are measured on their mono mix (pyloudnorm weights the 5.0 layout only).

    Raises:
        ValueError: the audio is shorter than one 400 ms block.
        MusicgenRemixError: ``wav`` contains NaN or Inf.
    """
    samples = _as_numpy(wav)
    if samples.shape[1] < _block_frames(sample_rate):
        raise contract_error(
            "wav",
            f"{samples.shape[1] / sample_rate:.3f} s of audio",
            f"at least {LOUDNESS_BLOCK_S} s of audio (one BS.1770 block)",
        )
    return _measure(samples, sample_rate)


def limit(
    wav: torch.Tensor, sample_rate: int, ceiling: float, *, lookahead_s: float = LIMITER_LOOKAHEAD_S
) -> torch.Tensor:
    """Look-ahead peak limiter: no sample of the result exceeds ``ceiling`` in absolute value.

    The gain falls smoothly over about ``lookahead_s`` before each peak and recovers as fast after it;
    all channels share one gain so the stereo image does not shift.

    Raises:
        ValueError: ``ceiling`` or ``lookahead_s`` is not positive, or ``wav`` is not ``[C, T]``.
        MusicgenRemixError: ``wav`` contains NaN or Inf.
    """
    if not ceiling > 0:
        raise contract_error("ceiling", ceiling, "a positive linear amplitude, e.g. 1.0 for full scale")
    if not lookahead_s > 0:
        raise contract_error("lookahead_s", lookahead_s, "a positive number of seconds")
    result = _limit(_as_numpy(wav), sample_rate, ceiling, lookahead_s)
    return torch.from_numpy(result.astype(np.float32)).to(wav.device)


def _as_numpy(wav: torch.Tensor) -> np.ndarray:
    """``[C, T]`` tensor -> float64 array, refusing NaN/Inf (a bug upstream, never masked)."""
    if wav.dim() != 2:
        raise contract_error("wav", tuple(wav.shape), "a [C, T] tensor")
    samples = wav.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise MusicgenRemixError(f"cannot normalise audio with {bad} NaN or Inf samples")
    return samples


def _block_frames(sample_rate: int) -> int:
    return math.ceil(LOUDNESS_BLOCK_S * sample_rate)


def _measure(samples: np.ndarray, sample_rate: int) -> float:
    if samples.shape[0] > _PYLOUDNORM_MAX_CHANNELS:
        samples = samples.mean(axis=0, keepdims=True)
    meter = pyloudnorm.Meter(sample_rate)
    return float(meter.integrated_loudness(samples.T))


def _peak(samples: np.ndarray, target: float) -> np.ndarray:
    peak = float(np.abs(samples).max(initial=0.0))
    if peak == 0.0:
        return samples
    # Divide first: x / peak is exactly 1.0 at the peak, so the target is hit to the last bit.
    return samples / peak * target


def _rms(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    rms = float(np.sqrt(np.mean(samples.mean(axis=0) ** 2)))
    if rms == 0.0:
        # Silence, or channels that cancel in the mono mix: fall back to the level of all channels.
        rms = float(np.sqrt(np.mean(samples**2)))
        if rms == 0.0:
            return samples
    gained = samples * (10.0 ** (RMS_TARGET_DBFS / 20.0) / rms)
    return _limit(gained, sample_rate, 1.0, LIMITER_LOOKAHEAD_S)


def _loudness(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    ceiling = 10.0 ** (LOUDNESS_CEILING_DBFS / 20.0)
    if samples.shape[1] < _block_frames(sample_rate):
        logger.info(
            "audio shorter than %.1f s cannot be loudness-measured; peak-normalising to %.0f dBFS",
            LOUDNESS_BLOCK_S,
            LOUDNESS_CEILING_DBFS,
        )
        return _peak(samples, ceiling)
    measured = _measure(samples, sample_rate)
    if not math.isfinite(measured):
        # Every block is below BS.1770's -70 LUFS absolute gate: silence, left as it is.
        logger.info("audio is silent (below -70 LUFS); loudness normalisation skipped")
        return samples

    gain_db = LOUDNESS_TARGET_LUFS - measured
    max_gain_db = gain_db + _MAX_EXTRA_GAIN_DB
    best_error, best_result = math.inf, samples
    previous: tuple[float, float] | None = None
    for _ in range(_LOUDNESS_ROUNDS):
        result = _limit(samples * 10.0 ** (gain_db / 20.0), sample_rate, ceiling, LIMITER_LOOKAHEAD_S)
        achieved = _measure(result, sample_rate)
        error = LOUDNESS_TARGET_LUFS - achieved
        if abs(error) < best_error:
            best_error, best_result = abs(error), result
        if abs(error) <= LOUDNESS_TOLERANCE_LU:
            break
        # Secant step: limiting makes loudness grow slower than the gain, so a plain "add the error"
        # step would crawl towards the target on heavily limited material.
        slope = 1.0
        if previous is not None and gain_db != previous[0]:
            slope = (achieved - previous[1]) / (gain_db - previous[0])
            slope = min(1.0, max(0.1, slope))
        previous = (gain_db, achieved)
        next_gain_db = min(gain_db + error / slope, max_gain_db)
        if next_gain_db == gain_db:
            break
        gain_db = next_gain_db
    if best_error > LOUDNESS_TOLERANCE_LU:
        logger.warning(
            "loudness target %.1f LUFS not reached (off by %.2f LU) within the limiter's ceiling",
            LOUDNESS_TARGET_LUFS,
            best_error,
        )
    return best_result


def _limit(samples: np.ndarray, sample_rate: int, ceiling: float, lookahead_s: float) -> np.ndarray:
    """Numpy core of :func:`limit` on ``[C, T]`` float64."""
    if samples.shape[1] == 0:
        return samples
    peak = np.abs(samples).max(axis=0)
    with np.errstate(divide="ignore"):
        required = np.minimum(1.0, ceiling / peak)  # zero samples give inf -> 1.0
    if required.min() >= 1.0:
        return samples
    lookahead = max(1, round(lookahead_s * sample_rate))
    # The minimum over +-lookahead holds every peak's gain for the whole window around it; a moving
    # average no wider than lookahead + 1 then only mixes values that are all at or below the gain a
    # peak requires, so the smoothed gain can never let a peak through.
    held = minimum_filter1d(required, size=2 * lookahead + 1, mode="nearest")
    smoothed = uniform_filter1d(held, size=lookahead + 1, mode="nearest")
    # Mathematically a no-op (smoothed <= required already); it absorbs the running sum's rounding.
    gain = np.minimum(smoothed, required)
    return samples * gain
