"""CUDA graphs of the fast decoder's step (one token per row through every layer and the heads).

A :class:`GraphRunner` owns fixed-shape buffers for one model, batch, cache length and
cross-attention length: the input tokens and position, the key/value cache (allocated once and reused
by every generation that fits), padded cross-attention keys/values and the output logits. The step
reads the cache over a length bucket of :data:`BUCKET` slots with a mask (:class:`fastlm_step.StaticIndex`),
so one graph per bucket is captured on first use (or by :func:`warm_up_graphs` from ``setup()``) and
replayed at every step: per step, one graph launch instead of hundreds of kernel launches from Python.

Sampling stays outside the graph, so random draws are audiocraft's (same generator, same order).
Numerics: the masked, padded attention may pick another SDPA kernel than the stock decoder's exact-
length one, so logits agree to fp16 rounding rather than bitwise; ``MUSICGEN_REMIX_CUDA_GRAPHS=0``
runs the eager (exact-length) path on CUDA instead.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from musicgen_remix.engine import fastlm_step as step

if TYPE_CHECKING:
    from audiocraft.models.lm import LMModel

logger = logging.getLogger(__name__)

GRAPHS_ENV = "MUSICGEN_REMIX_CUDA_GRAPHS"
BUCKET = 256  # cache slots per captured length bucket
CROSS_BUCKET = 32  # cross-attention lengths are padded to a multiple of this
FRAME_RATE = 50  # MusicGen's 32 kHz EnCodec
WINDOW_FRAMES = 1500  # 30 s, MusicGen's window, when the model carries no training config
PREFIX_GUESS = 235 + 64  # melody models: chroma frames + a long description's T5 tokens

# One runner per model (weak keys: dropping the model frees its graphs and cache).
_runners: weakref.WeakKeyDictionary[Any, GraphRunner] = weakref.WeakKeyDictionary()
_runners_lock = threading.Lock()


def enabled() -> bool:
    return os.environ.get(GRAPHS_ENV, "1").strip() != "0" and torch.cuda.is_available()


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@contextmanager
def acquire(lm: LMModel, pack: step.Pack, *, batch: int, length: int,
            cross: list[tuple[torch.Tensor, torch.Tensor]] | None, dtype: torch.dtype) -> Iterator[GraphRunner | None]:
    """The model's runner for one generation (rebuilt when this call does not fit it), its
    cross-attention inputs set; None while another generation holds it (that call then runs eagerly)."""
    graphs: GraphRunner | None
    with _runners_lock:
        graphs = runner(lm, pack, batch=batch, length=length, cross_len=0 if cross is None else cross[0][0].shape[2],
                        dtype=dtype)
        if not graphs.lock.acquire(blocking=False):
            graphs = None
    if graphs is None:
        yield None
        return
    try:
        graphs.cache.data.zero_()  # a NaN left by an earlier generation would poison masked slots (0 * NaN)
        graphs.set_cross(cross)
        yield graphs
    finally:
        graphs.lock.release()


def runner(lm: LMModel, pack: step.Pack, *, batch: int, length: int, cross_len: int,
           dtype: torch.dtype) -> GraphRunner:
    """The model's runner if this call fits it, else a new one (the old one's memory freed first)."""
    current = _runners.get(lm)
    if current is not None and current.fits(batch, length, cross_len, dtype):
        return current
    if current is not None:
        if current.lock.locked():
            return current  # busy with another generation; acquire() gives that call no graphs
        logger.info("fast decoder: new CUDA graphs for batch %d, %d cache slots, %d cross tokens",
                    batch, length, cross_len)
        del _runners[lm]
        current = None
        torch.cuda.empty_cache()
    current = GraphRunner(pack, batch=batch, length=_round_up(length, BUCKET),
                          cross_len=_round_up(cross_len, CROSS_BUCKET) if cross_len else 0, dtype=dtype)
    _runners[lm] = current
    return current


def warm_up_graphs(lm: LMModel, batch: int = 2) -> None:
    """Capture every bucket's graph for a full window with guidance, under MusicGen's float16 autocast."""
    pack = step.pack_weights(lm)
    device = pack.layers[0].in_wt.device
    cfg = getattr(lm, "cfg", None)
    window = int(cfg.dataset.segment_duration * FRAME_RATE) if cfg is not None else WINDOW_FRAMES
    prefix = PREFIX_GUESS if lm.fuser.fuse2cond.get("prepend") else 0
    cross_len = CROSS_BUCKET if pack.layers[0].cross is not None else 0
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16), _runners_lock:
        graphs = runner(lm, pack, batch=batch, length=prefix + window + lm.num_codebooks, cross_len=cross_len,
                        dtype=torch.float16)
        if cross_len:  # zero keys, all visible: finite outputs while capturing
            zeros = torch.zeros(batch, pack.num_heads, graphs.cross_len, pack.head_dim, dtype=torch.float16,
                                device=device)
            graphs.set_cross([(zeros, zeros)] * len(pack.layers))
        tokens = torch.zeros(batch, lm.num_codebooks, 1, dtype=torch.long, device=device)
        for end in range(BUCKET, graphs.length + 1, BUCKET):
            graphs.step(tokens, end - 1)
        graphs.cache.data.zero_()
    torch.cuda.synchronize(device)
    logger.info("fast decoder: captured %d CUDA graphs (%d cache slots)", len(graphs.graphs), graphs.length)


class GraphRunner:
    """Fixed buffers and per-bucket CUDA graphs of one decoding step. Use under ``inference_mode``."""

    def __init__(self, pack: step.Pack, *, batch: int, length: int, cross_len: int, dtype: torch.dtype) -> None:
        device = pack.layers[0].in_wt.device
        self.pack, self.batch, self.length, self.cross_len, self.dtype = pack, batch, length, cross_len, dtype
        self.autocast = torch.is_autocast_enabled("cuda")
        self.cache = step.KVCache(pack, batch, length, dtype=dtype, device=device)
        self.tokens = torch.zeros(batch, len(pack.emb), 1, dtype=torch.long, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.slots = torch.arange(length, device=device)
        self.cross: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.cross_mask: torch.Tensor | None = None
        if cross_len:
            shape = (len(pack.layers), batch, pack.num_heads, cross_len, pack.head_dim)
            keys, values = (torch.zeros(shape, dtype=dtype, device=device) for _ in range(2))
            self.cross = [(keys[i], values[i]) for i in range(len(pack.layers))]
            self.cross_mask = torch.zeros(1, 1, 1, cross_len, dtype=torch.bool, device=device)
        self.lock = threading.Lock()  # held by the generation using the buffers
        self.pool: Any = None  # one memory pool shared by the bucket graphs (they never run concurrently)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def fits(self, batch: int, length: int, cross_len: int, dtype: torch.dtype) -> bool:
        return (batch == self.batch and length <= self.length and cross_len <= self.cross_len
                and (cross_len == 0) == (self.cross_len == 0) and dtype == self.dtype
                and torch.is_autocast_enabled("cuda") == self.autocast)

    def set_cross(self, cross: list[tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        """Copy this generation's cross-attention keys/values into the padded buffers."""
        if cross is None or self.cross is None or self.cross_mask is None:
            return
        n = int(cross[0][0].shape[2])
        for (k, v), (sk, sv) in zip(cross, self.cross, strict=True):
            sk[:, :, :n].copy_(k)
            sv[:, :, :n].copy_(v)
            sk[:, :, n:].zero_()
            sv[:, :, n:].zero_()
        self.cross_mask.copy_((torch.arange(self.cross_len, device=self.cross_mask.device) < n).view(1, 1, 1, -1))

    def step(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """Logits ``[B, K, 1, card]`` for ``tokens`` ``[B, K, 1]`` at cache slot ``position``.

        The returned tensor is the graph's output buffer: read it before the next step.
        """
        self.tokens.copy_(tokens)
        self.position.fill_(position)
        end = min(_round_up(position + 1, BUCKET), self.length)
        if end not in self.graphs:
            self.graphs[end] = self._capture(end)
        graph, logits = self.graphs[end]
        graph.replay()
        return logits

    def _forward(self, end: int) -> torch.Tensor:
        pack = self.pack
        mask = (self.slots[:end] <= self.position).view(1, 1, 1, end)
        index = step.StaticIndex(position=self.position, length=end, mask=mask, cross_mask=self.cross_mask)
        x = step.add_positions(pack, step.embed(pack, self.tokens), self.position)
        return step.heads(pack, step.layers(pack, x, self.cache, 0, self.cross, static=index))

    def _capture(self, end: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # The warm-up pass runs for real (it writes this step's keys/values, which the replay rewrites
        # identically); capture then records the same kernels. Autocast's weight-cast cache must be off
        # inside a graph.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), self._autocast():
            self._forward(end)
        torch.cuda.current_stream().wait_stream(side)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool), self._autocast():
            logits = self._forward(end)
        return graph, logits

    def _autocast(self) -> Any:
        dtype = torch.get_autocast_dtype("cuda")
        return torch.autocast("cuda", dtype=dtype, enabled=self.autocast, cache_enabled=False)
