"""Tests for musicgen_remix.audio.normalize: each strategy measured, the limiter, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicgen_remix.audio import (
    LOUDNESS_CEILING_DBFS,
    LOUDNESS_TARGET_LUFS,
    RMS_TARGET_DBFS,
    STRATEGIES,
    integrated_loudness,
    limit,
    normalize,
)
from musicgen_remix.errors import InputError, MusicgenRemixError

SR = 32000
CEILING = 10.0 ** (LOUDNESS_CEILING_DBFS / 20.0)


def music(peak: float, seconds: float = 4.0, seed: int = 0) -> torch.Tensor:
    """Stereo harmonic tone with a tremolo and a noise floor, scaled to ``peak``."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    partials = [(110, 1.0), (220, 0.5), (330, 0.4), (440, 0.3), (880, 0.2), (1760, 0.1)]
    x = sum(a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f, a in partials)
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)) + 0.1 * rng.standard_normal(t.size)
    x = x / np.abs(x).max() * peak
    return torch.tensor(np.stack([x, 0.8 * x]), dtype=torch.float32)


def clicks(seconds: float = 4.0, seed: int = 1) -> torch.Tensor:
    """High crest factor: 1 ms clicks near full scale every 250 ms over very quiet noise."""
    rng = np.random.default_rng(seed)
    x = 0.003 * rng.standard_normal(round(seconds * SR))
    for start in range(0, x.size, SR // 4):
        x[start : start + 32] += 0.9 * np.hanning(32) * rng.choice([-1.0, 1.0])
    return torch.tensor(x[None], dtype=torch.float32)


def mono_rms_dbfs(wav: torch.Tensor) -> float:
    mono = wav.double().mean(dim=0)
    return float(20 * torch.log10(mono.pow(2).mean().sqrt()))


SIGNALS = {
    "quiet_music": lambda: music(0.01),
    "loud_music": lambda: music(1.0),
    "hot_music": lambda: music(3.0),  # overs, as a float pipeline can produce
    "clicks": clicks,
}


# ----------------------------------------------------------------------------------------------------
# loudness


@pytest.mark.parametrize("name", ["quiet_music", "loud_music", "hot_music", "clicks"])
def test_loudness_reaches_target_without_overs(name: str) -> None:
    wav = SIGNALS[name]()
    out = normalize(wav, SR, "loudness")
    assert out.shape == wav.shape
    assert out.dtype == torch.float32
    assert integrated_loudness(out, SR) == pytest.approx(LOUDNESS_TARGET_LUFS, abs=0.2)
    assert float(out.abs().max()) <= CEILING + 1e-6


def test_loudness_limiter_engages_on_high_crest_audio() -> None:
    """Reaching -14 LUFS needs about +16 dB here, which would put the clicks far above full scale."""
    wav = clicks()
    gain_db = LOUDNESS_TARGET_LUFS - integrated_loudness(wav, SR)
    assert float(wav.abs().max()) * 10 ** (gain_db / 20) > 3.0
    out = normalize(wav, SR, "loudness")
    assert float(out.abs().max()) == pytest.approx(CEILING, abs=1e-5)
    assert integrated_loudness(out, SR) == pytest.approx(LOUDNESS_TARGET_LUFS, abs=0.2)


def test_loudness_without_limiting_is_a_pure_gain() -> None:
    wav = music(0.01)
    out = normalize(wav, SR, "loudness")
    ratio = out.double() / wav.double()
    valid = wav.abs() > 1e-4
    assert float(ratio[valid].std()) < 1e-5


def test_loudness_of_short_audio_falls_back_to_peak() -> None:
    wav = music(0.1, seconds=0.2)
    out = normalize(wav, SR, "loudness")
    assert float(out.abs().max()) == pytest.approx(CEILING, abs=1e-6)


def test_loudness_of_eight_channels() -> None:
    wav = music(0.05).repeat(4, 1)
    out = normalize(wav, SR, "loudness")
    assert out.shape == (8, wav.shape[1])
    assert integrated_loudness(out, SR) == pytest.approx(LOUDNESS_TARGET_LUFS, abs=0.2)


# ----------------------------------------------------------------------------------------------------
# peak, rms, clip


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_peak_hits_full_scale(name: str) -> None:
    out = normalize(SIGNALS[name](), SR, "peak")
    assert float(out.abs().max()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", ["quiet_music", "loud_music"])
def test_rms_reaches_target_when_nothing_is_limited(name: str) -> None:
    out = normalize(SIGNALS[name](), SR, "rms")
    assert float(out.abs().max()) < 1.0  # the limiter had nothing to do
    assert mono_rms_dbfs(out) == pytest.approx(RMS_TARGET_DBFS, abs=0.01)


def test_rms_limits_peaks_of_high_crest_audio() -> None:
    out = normalize(clicks(), SR, "rms")
    assert float(out.abs().max()) == pytest.approx(1.0, abs=1e-5)
    # rms is one gain then one limiter pass (no loudness-style iteration): here the clicks carry most
    # of the energy, so limiting them leaves the level below the target.
    assert mono_rms_dbfs(out) < RMS_TARGET_DBFS - 3.0


def test_rms_of_channels_that_cancel_in_mono() -> None:
    """A silent mono mix: the level of all channels is brought to the target instead, with one gain."""
    wav = music(0.1)[:1].repeat(2, 1)
    wav[1] *= -1
    out = normalize(wav, SR, "rms")
    all_channels_dbfs = float(20 * torch.log10(out.double().pow(2).mean().sqrt()))
    assert all_channels_dbfs == pytest.approx(RMS_TARGET_DBFS, abs=0.01)
    assert torch.equal(out[1], -out[0])


def test_clip_clamps_and_leaves_the_rest() -> None:
    wav = torch.tensor([[0.5, -0.25, 1.5, -3.0, 1.0]])
    assert normalize(wav, SR, "clip").tolist() == [[0.5, -0.25, 1.0, -1.0, 1.0]]


# ----------------------------------------------------------------------------------------------------
# Silence and bad input


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("seconds", [0.1, 2.0])
def test_silence_stays_silent(strategy: str, seconds: float) -> None:
    wav = torch.zeros(2, round(seconds * SR))
    out = normalize(wav, SR, strategy)  # type: ignore[arg-type]
    assert bool(torch.isfinite(out).all())
    assert float(out.abs().max()) == 0.0


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_is_reported(strategy: str, bad: float) -> None:
    wav = music(0.5)
    wav[1, 1234] = bad
    with pytest.raises(MusicgenRemixError, match="NaN or Inf"):
        normalize(wav, SR, strategy)  # type: ignore[arg-type]


def test_an_unknown_strategy_is_a_bug_not_the_callers_input() -> None:
    """The input was checked when the request was: reaching normalize() with another value is a bug."""
    with pytest.raises(ValueError) as error:
        normalize(music(0.5), SR, "lufs")  # type: ignore[arg-type]
    assert not isinstance(error.value, InputError)
    assert "normalization_strategy='lufs'" in str(error.value)
    assert "loudness, clip, peak, rms" in str(error.value)


def test_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="wav"):
        normalize(torch.zeros(1000), SR, "peak")


# ----------------------------------------------------------------------------------------------------
# Helpers


def test_integrated_loudness_of_a_reference_sine() -> None:
    """BS.1770: a full-scale 997 Hz mono sine reads -3.01 LUFS; -20 dB lower reads -23.01."""
    t = np.arange(3 * 48000) / 48000
    sine = torch.tensor(0.1 * np.sin(2 * np.pi * 997 * t), dtype=torch.float32).unsqueeze(0)
    assert integrated_loudness(sine, 48000) == pytest.approx(-23.01, abs=0.1)


def test_integrated_loudness_of_silence_is_minus_infinity() -> None:
    assert integrated_loudness(torch.zeros(1, SR), SR) == float("-inf")


def test_integrated_loudness_refuses_short_audio() -> None:
    with pytest.raises(ValueError, match=r"0\.4 s"):
        integrated_loudness(torch.zeros(1, SR // 10), SR)


def test_limit_caps_peaks_and_keeps_the_rest() -> None:
    wav = torch.full((2, SR), 0.4)
    spike_at = SR // 2
    wav[:, spike_at] = 2.0
    out = limit(wav, SR, 1.0)
    assert float(out.abs().max()) == pytest.approx(1.0, abs=1e-6)
    lookahead = round(0.005 * SR)
    gain = (out / wav)[0]
    # Look-ahead: the gain is already down to what the spike needs before the spike arrives.
    assert float(gain[spike_at - lookahead // 4]) == pytest.approx(0.5, abs=1e-6)
    # Away from the spike nothing changes.
    assert torch.equal(out[:, : spike_at - 2 * lookahead], wav[:, : spike_at - 2 * lookahead])
    assert torch.equal(out[:, spike_at + 2 * lookahead :], wav[:, spike_at + 2 * lookahead :])


def test_limit_is_smooth_around_a_peak() -> None:
    """A constant tone with one loud burst: the gain must not jump from 1 to the required value."""
    wav = torch.full((1, SR // 10), 0.5)
    wav[0, 1600] = 1.0
    out = limit(wav, SR, 0.8)
    gain = (out / wav)[0]
    assert float(gain.min()) == pytest.approx(0.8, abs=1e-6)
    assert float(gain.diff().abs().max()) < 0.2 / (0.005 * SR) * 2


def test_limit_leaves_quiet_audio_unchanged() -> None:
    wav = music(0.5)
    assert torch.equal(limit(wav, SR, 0.9), wav)


def test_limit_refuses_bad_ceiling() -> None:
    with pytest.raises(ValueError, match="ceiling"):
        limit(music(0.5), SR, 0.0)
