"""Tiny random-weight checkpoints in the exact on-disk formats of the real releases.

``python -m musicgen_remix weights tiny DIR`` writes, under ``DIR``, every asset the server loads, at the
paths :func:`musicgen_remix.weights.manifest.asset_path` gives, so that with
``MUSICGEN_REMIX_WEIGHTS=DIR`` the CLI, both predictors and the tests run offline through the
production loaders:

- MusicGen hub repos: ``state_dict.bin`` / ``compression_state_dict.bin`` as
  ``{'best_state', 'xp.cfg' (YAML text), 'version', 'exported'}``; melody-large and the stereo repos
  carry the ``{'pretrained': 'facebook/encodec_32khz'}`` pointer their releases ship instead of weights.
- the 32 kHz EnCodec (audiocraft format), MultiBand Diffusion (``{'sample_rate', 'n_bands', i: {...}}``
  with pickled OmegaConf band configs), a t5-base stand-in in a Hugging Face cache layout and a tiny
  htdemucs serialized by demucs itself into the torch.hub checkpoint directory.
- fine-tunes as the fine-tuner writes them: ``{'xp.cfg': <pickled OmegaConf>, 'model': <LM state dict>}``,
  under ``finetunes/`` (not registry assets: they stand in for ``COG_WEIGHTS`` / ``replicate_weights``).
- sakemin's musicgen-chord checkpoints in the same single-file format (see ``tiny_chord``).

Weights are random but deterministic (seeded per asset), so files are identical run to run.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

from musicgen_remix.weights.manifest import asset_path, load_manifest

logger = logging.getLogger(__name__)

EXPORT_VERSION = "1.3.0"
ENCODEC_POINTER = {"pretrained": "facebook/encodec_32khz"}
# Release repos: (conditioning, stereo, ships an EnCodec pointer instead of weights).
MUSICGEN_REPOS: dict[str, tuple[str, bool, bool]] = {
    "musicgen-melody": ("melody", False, False),
    "musicgen-stereo-melody": ("melody", True, True),
    "musicgen-melody-large": ("melody", False, True),
    "musicgen-stereo-melody-large": ("melody", True, True),
    "musicgen-small": ("text", False, False),
    "musicgen-medium": ("text", False, False),
    "musicgen-large": ("text", False, False),
}
# Fine-tunes written for tests and the offline quick start: (conditioning, stereo, seed).
FINETUNES: dict[str, tuple[str, bool, int]] = {
    "melody-a": ("melody", False, 101),
    "melody-b": ("melody", False, 202),
    "text-a": ("text", False, 303),
    "stereo-melody-a": ("melody", True, 404),
}
FINETUNE_DIR = "finetunes"
T5_VOCAB_TEXT = (
    "happy rock music with drums and bass guitar\ncalm piano melody in a minor key\n"
    "an upbeat electronic dance track with synths\nsad jazz ballad with saxophone and strings\n"
    "lofi hip hop beat, bpm: 90\nepic orchestral soundtrack with choir\n8 bit video game music\n"
)


def finetune_path(root: Path, name: str) -> Path:
    return root / FINETUNE_DIR / f"{name}.th"


def write_tiny_weights(root: Path) -> list[Path]:
    """Write every tiny asset under ``root``; returns the paths written."""
    import torch

    root.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest()
    written: list[Path] = []
    with torch.random.fork_rng(devices=[]):
        encodec_pkg = _export(_tiny_encodec(seed=1), _compression_cfg())
        encodec_dir = asset_path("encodec-32khz", root, manifest=manifest)
        written.append(_save(encodec_pkg, encodec_dir / "compression_state_dict.bin"))
        for index, (name, (conditioning, stereo, pointer)) in enumerate(MUSICGEN_REPOS.items()):
            repo = asset_path(name, root, manifest=manifest)
            cfg = _lm_cfg(conditioning, stereo)
            lm = _tiny_lm(cfg, seed=10 + index, root=root)
            written.append(_save(_export(lm, cfg), repo / "state_dict.bin"))
            written.append(_save(ENCODEC_POINTER if pointer else encodec_pkg, repo / "compression_state_dict.bin"))
        for name, (conditioning, stereo, seed) in FINETUNES.items():
            cfg = _lm_cfg(conditioning, stereo)
            lm = _tiny_lm(cfg, seed=seed, root=root)
            written.append(_save({"xp.cfg": cfg, "model": lm.state_dict()}, finetune_path(root, name)))
        written.append(_save(_tiny_mbd(seed=2), asset_path("mbd", root, manifest=manifest)))
        written.append(_write_demucs(asset_path("htdemucs", root, manifest=manifest), seed=3))
    written.append(_write_t5(asset_path("t5-base", root, manifest=manifest)))
    from musicgen_remix.weights.tiny_chord import write_tiny_chord_checkpoints

    written.extend(write_tiny_chord_checkpoints(root))
    logger.info("wrote %d tiny weight files under %s", len(written), root)
    return written


def _lm_cfg(conditioning: str, stereo: bool) -> Any:
    from musicgen_remix.models.configs import lm_config

    return lm_config("tiny", conditioning, stereo=stereo)  # type: ignore[arg-type]


def _compression_cfg() -> Any:
    from musicgen_remix.models.configs import compression_config

    return compression_config("tiny")


def _tiny_lm(cfg: Any, *, seed: int, root: Path) -> Any:
    """A random LM; T5 and demucs must already resolve offline, so they are written first."""
    import torch
    from audiocraft.models import builders

    from musicgen_remix.models.hub import use_weights_root

    _write_t5(asset_path("t5-base", root))
    _write_demucs(asset_path("htdemucs", root), seed=3)
    use_weights_root(root)
    torch.manual_seed(seed)
    return builders.get_lm_model(cfg).eval()


def _tiny_encodec(*, seed: int) -> Any:
    import torch
    from audiocraft.models import builders

    torch.manual_seed(seed)
    model = builders.get_compression_model(_compression_cfg())
    # RVQ codebooks stay at zero until one training-mode forward pass initialises them.
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 1, 32000) * 0.1)
    return model.eval()


def _export(model: Any, cfg: Any) -> dict[str, Any]:
    """audiocraft's ``utils.export`` layout: YAML config text, so it loads with weights_only=True."""
    from omegaconf import OmegaConf

    return {"best_state": model.state_dict(), "xp.cfg": OmegaConf.to_yaml(cfg), "version": EXPORT_VERSION,
            "exported": True}


