"""The one bounded model cache: which models are loaded, under what key, and for how long.

Models are loaded once (in ``setup()`` for the default) and reused; a request that asks for another
release or a fine-tune loads it once more into a small LRU cache keyed by name or by the checkpoint's
sha256, so a URL whose content changes is never confused with what it served before. The default
model is pinned and never evicted.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicgen_remix.errors import WeightsError
from musicgen_remix.models.loading import ModelInfo, describe, load_finetune, load_mbd, load_release
from musicgen_remix.weights.manifest import load_manifest, missing_weights_message, resolve_assets

if TYPE_CHECKING:
    from audiocraft.models import MultiBandDiffusion, MusicGen

logger = logging.getLogger(__name__)

# The generate entrypoint's model_version choices -> registry assets.
RELEASES: dict[str, str] = {
    "melody": "musicgen-melody",
    "stereo-melody": "musicgen-stereo-melody",
    "melody-large": "musicgen-melody-large",
    "stereo-melody-large": "musicgen-stereo-melody-large",
    "small": "musicgen-small",
    "medium": "musicgen-medium",
    "large": "musicgen-large",
}
# The remix entrypoint's model_version choices -> sakemin's chord checkpoints.
CHORD_RELEASES: dict[str, str] = {
    "chord": "musicgen-chord",
    "stereo-chord": "musicgen-stereo-chord",
    "chord-large": "musicgen-chord-large",
    "stereo-chord-large": "musicgen-stereo-chord-large",
}
SUPPORT_ASSETS = ("t5-base", "htdemucs")


@dataclass(frozen=True)
class Loaded:
    model: MusicGen
    info: ModelInfo
    key: str


class ModelStore:
    """Loads and caches models under one weights root.

    Args:
        root: weights root (``MUSICGEN_REMIX_WEIGHTS`` or ``weights/``).
        device: torch device string.
        max_models: loaded models kept besides the pinned default.
        fetch_missing: download a registry asset that is not on disk yet (production); offline
            deployments and tests leave it off and get a clear error instead.
    """

    def __init__(self, root: Path, device: str, *, max_models: int = 1, fetch_missing: bool = False) -> None:
        self.root = root
        self.device = device
        self.max_models = max_models
        self.fetch_missing = fetch_missing
        self._manifest = load_manifest()
        self._pinned: Loaded | None = None
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._mbd: MultiBandDiffusion | None = None
        self._mbd_failure: tuple[tuple[int, int] | None, WeightsError] | None = None
        self._lock = threading.RLock()

    # -- what callers ask for ------------------------------------------------------------------------
    def release(self, version: str) -> Loaded:
        """A release model by ``model_version`` (see :data:`RELEASES`)."""
        asset = RELEASES[version]
        return self._get(f"release:{asset}", lambda: load_release(
            self._asset(asset), self._asset("encodec-32khz"), self.device), name=version)

    def chord(self, version: str) -> Loaded:
        """A MusicGen-Chord model by the remix ``model_version`` (see :data:`CHORD_RELEASES`)."""
        from musicgen_remix.models.chord import load_chord_model

        asset = CHORD_RELEASES[version]
        return self._get(f"chord:{asset}", lambda: load_chord_model(
            self._asset(asset), self._asset("encodec-32khz"), self.device), name=version)

    def finetune(self, path: Path, digest: str | None = None) -> Loaded:
        """A fine-tune in the fine-tuner's single-file format, cached by content hash.

        ``digest``: the file's sha256 when the caller already knows it (a content-addressed download), so a
        multi-GB checkpoint is not hashed again on every request.
        """
        digest = digest or sha256_file(path)
        return self._get(f"finetune:{digest}", lambda: load_finetune(
            path, self._asset("encodec-32khz"), self.device), name=f"fine-tune {digest[:12]}")

    def mbd(self) -> MultiBandDiffusion:
        """MultiBand Diffusion, loaded on first use and kept.

        A file that fails to load is reported with the same :class:`WeightsError` on every later request
        without being read again, until the file itself changes (e.g. it is fetched anew).
        """
        with self._lock:
            if self._mbd is not None:
                return self._mbd
            path = self._asset("mbd")
            stamp = _file_stamp(path)
            if self._mbd_failure is not None and self._mbd_failure[0] == stamp:
                raise self._mbd_failure[1]
            import torch

            logger.info("loading MultiBand Diffusion")
            try:
                # Loaded lazily, often after the request's seed was applied: building the model draws from
                # the global RNG, which would make the first MBD request differ from later ones with that seed.
                with torch.random.fork_rng():
                    self._mbd = load_mbd(path, self._asset("encodec-32khz"), self.device)
            except WeightsError as exc:
                self._mbd_failure = (stamp, exc)
                logger.error("MultiBand Diffusion is unusable until %s changes: %s", path, exc)
                raise
            self._mbd_failure = None
            return self._mbd

    def pin(self, loaded: Loaded) -> None:
        """Keep ``loaded`` for the life of the process (the deployment's default model)."""
        with self._lock:
            self._pinned = loaded
            self._cache.pop(loaded.key, None)

    @property
    def loaded_keys(self) -> list[str]:
        keys = list(self._cache)
        return ([self._pinned.key] if self._pinned else []) + keys

    # -- internals -----------------------------------------------------------------------------------
    def _get(self, key: str, load: Any, *, name: str) -> Loaded:
        with self._lock:
            if self._pinned is not None and self._pinned.key == key:
                return self._pinned
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            logger.info("loading %s", name)
            self._support_assets()
            model = load()
            loaded = Loaded(model=model, info=describe(name, model), key=key)
            self._cache[key] = loaded
            while len(self._cache) > self.max_models:
                evicted, _ = self._cache.popitem(last=False)
                logger.info("evicted %s from the model cache", evicted)
            return loaded

    def require(self, names: list[str]) -> None:
        """Make sure every asset in ``names`` is on disk before anything is loaded: fetched in one go when
        downloads are allowed, else one :class:`WeightsError` naming every missing asset and the command."""
        missing = [asset.name for asset in resolve_assets(names, self._manifest) if not asset.present(self.root)]
        if not missing:
            return
        if not self.fetch_missing:
            raise WeightsError(missing_weights_message(missing, self.root))
        from musicgen_remix.weights.fetch import LogProgress, fetch

        fetch(missing, self.root, manifest=self._manifest, progress=LogProgress())

    def _support_assets(self) -> None:
        """What audiocraft builds from the hub while building any LM: T5, and htdemucs for chroma."""
        for name in SUPPORT_ASSETS:
            self._asset(name)

    def _asset(self, name: str) -> Path:
        (asset,) = resolve_assets([name], self._manifest)
        if not asset.present(self.root):
            self.require([name])
        return asset.path(self.root)


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of ``path``; None when it does not exist."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
