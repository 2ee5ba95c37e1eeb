"""Shared fixtures: offline environment, tiny release-format weights, a loaded generate service."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


def _tiny_dir() -> Path:
    """Keyed by everything the tiny weights are made from: the fixtures (writers and config tree) and the manifest."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "fixtures").rglob("*")):
        if path.is_file() and path.suffix in (".py", ".yaml"):
            digest.update(str(path.relative_to(REPO)).encode() + path.read_bytes())
    digest.update((REPO / "weights" / "manifest.toml").read_bytes())
    return REPO / ".cache" / f"tiny-weights-{digest.hexdigest()[:12]}"


@pytest.fixture(scope="session")
def tiny_weights() -> Path:
    """Tiny random weights in the release formats, written once per source version and reused.

    Only the path: no environment is changed for the rest of the session (a test that needs
    ``MUSICGEN_REMIX_WEIGHTS`` sets it itself), so no test depends on running after another that used these."""
    import torch

    torch.set_num_threads(1)
    root = _tiny_dir()
    done = root / ".complete"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest sessions must not write the same directory
        if not done.exists():
            from fixtures.weights import write_tiny_weights

            write_tiny_weights(root)
            done.write_text("ok")
    return root


@pytest.fixture(scope="session")
def generate_service(tiny_weights: Path):
    from musicgen_remix.service import GenerateService

    return GenerateService(root=tiny_weights, device="cpu")
