"""``python -m benchmarks.requirements``: what each model variant needs (GPU memory, RAM, disk) and how long a
generate and a remix take on common GPUs, computed from the real architectures.

Every language model is built as its training run built it (a config composed by dora with Hydra,
:mod:`fixtures.training`, at the release scale) by audiocraft's own builders on the ``meta`` device, which
allocates nothing; the constructors' hub downloads (T5 from ``t5-base``, demucs ``htdemucs``) are replaced by
the same architectures on ``meta`` (T5 from ``t5-base``'s published configuration) and their autocast set-up is
turned off (autocast cannot target ``meta``). The same is done for the 32 kHz EnCodec and the four MultiBand
Diffusion bands. What is computed, and how (each figure is labelled in the output):

- **parameters** and **weight bytes** on a GPU: the built modules' own tensors with the dtype a CUDA load gives
  them (``cfg.dtype = float16``: the transformer in float16; embeddings, output heads and conditioner projections
  stay float32, as in audiocraft).
- **download** per asset: the manifest's sizes where it has them; else from the parameter count: release
  ``state_dict.bin`` files hold every LM tensor in float16 (checked: musicgen-small computed 840,742,912 bytes
  of tensors, its file 840,843,863), sakemin's chord checkpoints the fp32 training state, MBD fp32.
- **GPU memory** (estimate): weights of the LM, T5 encoder (float32, as audiocraft keeps it), EnCodec
  (float32), htdemucs (its file size) and the float16 key/value cache of one 30 s window (two rows:
  classifier-free guidance). Not included: the CUDA context, allocator slack and the working memory of
  separation and decoding.
- **RAM** (estimate): the process's own peak on tiny weights (``--measure-ram``: measured by running the CLI
  in a subprocess) plus every file the variant loads, resident at once (loading reads each file on the CPU
  before moving it to the GPU).
- **time** (estimate): decoding is bound by memory bandwidth (batch of 2, one token per step): a step reads
  the weights of every layer and head (:func:`benchmarks.decode.step_weight_bytes`) and the key/value cache so
  far (:func:`benchmarks.decode.kv_bytes_per_token`). Steps are counted exactly as the engine plans them
  (:func:`musicgen_remix.engine.tokens.plan_windows`, 30 s windows advancing 18 s, the codebook delay
  pattern), each later window's prompt costs one more pass over the weights. Time = bytes / bandwidth: a
  lower bound on the real time (kernel launches, sampling and CFG arithmetic come on top;
  ``python -m benchmarks.decode --device cuda`` reports the measured share of this bound as
  ``share_of_bound``). EnCodec decoding, MBD and the remix's other stages are not in it; the remix's CPU
  stages measured by ``python -m benchmarks.remix_stages --full-size-demucs`` are printed beside it.

Run from the repository root (under a minute on 2 cores): ``python -m benchmarks.requirements [--json]
[--measure-ram TINY_WEIGHTS_DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

GB = 1e9
FRAME_RATE = 50
WINDOW_S = 30.0
HEADROOM_BYTES = 2 * 10**9
"""Assumed for the CUDA context, allocator slack and working memory when saying whether a GPU fits."""

GPUS: tuple[tuple[str, float, int], ...] = (
    # name, memory bandwidth (bytes/s, the vendor's figure), memory (bytes)
    ("H100 SXM 80GB", 3.35e12, 80 * 10**9),
    ("A100 40GB", 1.555e12, 40 * 10**9),
    ("L40S 48GB", 864e9, 48 * 10**9),
    ("A10G 24GB", 600e9, 24 * 10**9),
    ("T4 16GB", 320e9, 16 * 10**9),
)
# generate's model_version -> (registry asset, conditioning, scale, stereo)
RELEASES: dict[str, tuple[str, str, str, bool]] = {
    "small": ("musicgen-small", "text", "small", False),
    "medium": ("musicgen-medium", "text", "medium", False),
    "large": ("musicgen-large", "text", "large", False),
    "melody": ("musicgen-melody", "melody", "medium", False),
    "stereo-melody": ("musicgen-stereo-melody", "melody", "medium", True),
    "melody-large": ("musicgen-melody-large", "melody", "large", False),
    "stereo-melody-large": ("musicgen-stereo-melody-large", "melody", "large", True),
}
# remix's model_version -> (registry asset, scale, stereo)
CHORDS: dict[str, tuple[str, str, bool]] = {
    "chord": ("musicgen-chord", "medium", False),
    "stereo-chord": ("musicgen-stereo-chord", "medium", True),
    "chord-large": ("musicgen-chord-large", "large", False),
    "stereo-chord-large": ("musicgen-stereo-chord-large", "large", True),
}
GENERATE_SECONDS = (8.0, 30.0)
"""The generate entrypoint's default duration, and one full window."""
REMIX_SECONDS = (30.0, 180.0)
"""A 30 s song (what benchmarks.remix_stages measures) and a 3-minute song (the whole song is regenerated)."""

