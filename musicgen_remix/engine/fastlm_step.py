"""MusicGen's transformer as plain tensor functions over a preallocated key/value cache.

Every operation is the one audiocraft's modules run, in the same order and on tensors of the same
shapes (``StreamingTransformer`` -> ``StreamingTransformerLayer`` -> ``StreamingMultiheadAttention``
with ``memory_efficient`` and the torch SDPA backend), so logits are bitwise those of
``LMModel.forward`` in streaming mode. What differs is the bookkeeping around them: keys/values are
written into one cache allocated per generation instead of concatenated at each step, the
cross-attention keys/values are projected once per generation, and no module ``__call__``, einops
pattern or streaming-state dictionary runs per layer.

Two ways to read the cache: ``dynamic`` (the cache sliced to the current length, exact; used on CPU
and for the first step everywhere) and ``static`` (a fixed-length slice with a mask and the write
position as a tensor: fixed shapes for CUDA graphs, equal to ``dynamic`` up to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from audiocraft.models.lm import LMModel

Norm = tuple[list[int], torch.Tensor | None, torch.Tensor | None, float]


@dataclass(frozen=True)
class Layer:
    """The weights of one ``StreamingTransformerLayer`` (pre-norm), as audiocraft's modules hold them."""

    norm1: Norm
    in_wt: torch.Tensor  # [D, 3 * D]: q, k, v stacked (the fused projection audiocraft already has), transposed
    in_b: torch.Tensor | None
    out_wt: torch.Tensor
    out_b: torch.Tensor | None
    scale1: torch.Tensor | None  # LayerScale, or None for Identity
    cross: Cross | None
    norm2: Norm
    ff1_wt: torch.Tensor
    ff1_b: torch.Tensor | None
    ff2_wt: torch.Tensor
    ff2_b: torch.Tensor | None
    activation: Any
    scale2: torch.Tensor | None


@dataclass(frozen=True)
class Cross:
    """The cross-attention weights of one layer: q/k/v as slices of the fused ``in_proj``."""

    norm: Norm
    q_wt: torch.Tensor
    q_b: torch.Tensor | None
    k_w: torch.Tensor
    k_b: torch.Tensor | None
    v_w: torch.Tensor
    v_b: torch.Tensor | None
    out_wt: torch.Tensor
    out_b: torch.Tensor | None
    scale: torch.Tensor | None


@dataclass(frozen=True)
class Pack:
    """All weights one decoding step reads, plus the shapes it needs."""

    layers: list[Layer]
    emb: list[torch.Tensor]  # K tables [card + 1, D]
    out_norm: Norm | None
    heads: list[tuple[torch.Tensor, torch.Tensor | None]]  # K output projections [card, D]
    num_heads: int
    dim: int
    pos_scale: float
    max_period: float

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


def pack_weights(lm: LMModel) -> Pack:
    """References (no copies; transposes are views) to the weights of ``lm``; cheap to build per call."""
    m: Any = lm
    return Pack(
        layers=[_layer(layer) for layer in m.transformer.layers],
        emb=[e.weight for e in m.emb],
        out_norm=_norm(m.out_norm) if m.out_norm is not None else None,
        heads=[(lin.weight, lin.bias) for lin in m.linears],
        num_heads=int(m.transformer.layers[0].self_attn.num_heads),
        dim=int(m.dim),
        pos_scale=float(m.transformer.positional_scale),
        max_period=float(m.transformer.max_period),
    )


def _norm(module: Any) -> Norm:
    return list(module.normalized_shape), module.weight, module.bias, float(module.eps)


def _scale(module: Any) -> torch.Tensor | None:
    return getattr(module, "scale", None)


def _layer(layer: Any) -> Layer:
    attn = layer.self_attn
    cross = None
    if layer.cross_attention is not None:
        ca = layer.cross_attention
        dim = ca.in_proj_weight.shape[0] // 3
        bias = ca.in_proj_bias
        cross = Cross(
            norm=_norm(layer.norm_cross),
            q_wt=ca.in_proj_weight[:dim].t(), q_b=None if bias is None else bias[:dim],
            k_w=ca.in_proj_weight[dim:2 * dim], k_b=None if bias is None else bias[dim:2 * dim],
            v_w=ca.in_proj_weight[2 * dim:], v_b=None if bias is None else bias[2 * dim:],
            out_wt=ca.out_proj.weight.t(), out_b=ca.out_proj.bias, scale=_scale(layer.layer_scale_cross))
    return Layer(
        norm1=_norm(layer.norm1), in_wt=attn.in_proj_weight.t(), in_b=attn.in_proj_bias,
        out_wt=attn.out_proj.weight.t(), out_b=attn.out_proj.bias, scale1=_scale(layer.layer_scale_1), cross=cross,
        norm2=_norm(layer.norm2), ff1_wt=layer.linear1.weight.t(), ff1_b=layer.linear1.bias,
        ff2_wt=layer.linear2.weight.t(), ff2_b=layer.linear2.bias, activation=layer.activation,
        scale2=_scale(layer.layer_scale_2))


class KVCache:
    """Keys and values of every layer, ``[layers, B, heads, 2 (k, v), length, head_dim]``, allocated once.

    Zeroed rather than empty so that masked, never-written slots hold no NaN (a masked NaN value
    still poisons ``softmax(...) @ v``). Per-layer views are made once, not at every step.
    """

    def __init__(self, pack: Pack, batch: int, length: int, *, dtype: torch.dtype, device: torch.device) -> None:
        self.data = torch.zeros(len(pack.layers), batch, pack.num_heads, 2, length, pack.head_dim, dtype=dtype,
                                device=device)
        self.layers = [(kv, kv.select(2, 0), kv.select(2, 1)) for kv in self.data.unbind(0)]


