"""Point the libraries that fetch from model hubs at the project's weights root, offline.

audiocraft builds T5 with ``transformers.from_pretrained("t5-base")`` and its chroma conditioner gets
demucs ``htdemucs`` through ``torch.hub``; neither takes a cache directory argument. Production and
tests alike place those files under the weights root (see :mod:`musicgen_remix.weights.manifest`) and
call :func:`use_weights_root` once before building models, so no library ever reaches for the network
at request time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from musicgen_remix.weights.manifest import HF_CACHE_SUBDIR, TORCH_HUB_SUBDIR

logger = logging.getLogger(__name__)


def use_weights_root(root: Path) -> None:
    """Make transformers and torch.hub read (only) from ``root``; idempotent, process-wide."""
    import huggingface_hub.constants as hf_constants
    import torch

    hf_cache = str(root / HF_CACHE_SUBDIR)
    # Environment for subprocesses and libraries imported later; module constants for those that
    # already read them at import (huggingface_hub resolves the cache and offline mode from these).
    os.environ["HF_HUB_CACHE"] = hf_cache
    os.environ["HF_HUB_OFFLINE"] = "1"
    hf_constants.HF_HUB_CACHE = hf_cache
    hf_constants.HF_HUB_OFFLINE = True
    torch.hub.set_dir(str(root / TORCH_HUB_SUBDIR))
    logger.debug("weights root %s (hub cache %s, torch hub %s)", root, hf_cache, torch.hub.get_dir())