REMIX_STAGES_CPU: dict[str, float] = {
    "read": 0.11, "separate": 24.07, "beats": 0.77, "chords": 1.24, "beat sync": 2.00, "mix + write": 0.29,
}
"""Seconds per stage for a 30 s song, measured 2026-11-25 by ``OMP_NUM_THREADS=1 python -m
benchmarks.remix_stages --full-size-demucs`` (warm run; 2-core development machine, 1 torch thread, other jobs
running; separation with a release-size HTDemucs of random weights). On a GPU machine separation runs on the
GPU (not measured); beats, chords, beat sync and the mix run on the CPU there too."""


@dataclass
class Variant:
    """One model_version: what it is made of and what it needs."""

    name: str
    entrypoint: str
    asset: str
    params: int
    weight_bytes: int
    fp32_bytes: int
    step_bytes: int
    kv_per_token: int
    kv_window_bytes: int
    download: dict[str, tuple[int, str]] = field(default_factory=dict)
    gpu_bytes: int = 0
    ram_bytes: int | None = None
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.requirements", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--measure-ram", type=Path, metavar="TINY_WEIGHTS_DIR", default=None,
                        help="measure the process's own peak RSS by running generate and remix on these tiny "
                             "weights (python -m fixtures.weights DIR)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = compute(measure_ram=args.measure_ram)
    _print(report)
    if args.json:
        sys.stdout.write(json.dumps(report, default=lambda o: asdict(o)) + "\n")
    return 0


def compute(measure_ram: Path | None = None) -> dict[str, Any]:
    """Every figure of the report (see the module docstring)."""
    from fixtures.weights import MUSICGEN_REPOS
    from musicgen_remix.weights.manifest import load_manifest

    manifest = load_manifest()
    support = support_assets(manifest)
    baseline = _measure_baseline(measure_ram) if measure_ram is not None else {}
    variants: list[Variant] = []
    with meta_builders():
        for name, (asset, conditioning, scale, stereo) in RELEASES.items():
            lm = release_lm(conditioning, scale, stereo)
            variant = _variant(name, "generate", asset, lm)
            lm_file = manifest[asset].files[0].size
            variant.download[asset + "/state_dict.bin"] = (
                (lm_file, "manifest") if lm_file is not None else (fp16_tensor_bytes(lm), "computed: fp16 tensors"))
            pointer = MUSICGEN_REPOS[asset][2]
            codec = manifest[asset].files[1].size
            variant.download[asset + "/compression_state_dict.bin"] = (
                (0, "an EnCodec pointer, a few hundred bytes") if pointer else
                ((codec, "manifest") if codec is not None else (support["encodec"]["file"], "as encodec-32khz")))
            _finish(variant, lm, support, conditioning == "melody", GENERATE_SECONDS, baseline.get("generate"))
            variants.append(variant)
        for name, (asset, scale, stereo) in CHORDS.items():
            lm = chord_lm(scale, stereo)
            variant = _variant(name, "remix", asset, lm)
            variant.download[asset + ".th"] = (variant.fp32_bytes, "computed: fp32 training state")
            _finish(variant, lm, support, True, REMIX_SECONDS, baseline.get("remix"))
            variants.append(variant)
    return {
        "gpus": [{"name": n, "bandwidth": bw, "memory": mem} for n, bw, mem in GPUS],
        "support": support,
        "variants": variants,
        "baseline_rss": baseline,
        "venv_bytes": _tree_bytes(Path(sys.prefix)) if sys.prefix != sys.base_prefix else None,
        "remix_stages_cpu": REMIX_STAGES_CPU,
        "headroom_bytes": HEADROOM_BYTES,
    }


