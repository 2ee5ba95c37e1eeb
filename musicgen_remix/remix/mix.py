"""Mixing the song's vocals back over the new instrumental, at the song's own balance.

Fixed gains (the seed used 0.5 and 0.25) ignore how loud each part is. Here the instrumental is brought
to the loudness the song's accompaniment had, and the vocals keep theirs, so the voice sits over the new
arrangement as it sat over the old one. Lengths are made equal; the caller normalises the sum.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from musicgen_remix.audio import Audio, convert, integrated_loudness

logger = logging.getLogger(__name__)

MAX_GAIN_DB = 24.0  # never boost a near-silent instrumental into noise


@dataclass(frozen=True)
class MixReport:
    instrumental_gain_db: float
    vocal_lufs: float | None
    accompaniment_lufs: float | None


@dataclass(frozen=True)
class Mix:
    """The sum, and the instrumental exactly as it went into it (stereo, gain-matched, same rate/length)."""

    mix: Audio
    instrumental: Audio
    report: MixReport


def fit_length(wav: torch.Tensor, frames: int) -> torch.Tensor:
    """Pad with silence or cut ``[C, T]`` to ``frames``."""
    if wav.shape[-1] >= frames:
        return wav[..., :frames]
    return torch.nn.functional.pad(wav, (0, frames - wav.shape[-1]))


def mix_vocals(instrumental: Audio, vocals: Audio, accompaniment: Audio) -> Mix:
    """Vocals over ``instrumental``, with the instrumental matched to ``accompaniment``'s loudness.

    The result has the vocals' sample rate, two channels and the vocals' length.
    """
    rate, frames = vocals.sample_rate, vocals.num_frames
    inst = fit_length(convert(instrumental, rate, 2).wav, frames)
    voice = convert(vocals, rate, 2).wav
    target = _loudness(convert(accompaniment, rate, 2).wav, rate)
    current = _loudness(inst, rate)
    gain_db = 0.0
    if target is not None and current is not None:
        gain_db = max(-MAX_GAIN_DB, min(MAX_GAIN_DB, target - current))
    matched = inst * 10 ** (gain_db / 20)
    report = MixReport(instrumental_gain_db=gain_db, vocal_lufs=_loudness(voice, rate), accompaniment_lufs=target)
    logger.info("mix: instrumental %+.1f dB (to the accompaniment's %s LUFS), vocals %s LUFS", gain_db,
                _fmt(target), _fmt(report.vocal_lufs))
    return Mix(mix=Audio(matched + voice, rate), instrumental=Audio(matched, rate), report=report)


def _loudness(wav: torch.Tensor, rate: int) -> float | None:
    if wav.shape[-1] < rate // 2:
        return None
    value = integrated_loudness(wav, rate)
    return value if math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
