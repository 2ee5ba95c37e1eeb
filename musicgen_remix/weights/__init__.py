"""Weights registry and downloader: what each checkpoint is, where it lives, how it is fetched.

``weights/manifest.toml`` (at the repository root) lists every asset with its source, revision,
hashes and licence; :mod:`.manifest` validates it and maps assets onto the on-disk layout their
loaders expect; :mod:`.fetch` downloads them resumably and verifies them before use. :mod:`.download`
is the HTTP download core every URL goes through (streaming, hashing, byte cap, total deadline and
stall rule, atomic rename), and :mod:`.guard` the address policy for URLs a caller supplies.
"""

from musicgen_remix.weights.fetch import (
    DEFAULT_ASSETS,
    AssetRow,
    LogProgress,
    ProgressCallback,
    TqdmProgress,
    fetch,
    list_assets,
    main_weights_fetch,
)
from musicgen_remix.weights.manifest import (
    HF_CACHE_SUBDIR,
    TORCH_HUB_SUBDIR,
    Asset,
    AssetFile,
    AssetKind,
    asset_path,
    load_manifest,
    weights_root,
)

__all__ = [
    "DEFAULT_ASSETS",
    "HF_CACHE_SUBDIR",
    "TORCH_HUB_SUBDIR",
    "Asset",
    "AssetFile",
    "AssetKind",
    "AssetRow",
    "LogProgress",
    "ProgressCallback",
    "TqdmProgress",
    "asset_path",
    "fetch",
    "list_assets",
    "load_manifest",
    "main_weights_fetch",
    "weights_root",
]
