"""The generate-with-continuation pipeline: text, melody-conditioned, or continuation of an audio file.

Behaviour matches the MusicGen fine-tuner predictor behind ``fofr/musicgen-mario`` (same inputs, same
meaning), with its defects fixed: parameters are checked up front with errors that name the field,
settings are passed per call, 0 is a valid seed, stereo models can use MultiBand Diffusion, and the
continuation keeps the caller's own audio at the start of the output. The mirror image of
:mod:`musicgen_remix.remix.pipeline`: a checked job in, numbered steps, the shared tail
(:mod:`musicgen_remix.engine.take`) out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from musicgen_remix.audio import Audio, convert, read_audio, trim
from musicgen_remix.audio.tags import Provenance, public_url
from musicgen_remix.engine.seeding import apply_seed
from musicgen_remix.engine.take import deliver, render
from musicgen_remix.engine.tokens import generate_tokens
from musicgen_remix.errors import AudioError, InputError
from musicgen_remix.generate.request import INPUT_AUDIO_MAX_S, INPUT_AUDIO_MIN_S, GenerateJob
from musicgen_remix.progress import Progress

if TYPE_CHECKING:
    import torch

    from musicgen_remix.models.store import Loaded, ModelStore

logger = logging.getLogger(__name__)

SPLICE_FADE_S = 0.02
RECORDED_INPUTS = ("duration", "continuation", "continuation_start", "continuation_end", "multi_band_diffusion",
                   "normalization_strategy", "top_k", "top_p", "temperature", "classifier_free_guidance",
                   "model_version", "replicate_weights")


@dataclass(frozen=True)
class GenerateResult:
    path: Path
    seed: int
    model: str
    sample_rate: int
    channels: int
    seconds: float


def run_generate(job: GenerateJob, loaded: Loaded, store: ModelStore, out_dir: Path,
                 progress: Progress | None = None) -> GenerateResult:
    """Generate one output file into ``out_dir`` (which the caller owns and cleans up)."""
    progress = progress or Progress()
    info = loaded.info
    shared = job.shared
    # 1. What depends on the model and the audio: the codebook, the input file, its part, its role.
    shared.sampling.check(info.card)
    prompt_audio, melody = _conditioning(job, _read_source(job), loaded)
    # 2. Apply the seed (resolved once, when the request was checked).
    apply_seed(shared.seed)
    logger.info("generate: model=%s duration=%ss continuation=%s melody=%s mbd=%s seed=%d", info.name,
                job.duration, prompt_audio is not None, melody is not None, shared.multi_band_diffusion, shared.seed)
    # 3. Generate tokens (windowed beyond the model's window).
    tokens = generate_tokens(loaded.model, description=job.prompt, duration=float(job.duration),
                             sampling=shared.sampling, progress=progress,
                             prompt=None if prompt_audio is None else prompt_audio.wav,
                             melody=None if melody is None else melody.wav)
    # 4. Decode with EnCodec or MultiBand Diffusion; a continuation starts with the caller's own audio.
    audio = render(loaded.model, tokens, mbd=store.mbd() if shared.multi_band_diffusion else None, progress=progress)
    if prompt_audio is not None:
        audio = Audio(splice_prompt(audio.wav, prompt_audio.wav, int(SPLICE_FADE_S * audio.sample_rate)),
                      audio.sample_rate)
    # 5. Normalise and write, with what made it.
    path = deliver(audio, shared, out_dir, "output", _provenance(job, info.name))
    logger.info("generated %.2f s, %d ch", audio.duration, audio.channels)
    return GenerateResult(path=path, seed=shared.seed, model=info.name, sample_rate=audio.sample_rate,
                          channels=audio.channels, seconds=audio.duration)


def _provenance(job: GenerateJob, model: str) -> Provenance:
    """The take's record: the inputs that shaped it (file inputs by name only, a fine-tune's URL without
    credentials)."""
    inputs: dict[str, object] = {name: getattr(job.request, name) for name in RECORDED_INPUTS}
    inputs["input_audio"] = job.input_audio.name if job.input_audio is not None else None
    inputs["replicate_weights"] = None if job.replicate_weights is None else public_url(job.replicate_weights)
    return Provenance("generate", job.prompt, job.shared.seed, model, inputs)


def _read_source(job: GenerateJob) -> Audio | None:
    if job.input_audio is None:
        return None
    audio = read_audio(job.input_audio, field="input_audio", max_seconds=INPUT_AUDIO_MAX_S)
    if audio.duration < INPUT_AUDIO_MIN_S:
        raise AudioError("input_audio", job.input_audio.name, f"at least {INPUT_AUDIO_MIN_S} s of audio to continue "
                                                              f"or follow (this file has {audio.duration:.3f} s)")
    if job.start_s == 0 and job.end_s is None:
        return audio
    part = trim(audio, job.start_s, job.end_s)
    if part.duration < INPUT_AUDIO_MIN_S:
        raise InputError("continuation_end", job.request.continuation_end,
                         f"a part of input_audio at least {INPUT_AUDIO_MIN_S} s long (continuation_start to "
                         f"continuation_end is {part.duration:.3f} s)")
    return part


def _conditioning(job: GenerateJob, source: Audio | None, loaded: Loaded) -> tuple[Audio | None, Audio | None]:
    """(continuation prompt, melody) converted to the model's rate and channels."""
    if source is None:
        return None, None
    info = loaded.info
    audio = convert(source, info.sample_rate, 2 if info.stereo else 1)
    if job.continuation:
        if audio.duration >= job.duration:
            raise InputError("duration", job.duration, f"a duration longer than the continuation prompt "
                                                       f"({audio.duration:.2f} s from continuation_start to "
                                                       f"continuation_end): duration counts the prompt too")
        if audio.duration >= info.max_duration:
            raise InputError("continuation_end", job.request.continuation_end,
                             f"a prompt shorter than the model's {info.max_duration:.0f} s window (this one is "
                             f"{audio.duration:.2f} s; set continuation_start/continuation_end)")
        return audio, None
    if not info.melody:
        raise InputError("input_audio", job.input_audio.name if job.input_audio else None,
                         f"melody conditioning needs a melody model, and {info.name} is text-only: choose a "
                         "melody model_version, or set continuation=true to continue the audio")
    # Only so much melody reaches the model: a single window's chroma covers its first max_duration seconds,
    # and windowed generation reads the melody up to the output's duration. Cut the rest before the chroma
    # conditioner separates it (a 600 s upload for an 8 s output would be separated whole).
    used = max(float(job.duration), info.max_duration)
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
