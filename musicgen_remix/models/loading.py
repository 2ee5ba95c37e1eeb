"""Loading MusicGen checkpoints into ready models: release repos, fine-tunes and MultiBand Diffusion.

Building a model from its config is audiocraft's job (``builders``); reading the release layouts is
audiocraft's too (``loaders``), called here unchanged so tests on tiny checkpoints exercise the
production path. What this module adds: the fine-tuner's single-file format loaded safely and checked
before use, EnCodec pointer files resolved to the local 32 kHz EnCodec, and MBD built from local files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from musicgen_remix.errors import WeightsError
from musicgen_remix.models.safe_load import allow_configs, safe_torch_load

if TYPE_CHECKING:
    from audiocraft.models import MultiBandDiffusion, MusicGen
    from audiocraft.models.encodec import CompressionModel

logger = logging.getLogger(__name__)

# The EnCodec names a training config may give in ``compression_model_checkpoint``.
KNOWN_ENCODECS = {"//pretrained/facebook/encodec_32khz", "facebook/encodec_32khz"}
SAMPLE_RATE = 32000


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model can do, read from its config."""

    name: str
    melody: bool  # has the chroma (self_wav) conditioner
    stereo: bool
    card: int
    max_duration: float
    frame_rate: float
    sample_rate: int


def describe(name: str, model: MusicGen) -> ModelInfo:
    lm = model.lm
    return ModelInfo(
        name=name,
        melody="self_wav" in lm.condition_provider.conditioners,
        stereo=model.audio_channels == 2,
        card=int(lm.card),
        max_duration=float(model.max_duration),
        frame_rate=float(model.frame_rate),
        sample_rate=int(model.sample_rate),
    )


def load_encodec(encodec_dir: Path, device: str) -> CompressionModel:
    """The 32 kHz EnCodec from an audiocraft-format ``compression_state_dict.bin``."""
    from audiocraft.models import loaders

    _require(encodec_dir / "compression_state_dict.bin", "EnCodec 32 kHz")
    return loaders.load_compression_model(str(encodec_dir), device=device)


def load_release(repo_dir: Path, encodec_dir: Path, device: str) -> MusicGen:
    """A MusicGen hub repo (``state_dict.bin`` + ``compression_state_dict.bin``) from a local directory.

    Some releases (melody-large, the stereo repos) ship ``compression_state_dict.bin`` as a pointer
    ``{'pretrained': 'facebook/encodec_32khz'}``, which audiocraft would fetch from the hub in another
    format; such pointers are served by the local EnCodec instead.
    """
    import torch
    from audiocraft.models import loaders

    _require(repo_dir / "state_dict.bin", f"MusicGen {repo_dir.name}")
    _require(repo_dir / "compression_state_dict.bin", f"MusicGen {repo_dir.name}")
    lm = loaders.load_lm_model(str(repo_dir), device=device)
    pkg = torch.load(repo_dir / "compression_state_dict.bin", map_location="cpu", weights_only=True, mmap=True)
    if "pretrained" in pkg:
        if pkg["pretrained"] not in KNOWN_ENCODECS:
            raise WeightsError(f"{repo_dir.name}: compression model {pkg['pretrained']!r} is not served; "
                               f"known: {sorted(KNOWN_ENCODECS)}")
        compression = load_encodec(encodec_dir, device)
    else:
        compression = loaders.load_compression_model(str(repo_dir), device=device)
    return _assemble(repo_dir.name, compression, lm)


def load_finetune(path: Path, encodec_dir: Path, device: str) -> MusicGen:
    """A fine-tune in the fine-tuner's format: one torch file ``{'xp.cfg', 'model'}``.

    ``xp.cfg`` is the pickled OmegaConf training config (or its YAML text), ``model`` the LM state dict;
    the compression model is the one ``compression_model_checkpoint`` names. Loaded with the safe
    allow-list only, and checked (format, architecture, exact state-dict keys) before use.
    """
    from audiocraft.models import builders

    cfg, state = read_finetune_package(path)
    _prepare_lm_cfg(cfg, device)
    try:
        lm = builders.get_lm_model(cfg)
    except Exception as exc:  # the config is user data: any failure to build is a format error
        raise WeightsError(f"{path.name}: its config does not build a MusicGen LM: {exc}") from None
    _load_state(lm, state, path.name)
    lm.eval()
    lm.cfg = cfg  # type: ignore[assignment]  # as audiocraft's loaders do; MusicGen reads it
    compression = load_encodec(encodec_dir, device)
    return _assemble(path.stem, compression, lm)


