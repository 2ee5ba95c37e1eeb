"""Token generation with MusicGen's language model: one window, or windowed continuation beyond it.

The generation settings travel with each call (never stored on the shared model object), so requests
cannot see each other's parameters. Long-form generation follows audiocraft's own scheme: each new
window is prompted with the last ``window - stride`` seconds of tokens, and a melody (chroma)
condition advances with the window, wrapping around when shorter than the output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from musicgen_remix.engine.fastlm import decoder
from musicgen_remix.engine.sampling import Sampling
from musicgen_remix.progress import Progress

if TYPE_CHECKING:
    import torch
    from audiocraft.models import MusicGen
    from audiocraft.modules.conditioners import ConditioningAttributes

logger = logging.getLogger(__name__)

EXTEND_STRIDE_S = 18.0


@dataclass(frozen=True)
class Window:
    """One call of the LM: frames already given as prompt, frames it ends at, frame offset in the output."""

    prompt_frames: int
    end_frames: int
    offset_frames: int


def plan_windows(total_frames: int, prompt_frames: int, window_frames: int, stride_frames: int) -> list[Window]:
    """The LM calls needed to reach ``total_frames``, as audiocraft's ``_generate_tokens`` makes them."""
    if total_frames <= window_frames:
        return [Window(prompt_frames, total_frames, 0)]
    windows = []
    offset, prompt = 0, prompt_frames
    while offset + prompt < total_frames:
        end = min(total_frames - offset, window_frames)
        windows.append(Window(prompt, end, offset))
        prompt = end - stride_frames
        offset += stride_frames
    return windows


def generate_tokens(
    model: MusicGen,
    *,
    description: str | None,
    duration: float,
    sampling: Sampling,
    progress: Progress,
    prompt: torch.Tensor | None = None,
    melody: torch.Tensor | None = None,
    extend_stride: float = EXTEND_STRIDE_S,
) -> torch.Tensor:
    """Generate the tokens of ``duration`` seconds of audio.

    Args:
        model: a loaded audiocraft MusicGen (LM + compression model).
        description: the text prompt, or None for none.
        duration: seconds of output, the prompt included.
        sampling: sampling parameters for this call.
        progress: step reporting and cancellation.
        prompt: audio to continue, ``[C, T]`` at the model's sample rate and channel count.
        melody: audio whose chroma conditions a melody model, ``[C, T]`` at the model's sample rate.
        extend_stride: seconds each window advances by beyond the model's window.

    Returns:
        tokens ``[1, K, frames]``, the prompt's tokens included.
    """
    import torch

    with torch.no_grad():
        attributes, prompt_tokens = model._prepare_tokens_and_attributes(
            [description], None if prompt is None else prompt[None], None if melody is None else [melody])
    base = attributes[0]
    ref = base.wav.get("self_wav") if melody is not None else None

    def attributes_at(offset_s: float, windowed: bool) -> ConditioningAttributes:
        if ref is not None and windowed:
            base.wav["self_wav"] = _melody_window(ref, offset_s, model)
        return base

    return generate_windows(model, attributes_at, duration=duration, sampling=sampling, progress=progress,
                            prompt_tokens=prompt_tokens, extend_stride=extend_stride)


def generate_windows(
    model: MusicGen,
    attributes_at: Callable[[float, bool], ConditioningAttributes],
    *,
    duration: float,
    sampling: Sampling,
    progress: Progress,
    prompt_tokens: torch.Tensor | None = None,
    extend_stride: float = EXTEND_STRIDE_S,
) -> torch.Tensor:
    """The windowed generation loop, with the conditions of each window supplied by the caller.

    Args:
        attributes_at: ``(offset_s, windowed) -> attributes`` for the window starting at ``offset_s``
            seconds into the output; ``windowed`` is False when one window covers the whole output
            (audiocraft leaves a melody untouched then). Melody and chord conditions advance with it.
        prompt_tokens: tokens ``[1, K, T]`` to continue, or None.

    Returns:
        tokens ``[1, K, frames]``, the prompt's tokens included.
    """
    import torch

    frame_rate = model.frame_rate
    total = int(duration * frame_rate)
    window = int(model.max_duration * frame_rate)
    stride = int(extend_stride * frame_rate)
    prompt_frames = 0 if prompt_tokens is None else int(prompt_tokens.shape[-1])
    windows = plan_windows(total, prompt_frames, window, stride)
    steps = [_lm_steps(model, w) for w in windows]
    done_before = 0
    all_steps = sum(steps)
    if len(windows) > 1:
        logger.info("generating %.1f s in %d windows of %.0f s (each advancing %.0f s), %d steps", duration,
                    len(windows), model.max_duration, extend_stride, all_steps)
    pieces: list[torch.Tensor] = [] if prompt_tokens is None else [prompt_tokens]
    for index, (win, n_steps) in enumerate(zip(windows, steps, strict=True)):
        attributes = attributes_at(win.offset_frames / frame_rate, len(windows) > 1)

        def callback(done: int, _total: int, _base: int = done_before) -> None:
            progress.step("generate", _base + done, all_steps)

        logger.debug("window %d/%d: prompt %d frames, to %d", index + 1, len(windows), win.prompt_frames,
                     win.end_frames)
        with model.autocast:
            tokens = decoder(model.lm)(prompt_tokens, [attributes], callback=callback, max_gen_len=win.end_frames,
                                       **sampling.lm_kwargs())
        pieces.append(tokens if prompt_tokens is None else tokens[..., prompt_tokens.shape[-1]:])
        prompt_tokens = tokens[..., stride:]
        done_before += n_steps
    return torch.cat(pieces, dim=-1)


def _lm_steps(model: MusicGen, win: Window) -> int:
    pattern = model.lm.pattern_provider.get_pattern(win.end_frames)
    start = pattern.get_first_step_with_timesteps(win.prompt_frames)
    return len(pattern.layout) - int(start or 0)


def _melody_window(ref: Any, time_offset: float, model: MusicGen) -> Any:
    """The melody condition for a window starting at ``time_offset``: the reference, cycled."""
    import torch
    from audiocraft.modules.conditioners import WavCondition

    wav, length = ref.wav, int(ref.length.item())
    start = int(time_offset * model.sample_rate)
    target = int(model.max_duration * model.sample_rate)
    positions = torch.arange(start, start + target, device=wav.device) % length
    return WavCondition(wav[..., positions], torch.full_like(ref.length, target), [model.sample_rate],
                        [None], [0.0])
