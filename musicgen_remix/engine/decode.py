"""Tokens to waveform: EnCodec, or MultiBand Diffusion (mono, and stereo by left/right codebooks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from musicgen_remix.engine.progress import Progress

if TYPE_CHECKING:
    import torch
    from audiocraft.models import MultiBandDiffusion, MusicGen
    from audiocraft.models.encodec import InterleaveStereoCompressionModel


def decode(model: MusicGen, tokens: torch.Tensor, *, mbd: MultiBandDiffusion | None = None,
           progress: Progress | None = None) -> torch.Tensor:
    """Decode ``[1, K, T]`` tokens to ``[1, C, samples]`` float audio at the model's sample rate.

    With ``mbd``, stereo models (8 interleaved codebooks) are decoded one channel at a time: MBD was
    trained on the mono 32 kHz EnCodec, so the left and right codebooks each go through it alone.
    """
    import torch

    with torch.no_grad():
        if mbd is None:
            return model.compression_model.decode(tokens, None)
        if model.audio_channels == 2:
            stereo_codec = cast("InterleaveStereoCompressionModel", model.compression_model)
            left, right = stereo_codec.get_left_right_codes(tokens)
            channels = []
            for codes in (left, right):
                if progress is not None:
                    progress.check()
                channels.append(mbd.tokens_to_wav(codes))
            return torch.cat(channels, dim=1)
        if progress is not None:
            progress.check()
        return mbd.tokens_to_wav(tokens)
