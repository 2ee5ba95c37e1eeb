"""Tokens to waveform: EnCodec, or MultiBand Diffusion (mono, and stereo by left/right codebooks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from musicgen_remix.progress import Progress

MBD_STAGE = "MultiBand Diffusion decoding"

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

    progress = progress or Progress()
    with torch.no_grad():
        if mbd is None:
            return model.compression_model.decode(tokens, None)
        if model.audio_channels == 2:
            stereo_codec = cast("InterleaveStereoCompressionModel", model.compression_model)
            parts = list(stereo_codec.get_left_right_codes(tokens))
        else:
            parts = [tokens]
        # MultiBand Diffusion is the slow decoder (seconds per channel on a GPU): one progress step each.
        progress.step(MBD_STAGE, 0, len(parts))
        channels = []
        for index, codes in enumerate(parts):
            channels.append(mbd.tokens_to_wav(codes))
            progress.step(MBD_STAGE, index + 1, len(parts))
        return torch.cat(channels, dim=1)
