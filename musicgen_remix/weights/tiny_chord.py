"""Tiny random MusicGen-Chord checkpoints in exactly sakemin's release layout, for tests and offline runs.

Each file is ``{'xp.cfg': <pickled OmegaConf DictConfig>, 'model': <LM state dict>}``, written where
:func:`musicgen_remix.weights.manifest.asset_path` puts the four chord assets. The config is the tiny
melody config with sakemin's ``conditioner/chord2music.yaml`` conditioner (``self_wav``:
``chroma_chord``, its ``sample_rate`` an interpolation, ``cache_path: cache`` as in training); the
state dict comes from the project's chord model, so it holds the same keys as sakemin's, the BTC
recogniser's weights (real sizes, random values) included. "chord" and "chord-large" are both tiny.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from musicgen_remix.weights.manifest import asset_path, load_manifest

logger = logging.getLogger(__name__)

# Registry asset -> (stereo, seed). Seeds keep files identical run to run.
CHORD_CHECKPOINTS: dict[str, tuple[bool, int]] = {
    "musicgen-chord": (False, 501),
    "musicgen-chord-large": (False, 502),
    "musicgen-stereo-chord": (True, 503),
    "musicgen-stereo-chord-large": (True, 504),
}


def write_tiny_chord_checkpoints(root: Path) -> list[Path]:
    """Write the four tiny chord checkpoints under ``root`` (and the t5-base stand-in they build with)."""
    import torch

    from musicgen_remix.models.chord import build_chord_lm
    from musicgen_remix.models.hub import use_weights_root
    from musicgen_remix.weights.tiny import _save, _write_t5

    manifest = load_manifest()
    _write_t5(asset_path("t5-base", root, manifest=manifest))
    use_weights_root(root)
    written = []
    with torch.random.fork_rng(devices=[]):
        for name, (stereo, seed) in CHORD_CHECKPOINTS.items():
            cfg = chord_training_config(stereo=stereo)
            torch.manual_seed(seed)
            lm = build_chord_lm(cfg).eval()
            written.append(_save({"xp.cfg": cfg, "model": lm.state_dict()}, asset_path(name, root, manifest=manifest)))
    logger.info("wrote %d tiny chord checkpoints under %s", len(written), root)
    return written


def chord_training_config(*, stereo: bool) -> Any:
    """The tiny melody ``xp.cfg`` with sakemin's ``chroma_chord`` conditioner in place of ``chroma_stem``."""
    from omegaconf import OmegaConf, open_dict

    from musicgen_remix.models.configs import lm_config

    cfg = lm_config("tiny", "melody", stereo=stereo)
    with open_dict(cfg):
        cfg.conditioners.self_wav = OmegaConf.create({
            "model": "chroma_chord",
            "chroma_chord": {"sample_rate": "${sample_rate}", "n_chroma": 12, "radix2_exp": 14, "argmax": True,
                             "match_len_on_eval": False, "eval_wavs": None, "n_eval_wavs": 100,
                             "cache_path": "cache"},
        })
    return cfg
