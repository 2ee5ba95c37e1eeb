"""Cog entrypoints: thin typed adapters over :mod:`musicgen_remix` (one call into the package each).

``predict.py:GeneratePredictor`` — generate with continuation (the fofr/musicgen-mario schema).
``predict.py:RemixPredictor`` — remix a song (the sakemin/musicgen-remixer schema), see cog.yaml.
Input defaults come from the package's request dataclasses, defined once.
"""

# No `from __future__ import annotations` here: Cog 0.16 reads the predict() annotations as
# objects, and string annotations make the server reject every input type at startup.
import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path as _Path
from typing import Optional

from cog import BaseModel, BasePredictor, Input, Path

try:
    from cog.server.exceptions import CancelationException  # cog 0.16
except ImportError:  # cog >= 0.17
    from cog import CancelationException

from musicgen_remix.engine.progress import Progress, log_progress
from musicgen_remix.generate import DURATION_MAX_S, MODEL_VERSIONS, GenerateRequest
from musicgen_remix.generate import defaults as generate_defaults
from musicgen_remix.remix.request import CHORD_VERSIONS, RemixRequest, remix_defaults
from musicgen_remix.serving import RequestDirs, cancel_signal

G = generate_defaults()
R = remix_defaults()


@contextlib.contextmanager
def _request(dirs: RequestDirs, canceled: threading.Event) -> Iterator[tuple[_Path, Progress]]:
    """One request's directory and progress reporter.

    A failed or canceled request's directory is removed at once (a successful one stays until the next
    request, for Cog to upload its output), and a failure after a cancel signal is reported to Cog as
    the cancellation it is.
    """
    canceled.clear()
    out_dir = dirs.new()
    try:
        yield out_dir, Progress(report=log_progress(), cancel=canceled)
    except BaseException as exc:
        dirs.cleanup()
        if canceled.is_set() and isinstance(exc, Exception) and not isinstance(exc, CancelationException):
            raise CancelationException() from exc
        raise


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


class GeneratePredictor(BasePredictor):
    def setup(self, weights: Optional[Path] = None) -> None:  # noqa: UP045 (Cog reads the annotation)
        _configure_logging()
        from musicgen_remix.service import GenerateService

        self.service = GenerateService(weights)
        self.dirs = RequestDirs()
        self.canceled = cancel_signal()

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
        with _request(self.dirs, self.canceled) as (out_dir, progress):
            result = self.service.predict(request, out_dir, progress)
        return Path(result.path)


class RemixInputs:
    """The remix entrypoint's inputs, declared once and shared by both remix predictors."""

    prompt = Input(description="A description of the music you want to generate.", default=R["prompt"])
    music_input = Input(description="An audio file input for the remix.", default=R["music_input"])
    multi_band_diffusion = Input(description="If `True`, the EnCodec tokens will be decoded with MultiBand "
                                             "Diffusion.", default=R["multi_band_diffusion"])
    normalization_strategy = Input(description="Strategy for normalizing audio.",
                                   default=R["normalization_strategy"], choices=["loudness", "clip", "peak", "rms"])
    beat_sync_threshold = Input(description="When beat syncing, if the gap between generated downbeat timing and "
                                            "input audio downbeat timing is larger than `beat_sync_threshold`, "
                                            "consider the beats are not corresponding. If `None` or `-1`, "
                                            "`1.1/(bpm/60)` will be used as the value.",
                                default=R["beat_sync_threshold"])
    chroma_coefficient = Input(description="Coefficient value multiplied to multi-hot chord chroma.",
                               default=R["chroma_coefficient"], ge=0.5, le=2.0)
    top_k = Input(description="Reduces sampling to the k most likely tokens.", default=R["top_k"], ge=0)
    top_p = Input(description="Reduces sampling to tokens with cumulative probability of p. When set to  `0` "
                              "(default), top_k sampling is used.", default=R["top_p"], ge=0.0, le=1.0)
    temperature = Input(description="Controls the 'conservativeness' of the sampling process. Higher temperature "
                                    "means more diversity.", default=R["temperature"], ge=0.0)
    classifier_free_guidance = Input(description="Increases the influence of inputs on the output. Higher values "
                                                 "produce lower-varience outputs that adhere more closely to inputs.",
                                     default=R["classifier_free_guidance"], ge=0)
    output_format = Input(description="Output format for generated audio.", default=R["output_format"],
                          choices=["wav", "mp3", "flac"])
    seed = Input(description="Seed for random number generator. If `None` or `-1`, a random seed will be used.",
                 default=R["seed"])
    model_version = Input(description="Chord model: mono or stereo, medium (1.5B) or large (3.3B).",
                          default=R["model_version"], choices=list(CHORD_VERSIONS))
    large_chord_voca = Input(description="If `True`, chords are recognised from a large vocabulary (sevenths, "
                                         "diminished, ...); if `False`, only the 24 major and minor triads.",
                             default=R["large_chord_voca"])
    chords = Input(description="Chord progression replacing the detected chords, one chord per bar at the "
                               "song's tempo and meter, cycled: e.g. `C G Am F` or `C:maj G:7 A:min F:maj7`.",
                   default=R["chords"])


