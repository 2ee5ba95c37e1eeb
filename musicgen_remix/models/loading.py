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
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig

from musicgen_remix.errors import WeightsError
from musicgen_remix.models.safe_load import safe_torch_load
from musicgen_remix.models.untrusted import KNOWN_ENCODECS, SAMPLE_RATE, check_lm_config, check_lm_state, inert_config

if TYPE_CHECKING:
    from audiocraft.models import MultiBandDiffusion, MusicGen
    from audiocraft.models.encodec import CompressionModel

logger = logging.getLogger(__name__)



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
    return assemble_musicgen(repo_dir.name, compression, lm)


def load_finetune(path: Path, encodec_dir: Path, device: str) -> MusicGen:
    """A fine-tune in the fine-tuner's format: one torch file ``{'xp.cfg', 'model'}``.

    ``xp.cfg`` is the pickled OmegaConf training config (or its YAML text), ``model`` the LM state dict;
    the compression model is the one ``compression_model_checkpoint`` names. Loaded with the safe
    allow-list only, and checked (format, architecture, exact state-dict keys) before use.
    """
    from audiocraft.models import builders

    cfg, state = read_finetune_package(path)
    prepare_lm_config(cfg, device)
    try:
        lm = builders.get_lm_model(cfg)
    except Exception as exc:  # the config is user data: any failure to build is a format error
        raise WeightsError(f"{path.name}: its config does not build a MusicGen LM ({type(exc).__name__})") from None
    load_exact_state(lm, state, path.name)
    lm.eval()
    lm.cfg = cfg  # type: ignore[assignment]  # as audiocraft's loaders do; MusicGen reads it
    compression = load_encodec(encodec_dir, device)
    return assemble_musicgen(path.stem, compression, lm)


def read_finetune_package(path: Path, *, conditioning: str = "chroma_stem") -> tuple[Any, dict[str, Any]]:
    """The checked ``(xp.cfg, state dict)`` of a file in the fine-tuner's single-file format.

    Shared by every loader of that format (plain fine-tunes, the chord models). The file is read by the
    restricted unpickler; its config is made inert (no resolver ever runs, no interpolation is left),
    checked against the released architectures, and its transformer tensors against that config, all
    before any model is built. The config returned is the caller's to adjust.

    Args:
        conditioning: the ``self_wav`` conditioner this kind of checkpoint may have.

    Raises:
        WeightsError: unsafe or unreadable file, not ``{'xp.cfg', 'model'}``, an unsupported config, or
            tensors that do not match it.
    """
    pkg = safe_torch_load(path, what="fine-tuned checkpoint")
    if not isinstance(pkg, dict) or "xp.cfg" not in pkg or "model" not in pkg:
        keys = sorted(map(str, pkg))[:8] if isinstance(pkg, dict) else type(pkg).__name__
        raise WeightsError(f"{path.name} is not a MusicGen fine-tune: expected a dict with 'xp.cfg' and "
                           f"'model', got {keys}")
    if not isinstance(pkg["xp.cfg"], DictConfig | dict | str):
        raise WeightsError(f"{path.name}: 'xp.cfg' is a {type(pkg['xp.cfg']).__name__}, not a config")
    cfg = inert_config(pkg["xp.cfg"], path.name)
    check_lm_config(cfg, path.name, conditioning=conditioning)
    state = pkg["model"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path.name}: 'model' is not a state dict of tensors")
    check_lm_state(cfg, state, path.name)
    return cfg, state


def load_mbd(mbd_file: Path, encodec_dir: Path, device: str) -> MultiBandDiffusion:
    """MultiBand Diffusion for MusicGen from local files.

    audiocraft's ``get_mbd_musicgen()`` hard-codes hub ids, and its ``load_diffusion_models`` unpickles
    with torch's weights-only loader, which refuses the Hydra-composed band configs the file carries. This
    reads the file with the restricted unpickler and builds the same objects with audiocraft's builders:
    per band ``{'cfg', 'model_state', 'processor_state'}`` plus ``sample_rate`` and ``n_bands``, and the
    local 32 kHz EnCodec (the codec MBD was trained on).

    Raises:
        WeightsError: naming the file, when it is missing, unsafe, or not a MusicGen MBD checkpoint.
    """
    from audiocraft.models import builders
    from audiocraft.models.multibanddiffusion import DiffusionProcess, MultiBandDiffusion
    from audiocraft.modules.diffusion_schedule import NoiseSchedule

    _require(mbd_file, "MultiBand Diffusion")
    pkg = safe_torch_load(mbd_file, what="MultiBand Diffusion checkpoint")
    try:
        sample_rate, n_bands = int(pkg["sample_rate"]), int(pkg["n_bands"])
        processes = []
        for band in range(n_bands):
            cfg = inert_config(pkg[band]["cfg"], f"{mbd_file.name} band {band}")
            model = builders.get_diffusion_model(cfg)
            model.load_state_dict(pkg[band]["model_state"])
            processor = builders.get_processor(cfg=cfg.processor, sample_rate=sample_rate)
            processor.load_state_dict(pkg[band]["processor_state"])
            schedule = NoiseSchedule(**cfg.schedule, sample_processor=processor.to(device), device=device)
            processes.append(DiffusionProcess(model=model.to(device).eval(), noise_schedule=schedule))
    except WeightsError:
        raise
    except Exception as exc:  # a file of the wrong layout fails in many ways; all of them mean "not MBD"
        raise WeightsError(f"{mbd_file.name} is not a MultiBand Diffusion checkpoint for MusicGen "
                           f"({type(exc).__name__}: {str(exc)[:160]})") from None
    if sample_rate != SAMPLE_RATE or not processes:
        raise WeightsError(f"{mbd_file.name} is not a MultiBand Diffusion checkpoint for {SAMPLE_RATE} Hz "
                           f"MusicGen tokens")
    return MultiBandDiffusion(DPs=processes, codec_model=load_encodec(encodec_dir, device))


def assemble_musicgen(name: str, compression: CompressionModel, lm: Any) -> MusicGen:
    """A ``MusicGen`` from a loaded LM and codec, set up for inference as ``MusicGen.get_pretrained`` does."""
    from audiocraft.models import MusicGen

    conditioners = lm.condition_provider.conditioners
    if "self_wav" in conditioners:
        # As MusicGen.get_pretrained does: pad chroma to the training length, no masking at inference.
        conditioners["self_wav"].match_len_on_eval = True
        conditioners["self_wav"]._use_masking = False
    return MusicGen(name, compression, lm)


def prepare_lm_config(cfg: Any, device: str) -> None:
    """The adjustments audiocraft's ``loaders.load_lm_model`` makes to a training config."""
    from audiocraft.models.loaders import _delete_param

    cfg.device = str(device)
    cfg.dtype = "float32" if device == "cpu" else "float16"
    for key in ("conditioners.self_wav.chroma_stem.cache_path", "conditioners.args.merge_text_conditions_p",
                "conditioners.args.drop_desc_p"):
        _delete_param(cfg, key)


def load_exact_state(module: Any, state: dict[str, Any], name: str) -> None:
    """Load ``state`` into ``module`` when its keys and shapes are exactly the module's, else WeightsError."""
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