# -- building on the meta device ------------------------------------------------------------------------
@contextlib.contextmanager
def meta_builders() -> Iterator[None]:
    """audiocraft's builders on ``meta``, their hub downloads replaced by the same architectures on ``meta``."""
    import audiocraft.modules.conditioners as conditioners
    import torch
    from audiocraft.utils.autocast import TorchAutocast
    from demucs.htdemucs import HTDemucs
    from transformers import T5EncoderModel

    class _NoTokenizer:  # nothing is tokenized: the models are only counted
        @staticmethod
        def from_pretrained(*args: Any, **kwargs: Any) -> None:
            return None

    def t5(*args: Any, **kwargs: Any) -> Any:
        return T5EncoderModel(_t5_base())

    def demucs(*args: Any, **kwargs: Any) -> Any:
        return HTDemucs(sources=["drums", "bass", "other", "vocals"])

    with (torch.device("meta"),
          mock.patch.object(conditioners.T5EncoderModel, "from_pretrained", t5),
          mock.patch.object(conditioners, "T5Tokenizer", _NoTokenizer),
          mock.patch.object(conditioners, "TorchAutocast", lambda *a, **k: TorchAutocast(enabled=False)),
          mock.patch("demucs.pretrained.get_model", demucs)):
        yield


def _on_meta(cfg: Any) -> Any:
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.device = "meta"
        cfg.dtype = "float16"  # what prepare_lm_config sets for a CUDA load
    return cfg


def release_lm(conditioning: str, scale: str, stereo: bool) -> Any:
    from audiocraft.models import builders

    from fixtures.training import compose, release_overrides

    return builders.get_lm_model(_on_meta(compose(release_overrides(conditioning, stereo=stereo, scale=scale))))


def chord_lm(scale: str, stereo: bool) -> Any:
    from fixtures.training import chord_overrides, compose
    from musicgen_remix.models.chord import build_chord_lm

    return build_chord_lm(_on_meta(compose(chord_overrides(stereo=stereo, scale=scale))))


def support_assets(manifest: Any) -> dict[str, dict[str, Any]]:
    """T5 encoder, EnCodec, htdemucs and MBD: parameters, GPU bytes and file sizes."""
    import torch
    from audiocraft.models import builders
    from transformers import T5EncoderModel, T5ForConditionalGeneration

    from fixtures.training import compose, encodec_overrides, mbd_band_overrides

    with torch.device("meta"):
        encoder = _count(T5EncoderModel(_t5_base()))
        whole = _count(T5ForConditionalGeneration(_t5_base()))
        codec = builders.get_compression_model(_on_meta(compose(encodec_overrides("release"))))
        bands = [builders.get_diffusion_model(_on_meta(compose(mbd_band_overrides(band, scale="release"))))
                 for band in range(4)]
    codec_bytes = sum(t.numel() * 4 for t in [*codec.parameters(), *codec.buffers()])  # fp32 state
    mbd_params = sum(_count(band) for band in bands)
    t5_files = sum(f.size for f in manifest["t5-base"].files)
    return {
        "t5": {"params": encoder, "gpu": encoder * 4, "file": t5_files, "file_source": "manifest",
               "whole_model_fp32": whole * 4},
        "encodec": {"params": _count(codec), "gpu": codec_bytes, "file": manifest["encodec-32khz"].total_size,
                    "file_source": "manifest", "computed_fp32": codec_bytes},
        "htdemucs": {"gpu": manifest["htdemucs"].total_size, "file": manifest["htdemucs"].total_size,
                     "file_source": "manifest"},
        "mbd": {"params": mbd_params, "gpu": mbd_params * 4, "file": mbd_params * 4,
                "file_source": "computed: fp32 tensors"},
    }


def _t5_base() -> Any:
    """t5-base's configuration (its config.json at the manifest's revision): audiocraft's text encoder."""
    from transformers import T5Config

    return T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def fp16_tensor_bytes(lm: Any) -> int:
    return sum(t.numel() * 2 for t in lm.state_dict().values())


def _variant(name: str, entrypoint: str, asset: str, lm: Any) -> Variant:
    from benchmarks.decode import context_tokens, kv_bytes_per_token, step_weight_bytes

    window = round(WINDOW_S * FRAME_RATE) + max(getattr(lm.pattern_provider, "delays", [0]))
    return Variant(
        name=name, entrypoint=entrypoint, asset=asset, params=_count(lm),
        weight_bytes=sum(p.numel() * p.element_size() for p in lm.parameters()),
        fp32_bytes=sum(t.numel() * 4 for t in lm.state_dict().values()),
        step_bytes=step_weight_bytes(lm), kv_per_token=kv_bytes_per_token(lm),
        kv_window_bytes=kv_bytes_per_token(lm) * (context_tokens(lm) + window))


