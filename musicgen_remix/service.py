"""Long-lived services behind the entrypoints: models loaded once, requests served one by one.

The Cog predictors and the CLI hold one service each; a service owns the model store and resolves,
per request, which model serves it (the default, another release, or a ``replicate_weights`` fine-tune).
The Cog adapter (``predict.py``) reaches the package only through here and :mod:`.serving`, so the request
types it builds are exported beside the services.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from musicgen_remix.engine.fastlm import warm_up
from musicgen_remix.errors import InputError, WeightsError
from musicgen_remix.generate import GenerateJob, GenerateRequest, GenerateResult, check_request, run_generate
from musicgen_remix.models.hub import use_weights_root
from musicgen_remix.models.remote import FIELD as WEIGHTS_FIELD
from musicgen_remix.models.remote import UrlMemo, check_url, download_checkpoint
from musicgen_remix.models.store import CHORD_RELEASES, RELEASES, SUPPORT_ASSETS, Loaded, ModelStore
from musicgen_remix.progress import Progress
from musicgen_remix.remix.pipeline import RemixResult, run_remix
from musicgen_remix.remix.request import RemixJob, RemixRequest, check_remix_request
from musicgen_remix.remix.separate import Separator
from musicgen_remix.weights.manifest import WEIGHTS_ENV, weights_root

if TYPE_CHECKING:
    from musicgen_remix.audio import OutputFormat

logger = logging.getLogger(__name__)

DEFAULT_VERSION = "melody"
DEFAULT_CHORD_VERSION = "stereo-chord"


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class _Service:
    """Weights root, device and model store shared by both services."""

    def _pin(self, loaded: Loaded) -> None:
        """Keep the deployment's default model loaded, its fast decoder warmed up (CUDA graphs are captured
        here, in setup, not in the first request)."""
        self.store.pin(loaded)
        warm_up(loaded.model.lm, self.device)

    def __init__(self, root: Path | None, device: str | None) -> None:
        self.root = root or weights_root()
        self.device = device or pick_device()
        use_weights_root(self.root)
        # Offline deployments (and tests) point MUSICGEN_REMIX_WEIGHTS at prepared weights: never download.
        online = os.environ.get("MUSICGEN_REMIX_OFFLINE", "") != "1" and WEIGHTS_ENV not in os.environ
        self.store = ModelStore(self.root, self.device, fetch_missing=online)


class GenerateService(_Service):
    """Text/melody-conditioned generation and continuation.

    Args:
        weights: default weights: a fine-tune file (the fine-tuner's format) or URL, as Replicate passes
            through ``COG_WEIGHTS``; None for the ``default_version`` release.
        root: weights root; defaults to ``MUSICGEN_REMIX_WEIGHTS`` or ``weights/``.
        device: torch device; defaults to CUDA when available.
        default_version: the release served when ``weights`` is None (the CLI passes the one asked for, so
            a run with ``--model-version small`` never loads melody).
        assets: further assets the caller will need (e.g. ``mbd``): checked with the default model's before
            anything is loaded, so every missing one is named at once.
    """

    def __init__(self, weights: str | Path | None = None, *, root: Path | None = None, device: str | None = None,
                 default_version: str = DEFAULT_VERSION, assets: tuple[str, ...] = ()) -> None:
        super().__init__(root, device)
        self.default_version = default_version
        needed = [*SUPPORT_ASSETS, "encodec-32khz", *assets]
        if weights is None or not str(weights).strip():
            needed.insert(0, RELEASES[default_version])
        self.store.require(needed)
        # Per URL, what the server said last time: a repeated unchanged replicate_weights is not downloaded again.
        self.weights_memo = UrlMemo()
        self.default = self._load_default(weights)
        self._pin(self.default)
        source = f" (COG_WEIGHTS {weights})" if weights is not None and str(weights).strip() else ""
        logger.info("ready: default model %s%s on %s", self.default.info.name, source, self.device)

    def predict(self, req: GenerateRequest, out_dir: Path, progress: Progress | None = None) -> GenerateResult:
        """Check the request (once), then :meth:`run` it."""
        return self.run(check_request(req), out_dir, progress)

    def run(self, job: GenerateJob, out_dir: Path, progress: Progress | None = None) -> GenerateResult:
        """Generate a checked request with the model it asks for (the default, a release or a fine-tune)."""
        loaded = self._model_for(job)
        return run_generate(job, loaded, self.store, out_dir, progress)

    def _model_for(self, job: GenerateJob) -> Loaded:
        if job.replicate_weights is not None:
            url = check_url(job.replicate_weights)
            path = download_checkpoint(url, self.root / ".cache" / "replicate_weights", memo=self.weights_memo)
            try:
                # Downloads are content-addressed (<sha256>.th): the name is the cache key.
                return self.store.finetune(path, digest=path.stem)
            except WeightsError as exc:
                # Unusable content is not kept for the next request, and the caller chose these weights:
                # report it against their input, in their terms.
                self.weights_memo.forget(url)
                path.unlink(missing_ok=True)
                # The loader names the file by its cache name (<sha256>.th), which the caller never saw.
                reason = str(exc).replace(path.name, "the downloaded file")
                raise InputError(WEIGHTS_FIELD, url, f"a fine-tuned MusicGen checkpoint ({reason})") from None
        if job.model_version == "default":
            return self.default
        return self.store.release(job.model_version)

    def _load_default(self, weights: str | Path | None) -> Loaded:
        if weights is None or str(weights).strip() == "":
            return self.store.release(self.default_version)
        text = str(weights)
        if text.startswith(("http://", "https://")):
            # COG_WEIGHTS is deployment configuration: trusted, so internal hosts are allowed.
            path = download_checkpoint(text, self.root / ".cache" / "default_weights", trusted=True)
            return self.store.finetune(path, digest=path.stem)
        path = Path(text)
        if path.is_dir():
            raise WeightsError(f"default weights {path} is a directory; expected a fine-tuned checkpoint file or URL")
        if not path.is_file():
            raise WeightsError(f"default weights {path} do not exist")
        return self.store.finetune(path)


class RemixService(_Service):
    """Remix songs over their own chords with MusicGen-Chord; demucs and the default chord model load once."""

    def __init__(self, *, root: Path | None = None, device: str | None = None,
                 default_version: str = DEFAULT_CHORD_VERSION, assets: tuple[str, ...] = ()) -> None:
        super().__init__(root, device)
        self.store.require([CHORD_RELEASES[default_version], *SUPPORT_ASSETS, "encodec-32khz", *assets])
        self.default = self.store.chord(default_version)
        self._pin(self.default)
        self.separator = Separator(self.device)
        logger.info("ready: remix with %s on %s", default_version, self.device)

    def predict(self, req: RemixRequest, out_dir: Path, progress: Progress | None = None, *,
                extras: bool = False, extras_format: OutputFormat | None = None) -> RemixResult:
        """Check the request (once), then :meth:`run` it."""
        return self.run(check_remix_request(req), out_dir, progress, extras=extras, extras_format=extras_format)

    def run(self, job: RemixJob, out_dir: Path, progress: Progress | None = None, *,
            extras: bool = False, extras_format: OutputFormat | None = None) -> RemixResult:
        """Remix a checked request with the chord model it names."""
        loaded = self.store.chord(job.model_version)
        return run_remix(job, loaded, self.store, self.separator, out_dir, progress, extras=extras,
                         extras_format=extras_format)
