"""``python -m benchmarks.decode``: audiocraft's ``LMModel.generate`` against the fast decoder.

One random-weight language model of a real MusicGen architecture is built from a training config composed
as dora composes audiocraft's (:mod:`fixtures.training`, the release solvers at the real model scales), and
both decoders generate from the same
conditions with the same seed and sampling (top-k 250, guidance 3), ``seconds * 50`` frames each.
Reported: steps per second of each and their ratio, the peak memory each run added, whether the
tokens are equal (a short extra run at top-k 1, and the timed sampled runs), and on CUDA the bound
set by memory bandwidth (weights + key/value cache read per step, over a measured device copy).

The text conditioner is T5 (``t5-base``) from the weights root (``$MUSICGEN_REMIX_WEIGHTS``; the tiny
weights' stand-in works, ``python -m fixtures.weights DIR``). Without one, a lookup-table
text conditioner takes its place (one cross-attention token instead of a sentence's worth), and the
output says so. ``melody`` is the medium scale with chroma (prepend) conditioning; its chroma
extractor needs demucs ``htdemucs`` from the same root, and without it the benchmark stops with one error
line saying how to get it (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from musicgen_remix.errors import InputError, MusicgenRemixError

if TYPE_CHECKING:
    import torch
    from audiocraft.models.lm import LMModel
    from audiocraft.modules.conditioners import ConditioningAttributes

logger = logging.getLogger(__name__)

# --arch -> (model scale of fixtures/trainer/config/model/lm/model_scale, conditioning)
ARCHS: dict[str, tuple[str, str]] = {
    "tiny": ("tiny", "text"),
    "deep-narrow": ("deep_narrow", "text"),
    "small": ("small", "text"),
    "medium": ("medium", "text"),
    "melody": ("medium", "melody"),
    "large": ("large", "text"),
}
FRAME_RATE = 50
DESCRIPTION = "calm piano melody in a minor key"
TOP_K, CFG = 250, 3.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode", description=__doc__.splitlines()[0])
    _add_decode_args(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run_decode(parser.parse_args(argv))
    except InputError as exc:
        parser.error(str(exc))
        return 2
    except MusicgenRemixError as exc:  # e.g. missing weights: one line, no usage
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 2


def _add_decode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=sorted(ARCHS), default="tiny", help="default %(default)s")
    p.add_argument("--seconds", type=float, default=2.0, help="audio seconds per run (x50 steps; default %(default)s)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="default %(default)s")
    p.add_argument("--stereo", action="store_true", help="8 codebooks (stereo delays) instead of 4")
    p.add_argument("--seed", type=int, default=0, help="weights and sampling seed (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each decoder, best kept (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


@dataclass
class Run:
    tokens: torch.Tensor
    steps: int
    seconds: float
    peak_bytes: int


def _run_decode(args: argparse.Namespace) -> int:
    import torch

    from musicgen_remix.engine.fastlm import fast_generate, supports, warm_up

    if args.seconds <= 0 or not math.isfinite(args.seconds):
        raise InputError("--seconds", args.seconds, "a number of seconds > 0")
    if args.repeats < 1:
        raise InputError("--repeats", args.repeats, "an integer >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", args.device, "'cpu' (no CUDA device is available)")
    device = torch.device(args.device)
    lm, text_conditioner = _build_lm(args.arch, args.stereo, device, args.seed)
    reason = supports(lm)
    if reason is not None:
        logger.warning("the fast decoder does not cover this model (%s): both runs are stock", reason)
    conditions = _conditions(lm, args.arch, device)
    frames = max(2, round(args.seconds * FRAME_RATE))
    autocast = _autocast(device)
    stock = lm.generate
    ours = lambda *a, **k: fast_generate(lm, *a, **k)  # noqa: E731

    warm_start = time.perf_counter()
    warm_up(lm, device)
    for fn in (stock, ours):  # first-call costs (conditioner caches, allocator) stay out of the timings
        _timed(fn, conditions, 4, args.seed, device, autocast, top_k=TOP_K)
    warm_s = time.perf_counter() - warm_start
    runs: dict[str, list[Run]] = {"stock": [], "ours": []}
    for _ in range(args.repeats):  # interleaved, best of each: a busy machine slows both alike
        for name, fn in (("stock", stock), ("ours", ours)):
            runs[name].append(_timed(fn, conditions, frames, args.seed, device, autocast, top_k=TOP_K))
    base, fast = (min(runs[name], key=lambda run: run.seconds) for name in ("stock", "ours"))
    peaks = {name: max(run.peak_bytes for run in runs[name]) for name in runs}
    short = min(frames, 2 * FRAME_RATE)
    equal_greedy = torch.equal(_timed(stock, conditions, short, args.seed, device, autocast, top_k=1).tokens,
                               _timed(ours, conditions, short, args.seed, device, autocast, top_k=1).tokens)
    result: dict[str, Any] = {
        "arch": args.arch, "device": str(device), "stereo": args.stereo, "seconds": args.seconds,
        "steps": fast.steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "text_conditioner": text_conditioner, "fast_path": reason is None,
        "stock_steps_per_s": base.steps / base.seconds, "ours_steps_per_s": fast.steps / fast.seconds,
        "ratio": base.seconds / fast.seconds,
        "peak_mem_bytes": peaks["ours"], "stock_peak_mem_bytes": peaks["stock"],
        "tokens_equal": equal_greedy, "tokens_equal_sampled": torch.equal(base.tokens, fast.tokens),
        "warm_up_s": warm_s, "bound_steps_per_s": None, "share_of_bound": None,
    }
    if device.type == "cuda":
        bound = _bandwidth_bound(lm, conditions, frames, device)
        result["bound_steps_per_s"] = bound
        result["share_of_bound"] = result["ours_steps_per_s"] / bound
    for key, value in result.items():
        sys.stdout.write(f"{key}: {value:.4g}\n" if isinstance(value, float) else f"{key}: {value}\n")
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    return 0


def _build_lm(arch: str, stereo: bool, device: torch.device, seed: int) -> tuple[LMModel, str]:
    """A random-weight LM of ``arch`` (float16 on CUDA, as audiocraft's loaders make it) and its text
    conditioner's kind."""
    import torch
    from audiocraft.models import builders
    from omegaconf import OmegaConf, open_dict

    from fixtures.training import compose, release_overrides
    from musicgen_remix.errors import WeightsError
    from musicgen_remix.models.hub import use_weights_root
    from musicgen_remix.weights.manifest import load_manifest, missing_weights_message, weights_root

    scale, conditioning = ARCHS[arch]
    root = weights_root()
    registry = load_manifest()
    if conditioning == "melody" and not registry["htdemucs"].present(root):
        # torch.hub would try to download it (and fail with a traceback offline).
        raise WeightsError(missing_weights_message(
            ["htdemucs"], root, f"--arch {arch} needs it for its chroma extractor"))
    cfg = compose(release_overrides(conditioning, stereo=stereo, scale=scale))
    with open_dict(cfg):
        cfg.device = str(device)
        cfg.dtype = "float32" if device.type == "cpu" else "float16"
    text = "t5"
    if registry["t5-base"].present(root):
        use_weights_root(root)
    else:
        logger.warning("no t5-base under %s: a lookup-table text conditioner stands in for T5", root)
        text = "lut"
        with open_dict(cfg):
            cfg.conditioners.description = OmegaConf.create(
                {"model": "lut", "lut": {"n_bins": 1024, "dim": 64, "tokenizer": "noop"}})
    if conditioning == "melody":
        use_weights_root(root)  # demucs htdemucs for the chroma extractor
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lm = builders.get_lm_model(cfg)
    lm.eval()
    if conditioning == "melody":  # as MusicGen.get_pretrained: chroma padded to the window, no masking
        chroma: Any = lm.condition_provider.conditioners["self_wav"]
        chroma.match_len_on_eval = True
        chroma._use_masking = False
    return lm, text


def _conditions(lm: LMModel, arch: str, device: torch.device) -> list[ConditioningAttributes]:
    import torch
    from audiocraft.modules.conditioners import ConditioningAttributes, WavCondition

    attributes = ConditioningAttributes(text={"description": DESCRIPTION})
    if ARCHS[arch][1] == "melody":
        sr = 32000
        t = torch.arange(3 * sr, device=device) / sr
        wav = (0.3 * torch.sin(2 * math.pi * 261.6 * t * (1 + (t > 1.5).float() * 0.5)))[None, None]
        attributes.wav["self_wav"] = WavCondition(wav, torch.tensor([wav.shape[-1]], device=device), [sr],
                                                  [None], [0.0])
    return [attributes]


def _autocast(device: torch.device) -> Callable[[], AbstractContextManager[Any]]:
    """MusicGen's autocast: float16 on CUDA, off on CPU."""
    import torch

    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.float16)
    return nullcontext