def _tiny_mbd(*, seed: int, n_bands: int = 4) -> dict[Any, Any]:
    import torch
    from audiocraft.models import builders

    from musicgen_remix.models.configs import SAMPLE_RATE, compression_config, mbd_band_config

    torch.manual_seed(seed)
    codec_dim = int(compression_config("tiny").seanet.dimension)
    pkg: dict[Any, Any] = {"sample_rate": SAMPLE_RATE, "n_bands": n_bands}
    for band in range(n_bands):
        cfg = mbd_band_config(band, n_bands, codec_dim=codec_dim, scale="tiny")
        model = builders.get_diffusion_model(cfg)
        processor = builders.get_processor(cfg.processor, sample_rate=SAMPLE_RATE)
        # A fitted processor: unit statistics (a fresh one has zero counts and yields NaN).
        stats = processor.state_dict()
        stats["counts"] = torch.ones(1)
        stats["sum_x"] = torch.zeros_like(stats["sum_x"])
        stats["sum_x2"] = torch.ones_like(stats["sum_x2"])
        stats["sum_target_x2"] = torch.ones_like(stats["sum_target_x2"])
        pkg[band] = {"cfg": cfg, "model_state": model.state_dict(), "processor_state": stats}
    return pkg


def _write_demucs(path: Path, *, seed: int) -> Path:
    """A tiny HTDemucs serialized by demucs itself, where torch.hub looks for ``htdemucs``."""
    if path.exists():
        return path
    import torch
    from demucs.htdemucs import HTDemucs
    from demucs.states import serialize_model
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    model = HTDemucs(sources=["drums", "bass", "other", "vocals"], audio_channels=2, channels=4, depth=4,
                     nfft=4096, t_layers=1, t_heads=2, dconv_comp=2, segment=4, samplerate=44100)
    pkg = serialize_model(model, OmegaConf.create({"tiny": True}), half=False)
    return _save(pkg, path)


def _write_t5(snapshot: Path) -> Path:
    """A t5-base stand-in (d_model 768, as T5Conditioner expects) in a Hugging Face cache snapshot."""
    if (snapshot / "model.safetensors").exists():
        return snapshot
    import sentencepiece as spm
    import torch
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    snapshot.mkdir(parents=True, exist_ok=True)
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(T5_VOCAB_TEXT.splitlines() * 20), model_writer=model_file, vocab_size=96,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
        minloglevel=2, num_threads=1)
    (snapshot / "spiece.model").write_bytes(model_file.getvalue())
    T5Tokenizer(vocab_file=str(snapshot / "spiece.model"), extra_ids=0).save_pretrained(snapshot)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        config = T5Config(vocab_size=128, d_model=768, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
        T5EncoderModel(config).save_pretrained(snapshot)
    refs = snapshot.parent.parent / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(snapshot.name)
    return snapshot


def _save(obj: Any, path: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path
