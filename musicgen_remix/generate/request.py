"""Every input of the generate entrypoint, with its default (read by Cog, the CLI and the library), and the
one check that turns a request into a :class:`GenerateJob` before any model is looked for or audio decoded
(an input file's length is read from its header)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

from musicgen_remix.audio.io import check_audio_file, check_declared_length
from musicgen_remix.engine.inputs import Shared, SharedInputs, check_text, clean_prompt, input_defaults
from musicgen_remix.errors import InputError

DURATION_MAX_S = 300  # windowed continuation beyond the 30 s window, up to 5 minutes
REPLICATE_WEIGHTS_MAX_CHARS = 2000
ModelVersion = Literal["default", "melody", "stereo-melody", "melody-large", "stereo-melody-large",
                       "small", "medium", "large"]
MODEL_VERSIONS: tuple[str, ...] = get_args(ModelVersion)
TEXT_ONLY_VERSIONS = ("small", "medium", "large")  # no chroma conditioner: no melody conditioning
INPUT_AUDIO_MAX_S = 600.0
INPUT_AUDIO_MIN_S = 0.5  # shorter is a broken upload, not something to continue or follow


@dataclass(frozen=True)
class GenerateRequest(SharedInputs):
    """Every input of the generate entrypoint as a caller sent it, with its default."""

    prompt: str | None = None
    input_audio: Path | None = None
    duration: int = 8
    continuation: bool = False
    continuation_start: int = 0
    continuation_end: int | None = None
    model_version: str = "default"
    replicate_weights: str | None = None


@dataclass(frozen=True)
class GenerateJob:
    """A generate request checked once: typed, in range, what the pipeline takes."""

    prompt: str | None  # whitespace collapsed; None when blank
    input_audio: Path | None
    duration: int
    continuation: bool
    start_s: float  # the part of input_audio used
    end_s: float | None  # None: to the end of the file
    model_version: ModelVersion
    replicate_weights: str | None  # None when blank
    shared: Shared
    request: GenerateRequest  # what the caller sent, for the provenance record


def defaults() -> dict[str, object]:
    """Field name -> default, for the Cog inputs and the CLI flags."""
    return input_defaults(GenerateRequest)


def check_request(req: GenerateRequest) -> GenerateJob:
    """Every check that needs no model or audio, once.

    Raises:
        InputError: naming the first input that cannot work, its value and what is allowed.
    """
    prompt = clean_prompt(req.prompt)
    if prompt is None and req.input_audio is None:
        raise InputError("prompt", req.prompt, "a text description of the music, or an input_audio to "
                                               "continue or to take the melody from")
    if req.continuation and req.input_audio is None:
        raise InputError("input_audio", None, "an audio file when continuation is true")
    if isinstance(req.duration, bool) or not 1 <= req.duration <= DURATION_MAX_S:
        raise InputError("duration", req.duration, f"seconds from 1 to {DURATION_MAX_S}")
    if isinstance(req.continuation_start, bool) or not req.continuation_start >= 0:
        raise InputError("continuation_start", req.continuation_start, "seconds >= 0")
    end = req.continuation_end
    if end is not None and end != -1:
        if not end > 0:
            raise InputError("continuation_end", end, "seconds > 0, or -1/None for the end of the file")
        if end <= req.continuation_start:
            raise InputError("continuation_end", end,
                             f"greater than continuation_start ({req.continuation_start})")
    shared = req.check_shared()
    if req.model_version not in MODEL_VERSIONS:
        raise InputError("model_version", req.model_version, f"one of {', '.join(MODEL_VERSIONS)}")
    weights = req.replicate_weights
    if weights is not None:
        weights = check_text("replicate_weights", weights, REPLICATE_WEIGHTS_MAX_CHARS).strip() or None
    end_s = None if end is None or end == -1 else float(end)
    if req.input_audio is not None:
        _check_input_audio(req, Path(req.input_audio), end_s, weights is not None)
    return GenerateJob(prompt=prompt, input_audio=req.input_audio, duration=int(req.duration),
                       continuation=bool(req.continuation), start_s=float(req.continuation_start), end_s=end_s,
                       model_version=cast(ModelVersion, req.model_version), replicate_weights=weights,
                       shared=shared, request=req)


def _check_input_audio(req: GenerateRequest, path: Path, end: float | None, finetune: bool) -> None:
    """The input file against the request: its role for the model asked for, then what its header's length
    rules out (too short or long, a part outside it, a continuation prompt as long as the output)."""
    check_audio_file(path, "input_audio")
    if not req.continuation and not finetune and req.model_version in TEXT_ONLY_VERSIONS:
        raise InputError("input_audio", path.name, f"melody conditioning needs a melody model, and model_version "
                                                   f"{req.model_version} is text-only: choose a melody "
                                                   "model_version, or set continuation=true to continue the audio")
    seconds = check_declared_length(path, "input_audio", min_s=INPUT_AUDIO_MIN_S, max_s=INPUT_AUDIO_MAX_S,
                                    too_short=f"at least {INPUT_AUDIO_MIN_S} s of audio to continue or follow")
    if seconds is not None:
        _check_part(req, seconds, end)


def _check_part(req: GenerateRequest, seconds: float, end: float | None) -> None:
    """The part of a ``seconds`` long input used (``end`` None: to its end), and as a prompt, its length."""
    start = float(req.continuation_start)
    if start >= seconds:
        raise InputError("continuation_start", req.continuation_start,
                         f"seconds before the end of input_audio ({seconds:.3f} s)")
    if end is not None and end > seconds:
        raise InputError("continuation_end", req.continuation_end, f"seconds up to the end of input_audio "
                                                                   f"({seconds:.3f} s), or -1/None for its end")
    part = (seconds if end is None else end) - start
    if part < INPUT_AUDIO_MIN_S:
        raise InputError("continuation_end", req.continuation_end,
                         f"a part of input_audio at least {INPUT_AUDIO_MIN_S} s long (continuation_start to "
                         f"continuation_end is {part:.3f} s)")
    if req.continuation and part >= req.duration:
        raise InputError("duration", req.duration, f"a duration longer than the continuation prompt ({part:.2f} s "
                                                   "from continuation_start to continuation_end): the output "
                                                   "includes the prompt")
