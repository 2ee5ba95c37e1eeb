"""The generate-with-continuation pipeline: text, melody-conditioned, or continuation of an audio file.

Behaviour matches the MusicGen fine-tuner predictor behind ``fofr/musicgen-mario`` (same inputs, same
meaning), with its defects fixed: parameters are checked up front with errors that name the field,
settings are passed per call, 0 is a valid seed, stereo models can use MultiBand Diffusion, and the
continuation keeps the caller's own audio at the start of the output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from musicgen_remix.audio import Audio, convert, normalize, read_audio, trim, write_audio
from musicgen_remix.audio.tags import Provenance
from musicgen_remix.engine.decode import decode
from musicgen_remix.engine.inputs import SharedInputs, clean_prompt, input_defaults
from musicgen_remix.engine.progress import Progress
from musicgen_remix.engine.seeding import apply_seed, resolve_seed
from musicgen_remix.engine.tokens import generate_tokens
from musicgen_remix.errors import AudioError, InputError

if TYPE_CHECKING:
    import torch

    from musicgen_remix.models.store import Loaded, ModelStore

logger = logging.getLogger(__name__)

DURATION_MAX_S = 300  # windowed continuation beyond the 30 s window, up to 5 minutes
INPUT_AUDIO_MAX_S = 600.0
INPUT_AUDIO_MIN_S = 0.5  # shorter is a broken upload, not something to continue or follow
SPLICE_FADE_S = 0.02
MODEL_VERSIONS = ("default", "melody", "stereo-melody", "melody-large", "stereo-melody-large",
                  "small", "medium", "large")
ModelVersion = Literal["default", "melody", "stereo-melody", "melody-large", "stereo-melody-large",
                       "small", "medium", "large"]


@dataclass(frozen=True)
class GenerateRequest(SharedInputs):
    """Every input of the generate entrypoint, with its default (read by Cog, the CLI and the library)."""

    prompt: str | None = None
    input_audio: Path | None = None
    duration: int = 8
    continuation: bool = False
    continuation_start: int = 0
    continuation_end: int | None = None
    model_version: str = "default"
    replicate_weights: str | None = None


@dataclass(frozen=True)
class GenerateResult:
    path: Path
    seed: int
    model: str
    sample_rate: int
    channels: int
    seconds: float
    extras: dict[str, object] = field(default_factory=dict)


def defaults() -> dict[str, object]:
    """Field name -> default, for the Cog inputs and the CLI flags."""
    return input_defaults(GenerateRequest)


def check_request(req: GenerateRequest) -> str | None:
    """Checks that need no model or audio; returns the cleaned prompt."""
    prompt = clean_prompt(req.prompt)
    if prompt is None and req.input_audio is None:
        raise InputError("prompt", req.prompt, "a text description of the music, or an input_audio to "
                                               "continue or to take the melody from")
    if req.continuation and req.input_audio is None:
        raise InputError("input_audio", None, "an audio file when continuation is true")
    if isinstance(req.duration, bool) or not 1 <= req.duration <= DURATION_MAX_S:
        raise InputError("duration", req.duration, f"seconds from 1 to {DURATION_MAX_S}")
    if req.continuation_start < 0:
        raise InputError("continuation_start", req.continuation_start, "seconds >= 0")
    end = req.continuation_end
    if end is not None and end != -1:
        if end <= 0:
            raise InputError("continuation_end", end, "seconds > 0, or -1/None for the end of the file")
        if end <= req.continuation_start:
            raise InputError("continuation_end", end,
                             f"greater than continuation_start ({req.continuation_start})")
    req.check_shared()
    if req.model_version not in MODEL_VERSIONS:
        raise InputError("model_version", req.model_version, f"one of {', '.join(MODEL_VERSIONS)}")
    return prompt


def run_generate(req: GenerateRequest, loaded: Loaded, store: ModelStore, out_dir: Path,
                 progress: Progress | None = None) -> GenerateResult:
    """Generate one output file into ``out_dir`` (which the caller owns and cleans up)."""
    progress = progress or Progress()
    info = loaded.info
    # 1. Check every input before any work.
    prompt = check_request(req)
    sampling = req.sampling
    sampling.check(info.card)
    source = _read_source(req)
    prompt_audio, melody = _conditioning(req, source, loaded)
    # 2. Resolve and apply the seed.
    seed = resolve_seed(req.seed)
    apply_seed(seed)
    logger.info("generate: model=%s duration=%ss continuation=%s melody=%s mbd=%s seed=%d", info.name,
                req.duration, prompt_audio is not None, melody is not None, req.multi_band_diffusion, seed)
    # 3. Generate tokens (windowed beyond the model's window).
    model = loaded.model
    tokens = generate_tokens(model, description=prompt, duration=float(req.duration), sampling=sampling,
                             progress=progress, prompt=None if prompt_audio is None else prompt_audio.wav,
                             melody=None if melody is None else melody.wav)
    # 4. Decode with EnCodec or MultiBand Diffusion.
    mbd = store.mbd() if req.multi_band_diffusion else None
    wav = decode(model, tokens, mbd=mbd, progress=progress)[0].float().cpu()
    if prompt_audio is not None:
        wav = splice_prompt(wav, prompt_audio.wav, int(SPLICE_FADE_S * info.sample_rate))
    _check_finite(wav)
    # 5. Normalize and write.
    wav = normalize(wav, info.sample_rate, req.normalization_strategy)  # type: ignore[arg-type]
    provenance = Provenance("generate", prompt, seed, info.name, _recorded_inputs(req))
    path = write_audio(out_dir / f"output.{req.output_format}", wav, info.sample_rate,
                       fmt=req.output_format, tags=provenance.tags())  # type: ignore[arg-type]
    seconds = wav.shape[-1] / info.sample_rate
    logger.info("wrote %s (%.2f s, %d ch)", path.name, seconds, wav.shape[0])
    return GenerateResult(path=path, seed=seed, model=info.name, sample_rate=info.sample_rate,
                          channels=int(wav.shape[0]), seconds=seconds)


def _recorded_inputs(req: GenerateRequest) -> dict[str, object]:
    """The inputs that shaped the take, for its provenance tags (file inputs by name only)."""
    inputs = {f: getattr(req, f) for f in ("duration", "continuation", "continuation_start", "continuation_end",
                                           "multi_band_diffusion", "normalization_strategy", "top_k", "top_p",
                                           "temperature", "classifier_free_guidance", "model_version")}
    inputs["input_audio"] = req.input_audio.name if req.input_audio is not None else None
    return inputs


def _read_source(req: GenerateRequest) -> Audio | None:
    if req.input_audio is None:
        return None
    audio = read_audio(req.input_audio, field="input_audio", max_seconds=INPUT_AUDIO_MAX_S)
    if audio.duration < INPUT_AUDIO_MIN_S:
        raise AudioError("input_audio", req.input_audio.name, f"at least {INPUT_AUDIO_MIN_S} s of audio to continue "
                                                              f"or follow (this file has {audio.duration:.3f} s)")
    end = None if req.continuation_end in (None, -1) else float(req.continuation_end)  # type: ignore[arg-type]
    if req.continuation_start == 0 and end is None:
        return audio
    part = trim(audio, float(req.continuation_start), end)
    if part.duration < INPUT_AUDIO_MIN_S:
        raise InputError("continuation_end", req.continuation_end,
                         f"a part of input_audio at least {INPUT_AUDIO_MIN_S} s long (continuation_start to "
                         f"continuation_end is {part.duration:.3f} s)")
    return part


def _conditioning(req: GenerateRequest, source: Audio | None, loaded: Loaded) -> tuple[Audio | None, Audio | None]:
    """(continuation prompt, melody) converted to the model's rate and channels."""
    if source is None:
        return None, None
    info = loaded.info
    audio = convert(source, info.sample_rate, 2 if info.stereo else 1)
    if req.continuation:
        if audio.duration >= req.duration:
            raise InputError("duration", req.duration, f"longer than the continuation prompt "
                                                       f"({audio.duration:.2f} s from continuation_start to "
                                                       f"continuation_end): duration counts the prompt too")
        if audio.duration >= info.max_duration:
            raise InputError("continuation_end", req.continuation_end,
                             f"a prompt shorter than the model's {info.max_duration:.0f} s window (this one is "
                             f"{audio.duration:.2f} s; set continuation_start/continuation_end)")
        return audio, None
    if not info.melody:
        raise InputError("input_audio", req.input_audio.name if req.input_audio else None,
                         f"melody conditioning needs a melody model, and {info.name} is text-only: choose a "
                         "melody model_version, or set continuation=true to continue the audio")
    # Only so much melody reaches the model: a single window's chroma covers its first max_duration seconds,
    # and windowed generation reads the melody up to the output's duration. Cut the rest before the chroma
    # conditioner separates it (a 600 s upload for an 8 s output would be separated whole).
    used = max(float(req.duration), info.max_duration)
    if audio.duration > used:
        audio = Audio(audio.wav[:, : round(used * audio.sample_rate)], audio.sample_rate)
    return None, audio


def splice_prompt(generated: torch.Tensor, prompt: torch.Tensor, fade: int) -> torch.Tensor:
    """The caller's prompt audio verbatim, then the generated continuation, joined by a short crossfade.

    The generated tokens re-encode the prompt; decoding them would return a lossy copy of it.
    """
    import torch

    n = min(prompt.shape[-1], generated.shape[-1])
    out = generated.clone()
    fade = min(fade, n)
    head = n - fade
    out[..., :head] = prompt[..., :head]
    if fade > 0:
        ramp = torch.linspace(0.0, 1.0, fade)
        out[..., head:n] = prompt[..., head:n] * (1 - ramp) + generated[..., head:n] * ramp
    return out


def _check_finite(wav: torch.Tensor) -> None:
    import torch

    if not torch.isfinite(wav).all():
        from musicgen_remix.errors import MusicgenRemixError

        raise MusicgenRemixError("the model produced non-finite audio (NaN/Inf); this is a weights or "
                                 "numerics problem, not an input error")
