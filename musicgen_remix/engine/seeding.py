"""One place that turns the caller's ``seed`` into a seed and applies it.

``None`` or ``-1`` draw a random seed; ``0`` is a seed like any other. The seed used is logged and
returned so that it can be reported and the output reproduced.
"""

from __future__ import annotations

import logging
import random
import secrets

from musicgen_remix.errors import InputError

logger = logging.getLogger(__name__)

SEED_MAX = 2**32 - 1


def resolve_seed(seed: int | None) -> int:
    if seed is None or seed == -1:
        return secrets.randbelow(SEED_MAX + 1)
    if isinstance(seed, bool) or not 0 <= seed <= SEED_MAX:
        raise InputError("seed", seed, f"an integer from 0 to {SEED_MAX}, or -1/None for a random seed")
    return int(seed)


def apply_seed(seed: int) -> None:
    """Seed every generator generation draws from (torch CPU/CUDA, numpy, random)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    logger.info("seed: %d", seed)
