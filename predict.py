"""Cog entrypoints: thin typed adapters over :mod:`musicgen_remix` (one call into the package each).

``predict.py:GeneratePredictor`` — generate with continuation (the fofr/musicgen-mario schema).
``predict.py:RemixPredictor`` — remix a song (the sakemin/musicgen-remixer schema), see cog.yaml.
Input defaults come from the package's request dataclasses, defined once.
"""

# No `from __future__ import annotations` here: Cog 0.16 reads the predict() annotations as
# objects, and string annotations make the server reject every input type at startup.
import logging
import shutil
import tempfile
from pathlib import Path as _Path
from typing import Optional

from cog import BasePredictor, Input, Path

from musicgen_remix.engine.progress import Progress, log_progress
from musicgen_remix.generate import DURATION_MAX_S, MODEL_VERSIONS, GenerateRequest
from musicgen_remix.generate import defaults as generate_defaults

G = generate_defaults()


class _RequestDirs:
    """One temporary directory per request; the previous one is removed when the next request starts
    (Cog uploads the output after ``predict`` returns, so it cannot be removed any earlier)."""

    def __init__(self) -> None:
        self._last: _Path | None = None

    def new(self) -> _Path:
        self.cleanup()
        self._last = _Path(tempfile.mkdtemp(prefix="musicgen-remix-"))
        return self._last

    def cleanup(self) -> None:
        if self._last is not None:
            shutil.rmtree(self._last, ignore_errors=True)
            self._last = None


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


class GeneratePredictor(BasePredictor):
    def setup(self, weights: Optional[Path] = None) -> None:  # noqa: UP045 (Cog reads the annotation)
        _configure_logging()
        from musicgen_remix.service import GenerateService

        self.service = GenerateService(weights)
        self.dirs = _RequestDirs()

    def predict(
        self,
        prompt: Optional[str] = Input(description="A description of the music you want to generate.",  # noqa: UP045
                                      default=G["prompt"]),
        input_audio: Optional[Path] = Input(  # noqa: UP045
            description="An audio file that will influence the generated music. If `continuation` is `True`, "
                        "the generated music will be a continuation of the audio file. Otherwise, the "
                        "generated music will mimic the audio file's melody.", default=G["input_audio"]),
        duration: int = Input(description="Duration of the generated audio in seconds (the continuation "
                                          f"prompt included). Up to {DURATION_MAX_S} s: beyond the model's "
                                          "30 s window, generation continues window by window.",
                              default=G["duration"], ge=1, le=DURATION_MAX_S),
        continuation: bool = Input(description="If `True`, generated music will continue `input_audio`. "
                                               "Otherwise, generated music will mimic `input_audio`'s melody.",
                                   default=G["continuation"]),
        continuation_start: int = Input(description="Start time of the audio file to use for continuation.",
                                        default=G["continuation_start"], ge=0),
        continuation_end: Optional[int] = Input(  # noqa: UP045
            description="End time of the audio file to use for continuation. If -1 or None, will default to "
                        "the end of the audio clip.", default=G["continuation_end"]),
        multi_band_diffusion: bool = Input(description="If `True`, the EnCodec tokens will be decoded with "
                                                       "MultiBand Diffusion (stereo models: left and right "
                                                       "decoded separately).", default=G["multi_band_diffusion"]),
        normalization_strategy: str = Input(description="Strategy for normalizing audio.",
                                            default=G["normalization_strategy"],
                                            choices=["loudness", "clip", "peak", "rms"]),
        top_k: int = Input(description="Reduces sampling to the k most likely tokens.", default=G["top_k"], ge=0),
        top_p: float = Input(description="Reduces sampling to tokens with cumulative probability of p. When set "
                                         "to  `0` (default), top_k sampling is used.", default=G["top_p"],
                             ge=0.0, le=1.0),
        temperature: float = Input(description="Controls the 'conservativeness' of the sampling process. Higher "
                                               "temperature means more diversity.", default=G["temperature"],
                                   ge=0.0),
        classifier_free_guidance: int = Input(description="Increases the influence of inputs on the output. "
                                                          "Higher values produce lower-varience outputs that "
                                                          "adhere more closely to inputs.",
                                              default=G["classifier_free_guidance"], ge=0),
        output_format: str = Input(description="Output format for generated audio.", default=G["output_format"],
                                   choices=["wav", "mp3", "flac"]),
        seed: Optional[int] = Input(description="Seed for random number generator. If None or -1, a random "  # noqa: UP045
                                                "seed will be used.", default=G["seed"]),
        replicate_weights: Optional[str] = Input(  # noqa: UP045
            description="Replicate MusicGen weights to use. Leave blank to use the default weights.",
            default=G["replicate_weights"]),
        model_version: str = Input(description="Model to use when replicate_weights is blank: `default` is the "
                                               "deployment's weights (a fine-tune, or melody).",
                                   default=G["model_version"], choices=list(MODEL_VERSIONS)),
    ) -> Path:
        request = GenerateRequest(
            prompt=prompt, input_audio=None if input_audio is None else _Path(input_audio), duration=duration,
            continuation=continuation, continuation_start=continuation_start, continuation_end=continuation_end,
            multi_band_diffusion=multi_band_diffusion, normalization_strategy=normalization_strategy,
            top_k=top_k, top_p=top_p, temperature=temperature, classifier_free_guidance=classifier_free_guidance,
            output_format=output_format, seed=seed, model_version=model_version,
            replicate_weights=replicate_weights)
        result = self.service.predict(request, self.dirs.new(), Progress(report=log_progress()))
        return Path(result.path)