def read_finetune_package(path: Path) -> tuple[Any, dict[str, Any]]:
    """The checked ``(xp.cfg, state dict)`` of a file in the fine-tuner's single-file format.

    Shared by every loader of that format (plain fine-tunes, the chord models). The config is a
    private copy (callers adjust it), already checked by :func:`_check_finetune_cfg`.

    Raises:
        WeightsError: unsafe or unreadable file, not ``{'xp.cfg', 'model'}``, or an unsupported config.
    """
    from omegaconf import DictConfig, OmegaConf

    pkg = safe_torch_load(path, what="fine-tuned checkpoint")
    if not isinstance(pkg, dict) or "xp.cfg" not in pkg or "model" not in pkg:
        keys = sorted(map(str, pkg)) if isinstance(pkg, dict) else type(pkg).__name__
        raise WeightsError(f"{path.name} is not a MusicGen fine-tune: expected a dict with 'xp.cfg' and "
                           f"'model', got {keys}")
    raw_cfg = pkg["xp.cfg"]
    if not isinstance(raw_cfg, DictConfig | dict | str):
        raise WeightsError(f"{path.name}: 'xp.cfg' is a {type(raw_cfg).__name__}, not a config")
    cfg = cast(DictConfig, OmegaConf.create(raw_cfg) if not isinstance(raw_cfg, DictConfig) else raw_cfg.copy())
    _check_finetune_cfg(cfg, path.name)
    state = pkg["model"]
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{path.name}: 'model' is not a state dict")
    return cfg, state


def load_mbd(mbd_file: Path, encodec_dir: Path, device: str) -> MultiBandDiffusion:
    """MultiBand Diffusion for MusicGen from local files.

    audiocraft's ``get_mbd_musicgen()`` hard-codes hub ids; this builds the same object from the
    checkpoint file and the local 32 kHz EnCodec (the codec MBD was trained on).
    """
    from audiocraft.models import loaders
    from audiocraft.models.multibanddiffusion import DiffusionProcess, MultiBandDiffusion
    from audiocraft.modules.diffusion_schedule import NoiseSchedule

    _require(mbd_file, "MultiBand Diffusion")
    codec = load_encodec(encodec_dir, device)
    with allow_configs():
        models, processors, cfgs = loaders.load_diffusion_models(str(mbd_file), device=device)
    processes = [
        DiffusionProcess(model=m, noise_schedule=NoiseSchedule(**c.schedule, sample_processor=p, device=device))
        for m, p, c in zip(models, processors, cfgs, strict=True)
    ]
    return MultiBandDiffusion(DPs=processes, codec_model=codec)


def _assemble(name: str, compression: CompressionModel, lm: Any) -> MusicGen:
    from audiocraft.models import MusicGen

    conditioners = lm.condition_provider.conditioners
    if "self_wav" in conditioners:
        # As MusicGen.get_pretrained does: pad chroma to the training length, no masking at inference.
        conditioners["self_wav"].match_len_on_eval = True
        conditioners["self_wav"]._use_masking = False
    return MusicGen(name, compression, lm)


def _check_finetune_cfg(cfg: Any, name: str) -> None:
    problems = []
    if cfg.get("lm_model") != "transformer_lm":
        problems.append(f"lm_model={cfg.get('lm_model')!r} (expected 'transformer_lm')")
    if cfg.get("sample_rate") != SAMPLE_RATE:
        problems.append(f"sample_rate={cfg.get('sample_rate')!r} (expected {SAMPLE_RATE})")
    n_q = cfg.get("transformer_lm", {}).get("n_q")
    if n_q not in (4, 8):
        problems.append(f"transformer_lm.n_q={n_q!r} (expected 4 for mono or 8 for stereo)")
    encodec = cfg.get("compression_model_checkpoint")
    if encodec not in KNOWN_ENCODECS:
        problems.append(f"compression_model_checkpoint={encodec!r} (expected one of {sorted(KNOWN_ENCODECS)})")
    if problems:
        raise WeightsError(f"{name} is not a supported MusicGen fine-tune: " + "; ".join(problems))


def _prepare_lm_cfg(cfg: Any, device: str) -> None:
    """The adjustments audiocraft's ``loaders.load_lm_model`` makes to a training config."""
    from audiocraft.models.loaders import _delete_param

    cfg.device = str(device)
    cfg.dtype = "float32" if device == "cpu" else "float16"
    for key in ("conditioners.self_wav.chroma_stem.cache_path", "conditioners.args.merge_text_conditions_p",
                "conditioners.args.drop_desc_p"):
        _delete_param(cfg, key)


def _load_state(module: Any, state: dict[str, Any], name: str) -> None:
    expected = set(module.state_dict())
    given = set(state)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        raise WeightsError(f"{name}: state dict does not match its config's architecture: "
                           f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise WeightsError(f"{name}: tensor shapes do not match its config: {first[-1] if first else exc}") from None


def _require(path: Path, what: str) -> None:
    if not path.exists():
        raise WeightsError(f"{what} weights not found at {path}; run `python -m musicgen_remix weights fetch` "
                           "or set MUSICGEN_REMIX_WEIGHTS to a weights directory")