def cross_kv(pack: Pack, src: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's cross-attention keys/values ``[B, heads, Tc, head_dim]``, computed once per generation."""
    B, T, _ = src.shape
    out = []
    for layer in pack.layers:
        assert layer.cross is not None
        c = layer.cross
        k = F.linear(src, c.k_w, c.k_b).view(B, T, pack.num_heads, pack.head_dim).transpose(1, 2)
        v = F.linear(src, c.v_w, c.v_b).view(B, T, pack.num_heads, pack.head_dim).transpose(1, 2)
        out.append((k, v))
    return out


def embed(pack: Pack, tokens: torch.Tensor) -> torch.Tensor:
    """``[B, K, T]`` tokens to ``[B, T, D]``: the sum of the K codebook embeddings, as ``LMModel.forward``."""
    return sum([F.embedding(tokens[:, k], pack.emb[k]) for k in range(len(pack.emb))])  # type: ignore[return-value]


def add_positions(pack: Pack, x: torch.Tensor, start: int | torch.Tensor) -> torch.Tensor:
    """Add the sinusoidal embedding of positions ``start ..`` exactly as ``StreamingTransformer`` does."""
    from audiocraft.modules.transformer import create_sin_embedding

    B, T, C = x.shape
    offsets = start if isinstance(start, torch.Tensor) else torch.full((B,), start, dtype=torch.long,
                                                                          device=x.device)
    positions = torch.arange(T, device=x.device).view(1, -1, 1) + offsets.view(-1, 1, 1)
    return x + pack.pos_scale * create_sin_embedding(positions, C, max_period=pack.max_period, dtype=x.dtype)


def heads(pack: Pack, x: torch.Tensor) -> torch.Tensor:
    """Output norm and the K codebook projections: ``[B, T, D]`` -> logits ``[B, K, T, card]``."""
    if pack.out_norm is not None:
        x = F.layer_norm(x, *pack.out_norm)
    return torch.stack([F.linear(x, w, b) for w, b in pack.heads], dim=1)


def layers(pack: Pack, x: torch.Tensor, cache: KVCache, start: int,
           cross: list[tuple[torch.Tensor, torch.Tensor]] | None,
           static: StaticIndex | None = None) -> torch.Tensor:
    """Run every layer on ``x`` ``[B, T, D]`` (positions ``start .. start + T - 1``), filling ``cache``.

    With ``static``, the cache is read over a fixed length with a mask and written at a position given
    as a tensor (fixed shapes and no host values: CUDA-graph capturable); ``start`` is then ignored.
    Projections are ``mm``/``addmm`` on ``[B * T, D]``: what ``F.linear`` runs for a contiguous 3-d input.
    """
    B, T, D = x.shape
    H, Dh = pack.num_heads, pack.head_dim
    end = start + T
    x = x.reshape(B * T, D)
    for i, layer in enumerate(pack.layers):
        kv, keys, values = cache.layers[i]
        proj = _linear(F.layer_norm(x, *layer.norm1), layer.in_wt, layer.in_b)
        proj = proj.view(B, T, 3, H, Dh).permute(0, 3, 2, 1, 4)  # b h p t d, as audiocraft's rearrange
        if static is None:
            kv.narrow(3, start, T).copy_(proj.narrow(2, 1, 2))
            a = F.scaled_dot_product_attention(proj.select(2, 0), keys.narrow(2, 0, end), values.narrow(2, 0, end),
                                               is_causal=T > 1)
        else:
            kv.index_copy_(3, static.position, proj.narrow(2, 1, 2))
            a = F.scaled_dot_product_attention(proj.select(2, 0), keys.narrow(2, 0, static.length),
                                               values.narrow(2, 0, static.length), attn_mask=static.mask)
        a = _linear(a.transpose(1, 2).reshape(B * T, D), layer.out_wt, layer.out_b)
        x = x + (a if layer.scale1 is None else layer.scale1 * a)
        if layer.cross is not None:
            assert cross is not None
            c = layer.cross
            q = _linear(F.layer_norm(x, *c.norm), c.q_wt, c.q_b).view(B, T, H, Dh).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, *cross[i], attn_mask=None if static is None else static.cross_mask)
            a = _linear(a.transpose(1, 2).reshape(B * T, D), c.out_wt, c.out_b)
            x = x + (a if c.scale is None else c.scale * a)
        h = _linear(layer.activation(_linear(F.layer_norm(x, *layer.norm2), layer.ff1_wt, layer.ff1_b)),
                    layer.ff2_wt, layer.ff2_b)
        x = x + (h if layer.scale2 is None else layer.scale2 * h)
    return x.view(B, T, D)


def _linear(x: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.mm(x, wt) if bias is None else torch.addmm(bias, x, wt)


@dataclass(frozen=True)
class StaticIndex:
    """Where a fixed-shape step writes and what it may read.

    Attributes:
        position: ``[1]`` long, the cache slot of this step's key/value.
        length: cache slots read (a bucket end >= position + 1).
        mask: ``[1, 1, 1, length]`` bool, True for slots ``<= position``.
        cross_mask: ``[1, 1, 1, Tc]`` bool for padded cross-attention keys, or None.
    """

    position: torch.Tensor
    length: int
    mask: torch.Tensor
    cross_mask: torch.Tensor | None
