"""What a server's audio output must measure: the default normalisation applied (a decoded 16-bit file is always
finite and within full scale, so only its level says anything)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicgen_remix.audio import LOUDNESS_CEILING_DBFS, LOUDNESS_TARGET_LUFS, integrated_loudness

PCM16_STEP = 1 / 32767


def assert_default_loudness(samples: np.ndarray, sample_rate: int) -> None:
    """``samples`` (``[T]`` or ``[T, C]``) at -14 LUFS, peaks under the limiter's -1 dBFS ceiling."""
    wav = torch.from_numpy(np.atleast_2d(samples.T).astype(np.float32))
    assert integrated_loudness(wav, sample_rate) == pytest.approx(LOUDNESS_TARGET_LUFS, abs=0.5)
    assert float(np.abs(samples).max()) <= 10 ** (LOUDNESS_CEILING_DBFS / 20) + PCM16_STEP
