"""The weights registry: which checkpoints exist, where they come from and where they live on disk.

Parses and validates ``weights/manifest.toml`` into frozen :class:`Asset` records and maps every asset
onto the on-disk layout its loader expects, under a weights root (``$MUSICGEN_REMIX_WEIGHTS``, else
``<repo root>/weights``):

=========  ========================================================================================
kind       files under the root                                      ``asset_path()`` returns
=========  ========================================================================================
musicgen   ``<hf repo>/state_dict.bin``, ``compression_state_dict.bin``  the directory, as accepted by
                                                                     ``MusicGen.get_pretrained`` and
                                                                     ``loaders.load_lm_model``
encodec    ``audiocraft/<name>/compression_state_dict.bin``          the directory
                                                                     (``loaders.load_compression_model``)
mbd        ``<hf repo>/<file>`` (``facebook/multiband-diffusion/``)   the file
t5         ``hf/models--<repo>/snapshots/<revision>/<file>`` and      the snapshot directory; with the
           ``hf/models--<repo>/refs/main``                           hub cache at ``<root>/hf``,
                                                                     ``from_pretrained("t5-base")``
                                                                     finds it offline
demucs     ``torch/hub/checkpoints/<url file name>``                 the file; ``torch.hub.set_dir(
                                                                     <root>/torch/hub)`` makes demucs
                                                                     find it offline
chord      ``sakemin/<url file name>`` (``musicgen-chord.th``, ...)  the file
=========  ========================================================================================

Nothing here touches the network; :mod:`musicgen_remix.weights.fetch` downloads. Whether it may is
:func:`offline_setting`'s answer, and :func:`missing_weights_message` is the one way a missing asset is
reported (what is missing, why it was not downloaded, and the two ways forward).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args
from urllib.parse import quote, unquote, urlsplit

from musicgen_remix.errors import WeightsError

AssetKind = Literal["musicgen", "encodec", "mbd", "t5", "demucs", "chord"]
KINDS: tuple[str, ...] = get_args(AssetKind)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MANIFEST_PATH = REPO_ROOT / "weights" / "manifest.toml"
WEIGHTS_ENV = "MUSICGEN_REMIX_WEIGHTS"
HF_ENDPOINT_ENV = "HF_ENDPOINT"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
HF_CACHE_SUBDIR = "hf"
"""``<root>/hf`` is a Hugging Face hub cache (what ``HF_HUB_CACHE`` should point at)."""
TORCH_HUB_SUBDIR = "torch/hub"
"""``<root>/torch/hub`` is a torch.hub directory (what ``torch.hub.set_dir`` should be given)."""

_HF_KINDS = frozenset({"musicgen", "encodec", "mbd", "t5"})
_URL_KINDS = frozenset({"demucs", "chord"})
_REQUIRED_FILES: dict[str, frozenset[str]] = {
    "musicgen": frozenset({"state_dict.bin", "compression_state_dict.bin"}),
    "encodec": frozenset({"compression_state_dict.bin"}),
}
_ASSET_KEYS = frozenset(
    {"kind", "hf", "revision", "files", "url", "size", "sha256", "licence", "description"}
)
_FILE_KEYS = frozenset({"name", "size", "sha256", "sha256_prefix"})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

OFFLINE_ENV = "MUSICGEN_REMIX_OFFLINE"
HF_OFFLINE_ENV = "HF_HUB_OFFLINE"
_TRUE_WORDS = frozenset({"1", "on", "yes", "true"})  # what huggingface_hub itself reads as true
STARTUP_HF_HUB_OFFLINE: str | None = os.environ.get(HF_OFFLINE_ENV)
"""``HF_HUB_OFFLINE`` as the process was started. :func:`musicgen_remix.models.hub.use_weights_root` sets it
to 1 for the hub libraries once a weights root is chosen (they must never reach for the network at request
time), so by the time the store fetches a missing asset the live value no longer says what the user asked
for. That module imports this one, so this is read before any root is chosen."""

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_REVISION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_HASH_PREFIX_DIGITS_RE = re.compile(r"[0-9a-f]{8,64}")
# torch.hub's check_hash convention: "<name>-<sha256 prefix>.<ext>", e.g. 955717e8-8726e21a.th.
_HASH_PREFIX_RE = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class AssetFile:
    """One downloadable file of an asset.

    Attributes:
        filename: the file's name at its source (an HF repo path, or the URL's last segment).
        url: where it is downloaded from (HTTPS; plain HTTP only on loopback, for tests).
        size: expected size in bytes, when a public source gives it.
        sha256: expected lowercase hex SHA-256, when a public source gives it.
        dest: POSIX path of the file relative to the weights root.
        sha256_prefix: the first hex digits of the SHA-256, when that is all the publisher named (audiocraft's
            first release named its files ``<sig>-<sha256 prefix>.th``, as torch.hub's ``check_hash`` wants).
    """

    filename: str
    url: str
    size: int | None
    sha256: str | None
    dest: str
    sha256_prefix: str | None = None

    def accepts(self, digest: str) -> bool:
        """Whether a file whose SHA-256 is ``digest`` is this file, as far as the manifest knows."""
        if self.sha256 is not None:
            return digest == self.sha256
        return self.sha256_prefix is None or digest.startswith(self.sha256_prefix)

    @property
    def expected_hash(self) -> str | None:
        """The hash (or prefix) a download is checked against, for messages."""
        return self.sha256 or (f"{self.sha256_prefix}..." if self.sha256_prefix else None)

    def path(self, root: Path) -> Path:
        """The file's absolute location under ``root``."""
        return root.joinpath(*self.dest.split("/"))


@dataclass(frozen=True)
class Asset:
    """A registered checkpoint (one or several files) and its provenance.

    Attributes:
        name: registry key, e.g. ``"musicgen-melody"``.
        kind: what loads it (see the module docstring for the layout of each kind).
        files: the files to download.
        licence: SPDX identifier of the weights' licence.
        description: one line for listings.
        source: ``"hf:<repo>@<revision>"`` or the download URL, for display and logs.
        entry: POSIX path, relative to the weights root, that :func:`asset_path` returns.
        hf_repo: Hugging Face repo id for hub assets, else None.
        revision: hub revision (a commit sha when pinned), else None.
        hf_ref: for assets kept in the Hugging Face cache layout, the relative path of the
            ``refs/main`` file that must name ``revision``; else None.
    """

    name: str
    kind: AssetKind
    files: tuple[AssetFile, ...]
    licence: str
    description: str
    source: str
    entry: str
    hf_repo: str | None = None
    revision: str | None = None
    hf_ref: str | None = None

    @property
    def pinned(self) -> bool:
        """True when the source cannot change under us: a commit revision or a hashed URL."""
        if self.revision is not None:
            return _COMMIT_RE.fullmatch(self.revision) is not None
        return all(f.sha256 is not None for f in self.files)

    @property
    def total_size(self) -> int | None:
        """Sum of the file sizes, or None if any size is unknown."""
        sizes = [f.size for f in self.files]
        if any(s is None for s in sizes):
            return None
        return sum(cast(int, s) for s in sizes)

    def path(self, root: Path) -> Path:
        """Where the asset lives under ``root`` (what its loader is given)."""
        return root.joinpath(*self.entry.split("/"))

    def present(self, root: Path) -> bool:
        """Every file of the asset is under ``root`` (not verified; an empty directory is not an asset)."""
        return all(f.path(root).is_file() for f in self.files)


def weights_root() -> Path:
    """The weights root: ``$MUSICGEN_REMIX_WEIGHTS`` if set, else ``<repo root>/weights``."""
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return REPO_ROOT / "weights"


def offline_setting() -> str | None:
    """The setting that forbids downloads, as ``NAME=value``, or None when downloads may be tried.

    ``MUSICGEN_REMIX_OFFLINE`` is read as it is now; ``HF_HUB_OFFLINE`` as the process was started
    (:data:`STARTUP_HF_HUB_OFFLINE`). Either set to 1 (or on, yes, true) means no connection is made at all.
    """
    own = os.environ.get(OFFLINE_ENV, "")
    if own.strip().lower() in _TRUE_WORDS:
        return f"{OFFLINE_ENV}={own}"
    if STARTUP_HF_HUB_OFFLINE is not None and STARTUP_HF_HUB_OFFLINE.strip().lower() in _TRUE_WORDS:
        return f"{HF_OFFLINE_ENV}={STARTUP_HF_HUB_OFFLINE}"
    return None


def missing_weights_message(names: Iterable[str], root: Path, cause: str | None = None) -> str:
    """One line for assets that are not on disk: which, where, why (``cause``) and the two ways forward.

    ``cause`` says why they were not downloaded (an offline setting, an unreachable host, a transfer that
    kept failing); None when downloading is simply not this caller's job.
    """
    names = list(dict.fromkeys(names))
    listed = ", ".join(repr(name) for name in names)
    head = f"weights {listed} are not under {root}"
    if cause:
        head += f", and {cause}"
    command = f"`python -m musicgen_remix weights fetch {' '.join(names)}`"
    setting = offline_setting()
    online = f"run {command}" if setting is None else f"unset {setting.split('=', 1)[0]} and run {command}"
    return (f"{head}. Either, with network access, {online}; or, offline from a checkout, write tiny random "
            f"weights (every stage runs, the audio is noise) with `python -m fixtures.weights DIR` and run "
            f"with `{WEIGHTS_ENV}=DIR`")


def load_manifest(path: Path | None = None, *, hf_endpoint: str | None = None) -> dict[str, Asset]:
    """Read and validate a weights manifest.

    Args:
        path: the TOML file; defaults to ``<repo root>/weights/manifest.toml``.
        hf_endpoint: base URL for Hugging Face downloads; defaults to ``$HF_ENDPOINT`` or
            ``https://huggingface.co``. Files are fetched from
            ``{hf_endpoint}/{repo}/resolve/{revision}/{filename}``.

    Returns:
        Assets by name, in manifest order.

    Raises:
        WeightsError: the file is missing or unreadable, or an entry is invalid (unknown kind or
            key, missing field, malformed hash, size, URL or path, conflicting destinations).
    """
    path = DEFAULT_MANIFEST_PATH if path is None else Path(path)
    endpoint = _endpoint(hf_endpoint)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise WeightsError(f"weights manifest not found: {path}") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise WeightsError(f"weights manifest {path} cannot be read: {exc}") from exc

    unknown = set(data) - {"assets"}
    if unknown:
        raise WeightsError(f"weights manifest {path}: unknown top-level keys {sorted(unknown)}")
    tables = data.get("assets")
    if not isinstance(tables, dict) or not tables:
        raise WeightsError(f"weights manifest {path} has no [assets.<name>] tables")

    assets: dict[str, Asset] = {}
    for name, table in tables.items():
        try:
            assets[name] = _parse_asset(name, table, endpoint)
        except WeightsError as exc:
            raise WeightsError(f"weights manifest {path}: {exc}") from None
    _check_destinations(assets.values(), path)
    return assets


def resolve_assets(names: Iterable[str], manifest: Mapping[str, Asset]) -> list[Asset]:
    """Look names up, keeping their order and dropping repeats.

    Raises:
        WeightsError: a name is not registered; the message lists the known names.
    """
    chosen: list[Asset] = []
    for name in dict.fromkeys(names):
        asset = manifest.get(name)
        if asset is None:
            known = ", ".join(manifest) or "(none)"
            raise WeightsError(f"unknown weights asset {name!r}; known assets: {known}")
        chosen.append(asset)
    return chosen


def asset_path(name: str, root: Path | None = None, *, manifest: Mapping[str, Asset] | None = None) -> Path:
    """Where asset ``name`` lives on disk (whether or not it has been downloaded).

    Args:
        name: registry key, e.g. ``"musicgen-melody"``.
        root: weights root; defaults to :func:`weights_root`.
        manifest: registry to use; defaults to the shipped manifest.

    Raises:
        WeightsError: unknown name (the message lists the known ones) or invalid manifest.
    """
    registry = load_manifest() if manifest is None else manifest
    (asset,) = resolve_assets([name], registry)
    return asset.path(weights_root() if root is None else root)


def hf_file_url(endpoint: str, repo: str, revision: str, filename: str) -> str:
    """The Hugging Face download URL of ``filename`` in ``repo`` at ``revision``."""
    return f"{endpoint.rstrip('/')}/{repo}/resolve/{quote(revision, safe='')}/{quote(filename, safe='/')}"


def _endpoint(hf_endpoint: str | None) -> str:
    endpoint = hf_endpoint or os.environ.get(HF_ENDPOINT_ENV) or DEFAULT_HF_ENDPOINT
    _check_url(endpoint, "hf_endpoint")
    return endpoint.rstrip("/")


def _parse_asset(name: Any, table: Any, endpoint: str) -> Asset:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise WeightsError(f"asset name {name!r} must match {_NAME_RE.pattern}")
    if not isinstance(table, dict):
        raise WeightsError(f"[assets.{name}] must be a table")
    unknown = set(table) - _ASSET_KEYS
    if unknown:
        raise WeightsError(f"[assets.{name}] has unknown keys {sorted(unknown)}")

    kind = table.get("kind")
    if kind not in KINDS:
        raise WeightsError(f"[assets.{name}] kind={kind!r} is not one of {', '.join(KINDS)}")
    licence = _text(table, "licence", name)
    description = _text(table, "description", name)

    has_hf, has_url = "hf" in table, "url" in table
    if has_hf == has_url:
        raise WeightsError(f'[assets.{name}] needs exactly one source: hf = "<repo>" or url = "..."')
    if kind in _HF_KINDS and not has_hf:
        raise WeightsError(f"[assets.{name}] kind {kind!r} is downloaded from the hub: use hf = ...")
    if kind in _URL_KINDS and not has_url:
        raise WeightsError(f"[assets.{name}] kind {kind!r} is downloaded from a URL: use url = ...")

    if has_hf:
        return _parse_hf_asset(name, cast(AssetKind, kind), table, licence, description, endpoint)
    return _parse_url_asset(name, cast(AssetKind, kind), table, licence, description)


def _parse_hf_asset(
    name: str, kind: AssetKind, table: dict[str, Any], licence: str, description: str, endpoint: str
) -> Asset:
    for key in ("size", "sha256"):
        if key in table:
            raise WeightsError(f"[assets.{name}] {key} belongs to an entry of files = [...] for hf sources")
    repo = table["hf"]
    if not isinstance(repo, str) or not _REPO_RE.fullmatch(repo):
        raise WeightsError(f"[assets.{name}] hf={repo!r} is not a Hugging Face repo id")
    revision = table.get("revision")
    if not isinstance(revision, str) or not _REVISION_RE.fullmatch(revision) or ".." in revision:
        raise WeightsError(f'[assets.{name}] needs revision = "<commit sha or branch>", got {revision!r}')
    if kind == "t5" and not _COMMIT_RE.fullmatch(revision):
        raise WeightsError(
            f"[assets.{name}] revision={revision!r}: the Hugging Face cache layout needs a 40-hex commit sha"
        )
    entries = table.get("files")
    if not isinstance(entries, list) or not entries:
        raise WeightsError(f'[assets.{name}] needs files = ["<file>", ...]')

    if kind == "t5":
        cache = f"{HF_CACHE_SUBDIR}/models--{repo.replace('/', '--')}"
        base, hf_ref = f"{cache}/snapshots/{revision}", f"{cache}/refs/main"
    elif kind == "encodec":
        base, hf_ref = f"audiocraft/{name}", None
    else:
        base, hf_ref = repo, None

    files = []
    for entry in entries:
        filename, size, sha256, prefix = _parse_file_entry(name, entry)
        url = hf_file_url(endpoint, repo, revision, filename)
        files.append(AssetFile(filename, url, size, sha256, f"{base}/{filename}", prefix))
    _check_unique_files(name, files)
    required = _REQUIRED_FILES.get(kind, frozenset())
    missing = required - {f.filename for f in files}
    if missing:
        raise WeightsError(f"[assets.{name}] kind {kind!r} needs files {sorted(missing)}")

    entry_path = files[0].dest if kind == "mbd" and len(files) == 1 else base
    return Asset(
        name=name,
        kind=kind,
        files=tuple(files),
        licence=licence,
        description=description,
        source=f"hf:{repo}@{revision}",
        entry=entry_path,
        hf_repo=repo,
        revision=revision,
        hf_ref=hf_ref,
    )


def _parse_url_asset(
    name: str, kind: AssetKind, table: dict[str, Any], licence: str, description: str
) -> Asset:
    for key in ("revision", "files"):
        if key in table:
            raise WeightsError(f"[assets.{name}] {key} is only for hf sources")
    url = table["url"]
    _check_url(url, f"[assets.{name}] url")
    filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    _check_relative_path(name, filename)
    size = _size(table.get("size"), name)
    sha256 = _sha256(table.get("sha256"), name)
    prefix = _HASH_PREFIX_RE.search(filename)
    if prefix and sha256 is not None and not sha256.startswith(prefix.group(1)):
        raise WeightsError(
            f"[assets.{name}] sha256 {sha256} does not start with the hash prefix "
            f"{prefix.group(1)!r} in the file name {filename!r}"
        )
    base = f"{TORCH_HUB_SUBDIR}/checkpoints" if kind == "demucs" else "sakemin"
    dest = f"{base}/{filename}"
    return Asset(
        name=name,
        kind=kind,
        files=(AssetFile(filename, url, size, sha256, dest),),
        licence=licence,
        description=description,
        source=url,
        entry=dest,
    )


def _parse_file_entry(name: str, entry: Any) -> tuple[str, int | None, str | None, str | None]:
    if isinstance(entry, str):
        _check_relative_path(name, entry)
        return entry, None, None, None
    if not isinstance(entry, dict):
        raise WeightsError(f"[assets.{name}] files entries must be names or {{ name = ... }} tables")
    unknown = set(entry) - _FILE_KEYS
    if unknown:
        raise WeightsError(f"[assets.{name}] a files entry has unknown keys {sorted(unknown)}")
    filename = entry.get("name")
    if not isinstance(filename, str):
        raise WeightsError(f'[assets.{name}] a files entry needs name = "<file>"')
    _check_relative_path(name, filename)
    sha256 = _sha256(entry.get("sha256"), name)
    prefix = entry.get("sha256_prefix")
    if prefix is not None:
        if not isinstance(prefix, str) or not _HASH_PREFIX_DIGITS_RE.fullmatch(prefix.lower()):
            raise WeightsError(f"[assets.{name}] sha256_prefix={prefix!r} must be 8 to 64 hex digits")
        prefix = prefix.lower()
        if sha256 is not None and not sha256.startswith(prefix):
            raise WeightsError(f"[assets.{name}] sha256 {sha256} does not start with sha256_prefix {prefix!r}")
    return filename, _size(entry.get("size"), name), sha256, prefix


def _text(table: dict[str, Any], key: str, name: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise WeightsError(f'[assets.{name}] needs a non-empty {key} = "..."')
    return value.strip()


def _size(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise WeightsError(f"[assets.{name}] size={value!r} must be a positive number of bytes")
    return value


def _sha256(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value.lower()):
        raise WeightsError(f"[assets.{name}] sha256={value!r} must be 64 hex digits")
    return value.lower()


def _check_url(url: Any, field: str) -> None:
    if not isinstance(url, str):
        raise WeightsError(f"{field}={url!r} must be a URL string")
    parts = urlsplit(url)
    if not parts.hostname:
        raise WeightsError(f"{field}={url!r} has no host")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        return
    raise WeightsError(f"{field}={url!r} must use https (plain http only on loopback)")


def _check_relative_path(name: str, filename: str) -> None:
    segments = filename.split("/")
    if not all(_SEGMENT_RE.fullmatch(s) for s in segments) or ".." in segments:
        raise WeightsError(f"[assets.{name}] file name {filename!r} is not a safe relative path")


def _check_unique_files(name: str, files: list[AssetFile]) -> None:
    seen: set[str] = set()
    for f in files:
        if f.filename in seen:
            raise WeightsError(f"[assets.{name}] lists {f.filename!r} twice")
        seen.add(f.filename)


def _check_destinations(assets: Iterable[Asset], path: Path) -> None:
    """Two assets may share a file on disk only if they describe the very same file."""
    owners: dict[str, tuple[str, AssetFile]] = {}
    for asset in assets:
        for f in asset.files:
            previous = owners.setdefault(f.dest, (asset.name, f))
            other_name, other = previous
            if other is not f and (other.url, other.size, other.sha256) != (f.url, f.size, f.sha256):
                raise WeightsError(
                    f"weights manifest {path}: assets {other_name!r} and {asset.name!r} both write "
                    f"{f.dest} but describe different files"
                )
