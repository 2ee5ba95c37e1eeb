"""The tail both pipelines share: tokens to audio, then the audio to a file that says what made it.

:func:`render` decodes tokens (EnCodec, or MultiBand Diffusion when asked) and refuses non-finite audio;
:func:`deliver` normalises as the request asked and writes it with its provenance tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from musicgen_remix.audio import Audio, normalize, write_audio
from musicgen_remix.audio.tags import Provenance
from musicgen_remix.engine.decode import decode
from musicgen_remix.engine.inputs import Shared
from musicgen_remix.errors import MusicgenRemixError
from musicgen_remix.progress import Progress

if TYPE_CHECKING:
    import torch
    from audiocraft.models import MultiBandDiffusion, MusicGen


class NumericsError(MusicgenRemixError):
    """The model produced NaN or Inf: a weights or numerics problem, never the caller's input."""


def render(model: MusicGen, tokens: torch.Tensor, *, mbd: MultiBandDiffusion | None,
           progress: Progress) -> Audio:
    """``[1, K, T]`` tokens as ``[C, samples]`` float audio at the model's rate.

    Raises:
        NumericsError: the decoded audio holds NaN or Inf.
    """
    import torch

    wav = decode(model, tokens, mbd=mbd, progress=progress)[0].float().cpu()
    if not bool(torch.isfinite(wav).all()):
        raise NumericsError("the model produced non-finite audio (NaN/Inf); this is a weights or numerics "
                            "problem, not an input error")
    progress.check()
    return Audio(wav, int(model.sample_rate))


def deliver(audio: Audio, shared: Shared, out_dir: Path, stem: str, provenance: Provenance) -> Path:
    """``audio`` normalised by the request's strategy, written as ``<stem>.<format>`` with its provenance."""
    wav = normalize(audio.wav, audio.sample_rate, shared.normalization)
    return write_audio(out_dir / f"{stem}.{shared.output_format}", wav, audio.sample_rate, fmt=shared.output_format,
                       tags=provenance.tags())
