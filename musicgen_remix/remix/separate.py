"""Source separation, run once per song: demucs ``htdemucs`` into drums, bass, other and vocals.

Every later stage reuses these stems (the seed predictor separated the same song about four times):
the drumless mix feeds chord recognition, the vocals are mixed back over the new instrumental, and the
accompaniment is there for anything that wants the song without its voice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from musicgen_remix.audio import Audio, convert

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MODEL_NAME = "htdemucs"


@dataclass(frozen=True)
class Stems:
    """The four htdemucs stems of one song, ``[2, T]`` each at the separator's sample rate."""

    drums: torch.Tensor
    bass: torch.Tensor
    other: torch.Tensor
    vocals: torch.Tensor
    sample_rate: int

    def audio(self, wav: torch.Tensor) -> Audio:
        return Audio(wav.contiguous(), self.sample_rate)

    @property
    def accompaniment(self) -> Audio:
        """Everything but the vocals."""
        return self.audio(self.drums + self.bass + self.other)

    @property
    def drumless(self) -> Audio:
        """Everything but the drums: what chord recognition hears best."""
        return self.audio(self.bass + self.other + self.vocals)

    @property
    def vocal(self) -> Audio:
        return self.audio(self.vocals)


class Separator:
    """Holds the demucs model (loaded once) and separates songs with it.

    ``calls`` counts separations, so a pipeline can show (and a test can assert) that a song is
    separated once.
    """

    def __init__(self, device: str = "cpu") -> None:
        from demucs.pretrained import get_model

        self.device = device
        self.model: Any = get_model(MODEL_NAME)
        self.model.eval()
        self.sources: list[str] = list(self.model.sources)
        self.sample_rate = int(self.model.samplerate)
        self.calls = 0

    def separate(self, song: Audio) -> Stems:
        import torch
        from demucs.apply import apply_model

        self.calls += 1
        mix = convert(song, self.sample_rate, 2).wav
        # As demucs' own separate command: standardise the mix, separate, undo.
        ref = mix.mean(0)
        mean, std = ref.mean(), ref.std().clamp_min(1e-8)
        with torch.no_grad():
            out = apply_model(self.model, ((mix - mean) / std)[None], shifts=0, split=True, overlap=0.25,
                              device=self.device, progress=False)[0]
        out = out * std + mean
        stems = {name: out[i].cpu() for i, name in enumerate(self.sources)}
        logger.info("separated %.1f s into %s", song.duration, ", ".join(self.sources))
        return Stems(drums=stems["drums"], bass=stems["bass"], other=stems["other"], vocals=stems["vocals"],
                     sample_rate=self.sample_rate)
