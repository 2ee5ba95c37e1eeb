"""Fast decoding for audiocraft's MusicGen language model: the tokens of ``LMModel.generate``, sooner.

:func:`fast_generate` takes ``LMModel.generate``'s arguments and returns the same tokens for the same
model, conditions, sampling parameters and seed: the conditions, the classifier-free-guidance batch
(conditional and null conditions in one batch of 2B), the pattern sequence and every random draw
(``utils.sample_top_k`` / ``sample_top_p`` / ``multinomial`` on probabilities of the same shape) are
audiocraft's own, and the transformer runs the same operations (:mod:`.fastlm_step`). It is faster
because the key/value cache is allocated once per generation instead of concatenated at every step,
cross-attention keys/values are projected once, the codebook pattern's bookkeeping is computed once
per call, and no per-layer module machinery runs per step. On CUDA, decoding steps replay CUDA graphs
(:mod:`.fastlm_cuda`; numerically equal to the eager path up to fp16 rounding, not bitwise).

Models or options it does not cover go to the stock ``lm.generate``, with one INFO line per model
and reason (:func:`supports` names the model-level reasons). ``MUSICGEN_REMIX_DECODER=stock`` forces
the stock decoder (for comparisons); :func:`decoder` picks one.
"""

from __future__ import annotations

import functools
import logging
import os
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from musicgen_remix.errors import contract_error

if TYPE_CHECKING:
    import torch
    from audiocraft.models.lm import LMModel
    from audiocraft.modules.conditioners import ConditioningAttributes

logger = logging.getLogger(__name__)

DECODER_ENV = "MUSICGEN_REMIX_DECODER"
DECODERS = ("fast", "stock")

# Reasons already logged, per model (weak keys: a model that is dropped takes its entry with it).
_logged: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def decoder(lm: LMModel) -> Callable[..., torch.Tensor]:
    """``lm.generate`` or :func:`fast_generate` bound to ``lm``, as ``$MUSICGEN_REMIX_DECODER`` says
    (``fast`` by default). Both take ``LMModel.generate``'s arguments."""
    choice = os.environ.get(DECODER_ENV, "fast").strip().lower() or "fast"
    if choice not in DECODERS:
        raise contract_error(DECODER_ENV, choice, "'fast' (default) or 'stock'")
    if choice == "stock":
        return lm.generate
    return functools.partial(fast_generate, lm)


def supports(lm: Any) -> str | None:
    """None if :func:`fast_generate` covers this model, else why not (one line)."""
    from audiocraft.models.lm import LMModel
    from audiocraft.modules import transformer as tr

    if not isinstance(lm, LMModel) or type(lm).generate is not LMModel.generate:
        return f"{type(lm).__name__} is not audiocraft's LMModel (it has its own generate)"
    if lm.training:
        return "the model is in training mode"
    if lm._fsdp is not None:
        return "the model is wrapped in FSDP"
    fuse = lm.fuser.fuse2cond
    for method in ("sum", "input_interpolate"):
        if fuse.get(method):
            return f"conditions fused by {method!r} ({fuse[method]})"
    t = lm.transformer
    if type(t) is not tr.StreamingTransformer or t.positional_embedding != "sin":
        return f"positional embedding {t.positional_embedding!r} (only 'sin' is implemented; rope/xpos are not)"
    if tr._efficient_attention_backend != "torch":
        return f"attention backend {tr._efficient_attention_backend!r} (only 'torch' SDPA is implemented)"
    for index, layer in enumerate(t.layers):
        reason = _layer_reason(layer, tr)
        if reason:
            return f"layer {index}: {reason}"
    return None


def _layer_reason(layer: Any, tr: Any) -> str | None:
    if type(layer) is not tr.StreamingTransformerLayer:
        return f"custom layer class {type(layer).__name__}"
    if not layer.norm_first:
        return "post-norm layers (norm_first=False)"
    attn = layer.self_attn
    if not (attn.custom and attn.memory_efficient):
        return "attention without memory_efficient (the einsum or nn.MultiheadAttention variants)"
    if not attn.causal or attn.past_context is not None:
        return f"self-attention causal={attn.causal}, past_context={attn.past_context}"
    if attn.rope is not None or attn.qk_layer_norm or attn.kv_repeat != 1 or attn.attention_as_float32:
        return "rope, qk_layer_norm, kv_repeat > 1 or attention_as_float32 in self-attention"
    cross = layer.cross_attention
    if cross is not None and (not (cross.custom and cross.memory_efficient) or cross.qk_layer_norm
                              or cross.attention_as_float32):
        return "cross-attention without memory_efficient, or with qk_layer_norm / attention_as_float32"
    return None


def fast_generate(
    lm: LMModel,
    prompt: torch.Tensor | None = None,
    conditions: Sequence[ConditioningAttributes] = (),
    num_samples: int | None = None,
    max_gen_len: int = 256,
    use_sampling: bool = True,
    temp: float = 1.0,
    top_k: int = 250,
    top_p: float = 0.0,
    cfg_coef: float | None = None,
    two_step_cfg: bool | None = None,
    remove_prompts: bool = False,
    check: bool = False,
    callback: Callable[[int, int], None] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """``LMModel.generate`` with the same arguments and result: tokens ``[B, K, max_gen_len]``."""
    reason = supports(lm)
    if reason is None and (two_step_cfg or (two_step_cfg is None and lm.two_step_cfg) or check):
        reason = "check=True" if check else "two_step_cfg=True"
    if reason is not None:
        _log_fallback(lm, reason)
        return lm.generate(prompt, list(conditions), num_samples=num_samples, max_gen_len=max_gen_len,
                           use_sampling=use_sampling, temp=temp, top_k=top_k, top_p=top_p, cfg_coef=cfg_coef,
                           two_step_cfg=two_step_cfg, remove_prompts=remove_prompts, check=check,
                           callback=callback, **kwargs)
    import torch

    from musicgen_remix.engine.fastlm_decode import Sampler, decode, prepare

    with torch.no_grad():
        plan = prepare(lm, prompt, list(conditions), num_samples, max_gen_len)
    sampler = Sampler(use_sampling=use_sampling, temp=temp, top_k=top_k, top_p=top_p,
                      cfg_coef=lm.cfg_coef if cfg_coef is None else cfg_coef)
    with torch.inference_mode():
        gen = decode(lm, plan, sampler, callback)
    with torch.no_grad():
        out = plan.finish(gen, remove_prompts)
    return out.clone()  # a normal tensor: callers may modify it outside inference mode


def warm_up(lm: LMModel, device: torch.device | str) -> None:
    """Capture the CUDA graphs of the decoding step for this model (call it from ``setup()``).

    A no-op on CPU or for models :func:`supports` does not cover. Graphs for other shapes (longer
    text prompts, longer windows) are captured on first use.
    """
    import torch

    if torch.device(device).type != "cuda" or not torch.cuda.is_available() or supports(lm) is not None:
        return
    from musicgen_remix.engine.fastlm_cuda import warm_up_graphs

    warm_up_graphs(lm)


def _log_fallback(lm: Any, reason: str) -> None:
    seen = _logged.setdefault(lm, set())
    if reason not in seen:
        seen.add(reason)
        logger.info("fast decoder not used, stock LMModel.generate instead: %s", reason)
