"""The decoding loop of :func:`musicgen_remix.engine.fastlm.fast_generate`.

:func:`prepare` and :meth:`Plan.finish` are ``LMModel.generate``'s set-up and wrap-up (conditions with
their null twins for classifier-free guidance, the pattern sequence, the reverted codes), run once per
call; :func:`decode` is its streaming loop over :mod:`.fastlm_step`, with the same sampling calls.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from musicgen_remix.engine import fastlm_cuda
from musicgen_remix.engine import fastlm_step as step
from musicgen_remix.errors import contract_error

if TYPE_CHECKING:
    from audiocraft.models.lm import LMModel
    from audiocraft.modules.codebooks_patterns import Pattern
    from audiocraft.modules.conditioners import ConditioningAttributes

UNKNOWN_TOKEN = -1  # as LMModel.generate: a code not generated yet


@dataclass
class Plan:
    """One call's inputs, as ``LMModel.generate`` prepares them.

    Attributes:
        batch: B, samples generated (the transformer runs 2B rows with guidance).
        conditions: condition tensors of the 2B rows (conditional then null), or {} without conditions.
        sequence: the pattern sequence ``[B, K, S]``: prompt codes, special tokens, and -1 where to generate.
        mask: ``[K, S]`` valid positions of the pattern.
        start: first sequence step to generate (``get_first_step_with_timesteps(prompt length)``).
    """

    batch: int
    conditions: dict[str, Any]
    sequence: torch.Tensor
    mask: torch.Tensor
    start: int
    pattern: Pattern
    prompt_len: int
    max_gen_len: int
    card: int

    def finish(self, sequence: torch.Tensor, remove_prompts: bool) -> torch.Tensor:
        """The generated codes ``[B, K, max_gen_len]`` (without the prompt if ``remove_prompts``)."""
        B = self.batch
        if (sequence == UNKNOWN_TOKEN).any():
            raise RuntimeError("decoding left positions of the pattern sequence unfilled")
        valid = torch.where(self.mask[None].expand(B, -1, -1), sequence, self.card)
        if not bool((sequence == valid).all()):
            raise RuntimeError("the decoded sequence does not match its codebook pattern")
        codes, _, _ = self.pattern.revert_pattern_sequence(sequence, special_token=UNKNOWN_TOKEN)
        codes = codes[..., (self.prompt_len if remove_prompts else 0):self.max_gen_len]
        if not bool(((codes >= 0) & (codes <= self.card)).all()):
            raise RuntimeError("decoded codes out of range")
        return codes


def prepare(lm: LMModel, prompt: torch.Tensor | None, conditions: list[ConditioningAttributes],
            num_samples: int | None, max_gen_len: int) -> Plan:
    """``LMModel.generate`` up to its streaming loop (single-step classifier-free guidance)."""
    from audiocraft.modules.conditioners import ClassifierFreeGuidanceDropout

    device = next(iter(lm.parameters())).device
    if num_samples is None:
        num_samples = prompt.shape[0] if prompt is not None else len(conditions) if conditions else 1
    cfg_conditions: dict[str, Any] = {}
    if conditions:
        null_conditions = ClassifierFreeGuidanceDropout(p=1.0)(conditions)
        tokenized = lm.condition_provider.tokenize(conditions + null_conditions)
        cfg_conditions = lm.condition_provider(tokenized)
    if prompt is None:
        prompt = torch.zeros((num_samples, lm.num_codebooks, 0), dtype=torch.long, device=device)
    B, K, T = prompt.shape
    if max_gen_len <= T:
        raise contract_error("max_gen_len", max_gen_len, f"more than the prompt's {T} frames")
    pattern = lm.pattern_provider.get_pattern(max_gen_len)
    codes = torch.full((B, K, max_gen_len), UNKNOWN_TOKEN, dtype=torch.long, device=device)
    codes[..., :T] = prompt
    sequence, _, mask = pattern.build_pattern_sequence(codes, lm.special_token_id)
    start = pattern.get_first_step_with_timesteps(T)
    if start is None:
        raise contract_error("max_gen_len", max_gen_len, f"a length whose pattern reaches the prompt's {T} frames")
    return Plan(batch=B, conditions=cfg_conditions, sequence=sequence, mask=mask, start=start, pattern=pattern,
                prompt_len=T, max_gen_len=max_gen_len, card=lm.card)


@dataclass(frozen=True)
class Sampler:
    """``LMModel._sample_next_token`` after the forward: guidance, then greedy / top-k / top-p draws."""

    use_sampling: bool
    temp: float
    top_k: int
    top_p: float
    cfg_coef: float

    def __call__(self, logits: torch.Tensor, batch: int, guided: bool) -> torch.Tensor:
        """Logits ``[2B or B, K, T, card]`` to the next tokens ``[B, K, 1]``."""
        from audiocraft.utils import utils

        if guided:
            cond_logits, uncond_logits = logits.split(batch, dim=0)
            logits = uncond_logits + (cond_logits - uncond_logits) * self.cfg_coef
        logits = logits.permute(0, 1, 3, 2)[..., -1]  # [B, K, card]
        if self.use_sampling and self.temp > 0.0:
            probs = torch.softmax(logits / self.temp, dim=-1)
            if self.top_p > 0.0:
                return utils.sample_top_p(probs, p=self.top_p)
            if self.top_k > 0:
                return utils.sample_top_k(probs, k=self.top_k)
            return utils.multinomial(probs, num_samples=1)
        return torch.argmax(logits, dim=-1, keepdim=True)


def decode(lm: LMModel, plan: Plan, sampler: Sampler, callback: Callable[[int, int], None] | None) -> torch.Tensor:
    """Fill ``plan.sequence`` step by step; returns it. Call under ``torch.inference_mode()``."""
    pack = step.pack_weights(lm)
    seq = plan.sequence
    to_fill = seq == UNKNOWN_TOKEN  # what generate's torch.where(... == unknown_token ...) overwrites
    guided = bool(plan.conditions)
    B, start, S = plan.batch, plan.start, seq.shape[-1]
    prepend = bool(lm.fuser.fuse2cond.get("prepend"))

    def inputs(lo: int, hi: int) -> torch.Tensor:
        tokens = seq[..., lo:hi]
        return torch.cat([tokens, tokens], dim=0) if guided else tokens

    def write(s: int, logits: torch.Tensor) -> None:
        token = sampler(logits, B, guided)[..., 0]
        seq[..., s] = torch.where(to_fill[..., s], token, seq[..., s])
        if callback is not None:
            callback(1 + s - start, S - start)

    # First step: the prompt's sequence steps, after the prepended conditions (if any), in one pass.
    x, cross_src = lm.fuser(step.embed(pack, inputs(0, start)), plan.conditions)
    first = x.shape[1]
    length = first + S - start - 1  # every token the transformer will see (the last sample is never fed)
    cross = step.cross_kv(pack, cross_src) if cross_src is not None else None
    with _graphs(lm, pack, x, length, cross) as graphs:
        cache = graphs.cache if graphs is not None else step.KVCache(
            pack, x.shape[0], length, dtype=_compute_dtype(x, pack), device=x.device)
        x = step.layers(pack, step.add_positions(pack, x, 0), cache, 0, cross)
        logits = step.heads(pack, x)
        write(start, logits[:, :, -start:] if prepend else logits)
        position = first
        for s in range(start + 1, S):
            if graphs is not None:
                logits = graphs.step(inputs(s - 1, s), position)
            else:
                x = step.add_positions(pack, step.embed(pack, inputs(s - 1, s)), position)
                logits = step.heads(pack, step.layers(pack, x, cache, position, cross))
            write(s, logits)
            position += 1
    return seq


def _compute_dtype(x: torch.Tensor, pack: step.Pack) -> torch.dtype:
    """The dtype attention keys/values come out in: autocast's when it is on, else the weights'."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return pack.layers[0].in_wt.dtype


def _graphs(lm: LMModel, pack: step.Pack, x: torch.Tensor, length: int,
            cross: list[tuple[torch.Tensor, torch.Tensor]] | None) -> AbstractContextManager[Any]:
    """The CUDA-graph runner for this call's shapes (the first step fills its cache), or None."""
    if x.device.type != "cuda":
        return nullcontext()
    if not fastlm_cuda.enabled():
        return nullcontext()
    return fastlm_cuda.acquire(lm, pack, batch=x.shape[0], length=length, cross=cross,
                               dtype=_compute_dtype(x, pack))