def _finish(variant: Variant, lm: Any, support: dict[str, dict[str, Any]], demucs: bool,
            durations: Sequence[float], baseline: int | None) -> None:
    """GPU memory, RAM and the bandwidth-bound times of ``variant``."""
    parts = [support["t5"], support["encodec"], *([support["htdemucs"]] if demucs else [])]
    variant.gpu_bytes = variant.weight_bytes + variant.kv_window_bytes + sum(p["gpu"] for p in parts)
    if baseline is not None:  # the LM file (a release's own EnCodec file is not loaded: encodec-32khz is)
        lm_file = next(iter(variant.download.values()))[0]
        variant.ram_bytes = baseline + lm_file + support["t5"]["gpu"] + support["encodec"]["file"] + (
            support["htdemucs"]["file"] if demucs else 0)
    for seconds in durations:
        steps, total = generation_bytes(lm, seconds, variant.step_bytes, variant.kv_per_token)
        variant.steps[f"{seconds:g}"] = steps
        variant.seconds[f"{seconds:g}"] = {name: total / bandwidth for name, bandwidth, _ in GPUS}


def generation_bytes(lm: Any, seconds: float, step_bytes: int, kv_per_token: int) -> tuple[int, float]:
    """Decoding steps and bytes read to generate ``seconds`` of audio, window by window as the engine does."""
    from benchmarks.decode import context_tokens
    from musicgen_remix.engine.tokens import plan_windows

    window = round(WINDOW_S * FRAME_RATE)
    stride = round(18.0 * FRAME_RATE)
    steps, total = 0, 0.0
    for win in plan_windows(round(seconds * FRAME_RATE), 0, window, stride):
        pattern = lm.pattern_provider.get_pattern(win.end_frames)
        start = int(pattern.get_first_step_with_timesteps(win.prompt_frames) or 0)
        n = len(pattern.layout) - start
        before = context_tokens(lm) + start  # cache entries when the window's first step runs
        total += n * step_bytes + kv_per_token * (n * before + n * (n - 1) / 2)
        if win.prompt_frames:
            total += step_bytes  # the prompt: one more pass over the weights
        steps += n
    return steps, total


# -- measured -------------------------------------------------------------------------------------------
def _measure_baseline(tiny: Path) -> dict[str, int]:
    """Peak RSS of ``generate`` (1 s) and ``remix`` (a 30 s rendered song) on tiny weights, each in a fresh process."""
    from fixtures.songs import have_fluidsynth, render_song

    env = {**os.environ, "MUSICGEN_REMIX_WEIGHTS": str(tiny), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out["generate"] = _peak_rss([sys.executable, "-m", "musicgen_remix", "generate", "--prompt", "lofi beat",
                                     "--duration", "1", "--seed", "0", "-o", str(work / "g.wav")], env)
        if have_fluidsynth():
            song = work / "song.wav"
            render_song(song, progression=["C:maj", "A:min", "F:maj", "G:maj"], bpm=120, bars=15, vocal_line=True)
            out["remix"] = _peak_rss([sys.executable, "-m", "musicgen_remix", "remix", "--music-input", str(song),
                                      "--prompt", "bossa nova", "--seed", "0", "-o", str(work / "r.wav")], env)
    return out


def _peak_rss(command: list[str], env: dict[str, str]) -> int:
    """Peak resident set of ``command``'s process (the largest of it and the children it waited for)."""
    runner = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
              "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", runner, *command], env=env, capture_output=True, text=True,
                          check=True)
    return int(done.stdout.split()[-1]) * 1024


def _tree_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (``du --apparent-size``; links not followed)."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


# -- output ---------------------------------------------------------------------------------------------
def _download(variant: Variant) -> int:
    return sum(size for size, _ in variant.download.values())


def _gb(n: float | None) -> str:
    return "?" if n is None else f"{n / GB:.2f}"