class RemixOutput(BaseModel):
    mix: Path
    instrumental: Path
    vocals: Path
    analysis: Path
    plot: Path


class RemixPredictor(BasePredictor):
    """Remix a song: the sakemin/musicgen-remixer schema, one file URI out (the mix)."""

    extras = False

    def setup(self) -> None:
        _configure_logging()
        from musicgen_remix.service import RemixService

        self.service = RemixService()
        self.dirs = RequestDirs()
        self.canceled = cancel_signal()

    def remix(self, **inputs: object):  # noqa: ANN201 (RemixResult)
        music_input = inputs.pop("music_input")
        request = RemixRequest(music_input=None if music_input is None else _Path(str(music_input)),
                               **inputs)  # type: ignore[arg-type]
        with _request(self.dirs, self.canceled) as (out_dir, progress):
            return self.service.predict(request, out_dir, progress, extras=self.extras)

    def predict(
        self,
        prompt: Optional[str] = RemixInputs.prompt,  # noqa: UP045
        music_input: Optional[Path] = RemixInputs.music_input,  # noqa: UP045
        multi_band_diffusion: bool = RemixInputs.multi_band_diffusion,
        normalization_strategy: str = RemixInputs.normalization_strategy,
        beat_sync_threshold: Optional[float] = RemixInputs.beat_sync_threshold,  # noqa: UP045
        chroma_coefficient: float = RemixInputs.chroma_coefficient,
        top_k: int = RemixInputs.top_k,
        top_p: float = RemixInputs.top_p,
        temperature: float = RemixInputs.temperature,
        classifier_free_guidance: int = RemixInputs.classifier_free_guidance,
        output_format: str = RemixInputs.output_format,
        seed: Optional[int] = RemixInputs.seed,  # noqa: UP045
        model_version: str = RemixInputs.model_version,
        large_chord_voca: bool = RemixInputs.large_chord_voca,
        chords: Optional[str] = RemixInputs.chords,  # noqa: UP045
    ) -> Path:
        result = self.remix(**_arguments(locals()))
        return Path(result.mix)


class RemixDetailedPredictor(RemixPredictor):
    """The same remix, returning every product: mix, beat-synced instrumental, vocal stem, analysis, plot."""

    extras = True

    def predict(  # type: ignore[override]
        self,
        prompt: Optional[str] = RemixInputs.prompt,  # noqa: UP045
        music_input: Optional[Path] = RemixInputs.music_input,  # noqa: UP045
        multi_band_diffusion: bool = RemixInputs.multi_band_diffusion,
        normalization_strategy: str = RemixInputs.normalization_strategy,
        beat_sync_threshold: Optional[float] = RemixInputs.beat_sync_threshold,  # noqa: UP045
        chroma_coefficient: float = RemixInputs.chroma_coefficient,
        top_k: int = RemixInputs.top_k,
        top_p: float = RemixInputs.top_p,
        temperature: float = RemixInputs.temperature,
        classifier_free_guidance: int = RemixInputs.classifier_free_guidance,
        output_format: str = RemixInputs.output_format,
        seed: Optional[int] = RemixInputs.seed,  # noqa: UP045
        model_version: str = RemixInputs.model_version,
        large_chord_voca: bool = RemixInputs.large_chord_voca,
        chords: Optional[str] = RemixInputs.chords,  # noqa: UP045
    ) -> RemixOutput:
        result = self.remix(**_arguments(locals()))
        return RemixOutput(mix=Path(result.mix), instrumental=Path(result.instrumental), vocals=Path(result.vocals),
                           analysis=Path(result.analysis_json), plot=Path(result.plot))


def _arguments(scope: dict) -> dict:
    return {k: v for k, v in scope.items() if k not in ("self", "__class__")}