def _timed(fn: Callable[..., torch.Tensor], conditions: list[Any], frames: int, seed: int, device: torch.device,
           autocast: Callable[[], AbstractContextManager[Any]], *, top_k: int) -> Run:
    import torch

    steps = [0]

    def count(done: int, total: int) -> None:
        steps[0] = total

    torch.manual_seed(seed)
    memory = _PeakMemory(device)
    with memory, autocast():
        start = time.perf_counter()
        tokens = fn(None, conditions, max_gen_len=frames, use_sampling=True, temp=1.0, top_k=top_k, top_p=0.0,
                    cfg_coef=CFG, two_step_cfg=False, callback=count)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return Run(tokens=tokens, steps=steps[0], seconds=seconds, peak_bytes=memory.peak)


class _PeakMemory:
    """Memory a block adds at its peak: CUDA allocator peak, or on CPU the growth of the process's peak
    resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``, after ``malloc_trim``; else
    ``getrusage`` maxrss growth, which only sees what exceeds every earlier peak)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self) -> _PeakMemory:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        _malloc_trim()  # freed heap pages back to the OS, so that reusing them shows up as growth
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self._proc = True
            self._base = _proc_status("VmRSS")
        except OSError:
            self._proc = False
            self._base = _maxrss()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self.peak = max(0, (_proc_status("VmHWM") if self._proc else _maxrss()) - self._base)


def _malloc_trim() -> None:
    import contextlib
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):  # not glibc: no trimming
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def _maxrss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


PREPEND_TOKENS = 235 + 8
"""Tokens a prepend-conditioned LM (melody, chord) attends to before its first frame: the chroma frames of one
window and a sentence of T5 tokens."""
CROSS_TOKENS = 8
"""Cross-attention tokens of a text-conditioned LM: a sentence of T5 tokens."""


def step_weight_bytes(lm: LMModel) -> int:
    """Bytes of weights one decoding step reads: every layer and output head as stored, but not the embeddings
    (one row each per step) nor the cross-attention key/value projections (applied once per generation)."""
    from musicgen_remix.engine import fastlm_step as step

    pack = step.pack_weights(lm)
    skip = {id(t) for layer in pack.layers if layer.cross is not None for t in (layer.cross.k_w, layer.cross.v_w)}
    return sum(t.numel() * t.element_size() for t in _tensors(pack) if id(t) not in skip)


def kv_bytes_per_token(lm: LMModel, rows: int = 2) -> int:
    """Bytes of float16 keys and values one token adds to the cache (every layer), for ``rows`` batch rows
    (2: a prompt and its classifier-free-guidance null twin)."""
    layers = len(lm.transformer.layers)
    return 2 * layers * rows * int(lm.dim) * 2


def context_tokens(lm: LMModel) -> int:
    """Tokens every step attends to besides the frames generated so far (see :data:`PREPEND_TOKENS`)."""
    return PREPEND_TOKENS if lm.fuser.fuse2cond.get("prepend") else CROSS_TOKENS


def _bandwidth_bound(lm: LMModel, conditions: list[Any], frames: int, device: torch.device) -> float:
    """Steps per second if every step only read its weights and key/value cache at the device's copy speed."""
    steps = frames + max(lm.pattern_provider.delays, default=0) if hasattr(lm.pattern_provider, "delays") else frames
    mean_len = context_tokens(lm) + steps / 2
    per_step = step_weight_bytes(lm) + kv_bytes_per_token(lm, 2 * len(conditions)) * mean_len
    return _copy_bandwidth(device) / per_step


def _tensors(pack: Any) -> list[torch.Tensor]:
    import torch

    out: list[torch.Tensor] = []
    for layer in pack.layers:
        for value in vars(layer).values():
            if isinstance(value, torch.Tensor):
                out.append(value)
            elif isinstance(value, tuple):
                out.extend(v for v in value if isinstance(v, torch.Tensor))
            elif value is not None and hasattr(value, "__dataclass_fields__"):
                out.extend(v for v in vars(value).values() if isinstance(v, torch.Tensor))
    out.extend(t for head in pack.heads for t in head if t is not None)
    return out


def _copy_bandwidth(device: torch.device, size: int = 1 << 30, repeats: int = 10) -> float:
    """Bytes per second a device-to-device copy moves (read + write)."""
    import torch

    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(repeats):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize(device)
    return 2 * size * repeats / (begin.elapsed_time(end) / 1000)


if __name__ == "__main__":
    sys.exit(main())