def _print(report: dict[str, Any]) -> None:
    write = sys.stdout.write
    support = report["support"]
    write("Support assets (every variant loads T5 and EnCodec; melody and remix load htdemucs; MBD on request):\n")
    t5, codec, mbd = support["t5"], support["encodec"], support["mbd"]
    write(f"  t5-base encoder  {t5['params'] / 1e6:7.1f} M params, GPU {_gb(t5['gpu'])} GB (fp32, computed), "
          f"download {_gb(t5['file'])} GB (manifest; whole model fp32 computed {_gb(t5['whole_model_fp32'])} GB)\n")
    write(f"  encodec-32khz    {codec['params'] / 1e6:7.1f} M params, GPU {_gb(codec['gpu'])} GB (fp32 incl. "
          f"codebooks, computed), download {_gb(codec['file'])} GB (manifest)\n")
    write(f"  htdemucs                         GPU {_gb(support['htdemucs']['gpu'])} GB (file size), download "
          f"{_gb(support['htdemucs']['file'])} GB (manifest)\n")
    write(f"  mbd (4 bands)    {mbd['params'] / 1e6:7.1f} M params, GPU {_gb(mbd['gpu'])} GB (fp32, computed), "
          f"download {_gb(mbd['file'])} GB (computed)\n\n")

    write("Per model_version (GB; GPU memory and RAM are estimates, see the module docstring):\n")
    write(f"{'variant':<20}{'entry':<9}{'params':>8}{'LM GPU':>8}{'KV 30s':>8}{'GPU est':>9}{'fits (+2 GB)':>24}"
          f"{'download':>10}{'fp32 CPU':>10}{'RAM est':>9}\n")
    for v in report["variants"]:
        fits = [name.split()[0] for name, _, memory in GPUS if v.gpu_bytes + report["headroom_bytes"] <= memory]
        write(f"{v.name:<20}{v.entrypoint:<9}{v.params / 1e9:>7.2f}B{_gb(v.weight_bytes):>8}"
              f"{_gb(v.kv_window_bytes):>8}{_gb(v.gpu_bytes):>9}{' '.join(fits) or '-':>24}"
              f"{_gb(_download(v)):>10}{_gb(v.fp32_bytes):>10}{_gb(v.ram_bytes):>9}\n")
    variants = {v.name: v for v in report["variants"]}
    shared = support["t5"]["file"] + support["encodec"]["file"] + support["htdemucs"]["file"]
    first_generate = _download(variants["melody"]) + shared
    first_remix = _download(variants["stereo-chord"]) + shared
    write(f"\nfirst run downloads: generate (melody) {_gb(first_generate)} GB, remix (stereo-chord) "
          f"{_gb(first_remix)} GB; `weights fetch` with no name (melody, EnCodec, t5-base, htdemucs, MBD) "
          f"{_gb(first_generate + mbd['file'])} GB\n")
    largest = max(report["variants"], key=lambda v: v.gpu_bytes)
    with_mbd = largest.gpu_bytes + mbd["gpu"]
    fits = [name.split()[0] for name, _, memory in GPUS if with_mbd + report["headroom_bytes"] <= memory]
    write(f"with MultiBand Diffusion: the largest estimate ({largest.name}) becomes {_gb(with_mbd)} GB; fits (+2 GB): "
          f"{' '.join(fits) or '-'}\n")
    write("download sources: " + "; ".join(
        f"{file} {source}" for v in report["variants"] for file, (_, source) in v.download.items()
        if source != "manifest") + "\n")

    write("\nDecoding time, bandwidth bound (estimate: a lower bound; seconds):\n")
    heads = [name for name, _, _ in GPUS]
    write(f"{'variant':<20}{'audio':>7}{'steps':>7}" + "".join(f"{h.rsplit(' ', 1)[0]:>11}" for h in heads) + "\n")
    for v in report["variants"]:
        for seconds, by_gpu in v.seconds.items():
            write(f"{v.name:<20}{seconds + ' s':>7}{v.steps[seconds]:>7}"
                  + "".join(f"{by_gpu[h]:>11.1f}" for h in heads) + "\n")
    write("bandwidths: " + ", ".join(f"{n} {bw / 1e12:.3g} TB/s" for n, bw, _ in GPUS) + "\n")

    stages = report["remix_stages_cpu"]
    write("\nRemix stages besides generation, measured on CPU for a 30 s song (benchmarks.remix_stages, warm run): "
          + ", ".join(f"{k} {s:.2f} s" for k, s in stages.items())
          + f"; on CPU {sum(stages.values()) - stages['separate']:.1f} s without separation\n")
    if report["baseline_rss"]:
        write("Process peak RSS on tiny weights (measured): "
              + ", ".join(f"{k} {_gb(b)} GB" for k, b in report["baseline_rss"].items()) + "\n")
    if report["venv_bytes"] is not None:
        write(f"This virtual environment ({sys.prefix}): {_gb(report['venv_bytes'])} GB (measured)\n")


if __name__ == "__main__":
    sys.exit(main())
