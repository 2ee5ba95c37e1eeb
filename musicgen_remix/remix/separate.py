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
from musicgen_remix.progress import Progress

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MODEL_NAME = "htdemucs"
OVERLAP = 0.25  # demucs' own default for its separate command


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

    def separate(self, song: Audio, progress: Progress | None = None) -> Stems:
        """The stems of ``song``; ``progress`` hears of each segment demucs finishes (stage ``separation``)."""
        import torch
        from demucs.apply import apply_model

        self.calls += 1
        mix = convert(song, self.sample_rate, 2).wav
        total = self._segments(mix.shape[-1])
        done = [0]

        def segment_done(event: dict) -> None:
            if event.get("state") == "end" and progress is not None:
                done[0] += 1
                progress.step("separation", min(done[0], total), total)

        # As demucs' own separate command: standardise the mix, separate, undo.
        ref = mix.mean(0)
        mean, std = ref.mean(), ref.std().clamp_min(1e-8)
        with torch.no_grad():
            out = apply_model(self.model, ((mix - mean) / std)[None], shifts=0, split=True, overlap=OVERLAP,
                              device=self.device, progress=False, callback=segment_done)[0]
        out = out * std + mean
        stems = {name: out[i].cpu() for i, name in enumerate(self.sources)}
        logger.info("separated %.1f s into %s", song.duration, ", ".join(self.sources))
        return Stems(drums=stems["drums"], bass=stems["bass"], other=stems["other"], vocals=stems["vocals"],
                     sample_rate=self.sample_rate)

    def _segments(self, length: int) -> int:
        """How many segments demucs will run for ``length`` samples (its ``apply_model`` split, per model)."""
        models = getattr(self.model, "models", [self.model])
        total = 0
        for model in models:
            segment = int(self.sample_rate * float(model.segment))
            stride = max(1, int((1 - OVERLAP) * segment))
            total += len(range(0, length, stride))
        return max(1, total)
