"""Download registry assets: resumable, verified and atomic.

Every file is streamed into ``<dest>.part`` beside its destination; an interrupted download is
continued with an HTTP ``Range`` request on the next attempt (within the same call, up to
``retries`` times, or on a later call). The size and SHA-256 from the manifest are checked before
``os.replace`` moves the file into place, so a destination file is always complete. The measured
hash is recorded in a ``<dest>.sha256`` sidecar (``sha256sum`` format); a later call trusts a
sidecar that is newer than its file and matches the manifest instead of re-hashing gigabytes.
Hugging Face files come from ``{endpoint}/{repo}/resolve/{revision}/{file}`` through the same code
path as direct URLs. Concurrent fetches into one root are serialised by a lock file.

The transfer itself is :mod:`musicgen_remix.weights.download`'s (the download core shared with
``replicate_weights``): every attempt is bounded by a total deadline derived from the bytes still
expected and by a stall rule (``MUSICGEN_REMIX_DOWNLOAD_*``); hitting either is retried like a dropped
connection, resuming the ``.part``. A host that cannot be reached at all (its name does not resolve, it
refuses the connection, connecting times out) is not retried: seconds later it would fail the same way.
The manifest is deployment configuration, so its URLs are trusted: no address guard applies (a weights
mirror on an internal host is fine), and the environment's proxies are honoured.

With ``HF_HUB_OFFLINE=1`` (as the process was started) or ``MUSICGEN_REMIX_OFFLINE=1`` nothing is downloaded
and no connection is made: a file that is not already present and verified is an error at once. Every
failure to obtain assets is one :class:`WeightsError` naming what failed, the assets still missing and the
two ways forward (:func:`~musicgen_remix.weights.manifest.missing_weights_message`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import requests
from tqdm import tqdm

from musicgen_remix.errors import WeightsError
from musicgen_remix.weights.download import (
    DownloadTooLarge,
    DownloadTooSlow,
    commit,
    new_session,
    stream_into,
    unreachable,
    watched,
)
from musicgen_remix.weights.manifest import (
    Asset,
    AssetFile,
    AssetKind,
    load_manifest,
    missing_weights_message,
    offline_setting,
    resolve_assets,
    weights_root,
)

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int | None], None]
"""``progress(label, bytes_done, bytes_total)``; total is None when unknown."""

DEFAULT_ASSETS: tuple[str, ...] = ("musicgen-melody", "encodec-32khz", "t5-base", "htdemucs", "mbd")
"""What ``weights fetch`` downloads when no name is given: enough to serve the melody remix."""

CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0
RETRIES = 3
RETRY_WAIT_S = 2.0
PART_SUFFIX = ".part"
SIDECAR_SUFFIX = ".sha256"
LOCK_NAME = ".fetch.lock"
_USER_AGENT = "musicgen-remix-weights/1"
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE_RE = re.compile(r"bytes \*/(\d+)")

AssetState = Literal["verified", "present", "partial", "missing"]


@dataclass(frozen=True)
class AssetRow:
    """One line of ``weights list``.

    Attributes:
        name, kind, licence, description: from the manifest.
        size: total bytes when the manifest knows every file's size, else None.
        pinned: the source is a commit revision or every file has a sha256.
        state: ``verified`` (every file present and verified), ``present`` (every file present,
            some not verified yet), ``partial`` (some bytes on disk) or ``missing``.
        path: where the asset lives (see ``asset_path``).
    """

    name: str
    kind: AssetKind
    licence: str
    size: int | None
    pinned: bool
    state: AssetState
    path: Path
    description: str


class _Retryable(Exception):
    """A transfer failed in a way another attempt may fix (dropped connection, 5xx, truncated body)."""


class _Unreachable(Exception):
    """No connection to the host could be made at all; another attempt seconds later would fail the same way."""


class _NotFetched(Exception):
    """A file could not be obtained; the message says why. :func:`fetch` reports it with every asset still missing."""


def fetch(
    names: Sequence[str] | None,
    root: Path | None = None,
    *,
    progress: ProgressCallback | None = None,
    manifest: Mapping[str, Asset] | None = None,
    retries: int = RETRIES,
    retry_wait_s: float = RETRY_WAIT_S,
    timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
    session: requests.Session | None = None,
) -> list[Path]:
    """Download and verify assets, skipping files already present and verified.

    Args:
        names: asset names; None means :data:`DEFAULT_ASSETS`.
        root: weights root; defaults to :func:`weights_root`.
        progress: called while bytes arrive (e.g. :class:`TqdmProgress`, :class:`LogProgress`).
        manifest: registry to use; defaults to the shipped ``weights/manifest.toml``.
        retries: further attempts per file after a network error, each resuming the ``.part``.
        retry_wait_s: pause before the first retry, doubled for each later one.
        timeout: (connect, read) timeouts in seconds for each request.
        session: HTTP session to use (one is created and closed otherwise).

    Returns:
        One path per asset, in order: where its loader finds it (see ``asset_path``).

    Raises:
        WeightsError: unknown asset name (listing the known ones), HTTP error (naming the URL),
            size or SHA-256 mismatch (naming the file, expected and got; nothing is left at the
            destination); or a file that is not present while downloads are off (``HF_HUB_OFFLINE=1``,
            ``MUSICGEN_REMIX_OFFLINE=1``), whose host cannot be reached, or whose transfer still failed
            after ``retries`` (a ``.part`` that holds bytes stays for the next call to resume): then the
            message also names every asset still missing and the ways forward.
    """
    registry = load_manifest() if manifest is None else manifest
    assets = resolve_assets(DEFAULT_ASSETS if names is None else names, registry)
    root = weights_root() if root is None else Path(root)
    offline = offline_setting()
    root.mkdir(parents=True, exist_ok=True)
    own_session = session is None
    http = _new_session() if session is None else session
    try:
        with _root_lock(root):
            paths = []
            for asset in assets:
                try:
                    for file in asset.files:
                        _fetch_file(http, asset, file, root, progress, retries, retry_wait_s, timeout, offline)
                except _NotFetched as exc:
                    missing = [a.name for a in assets if not a.present(root)]
                    raise WeightsError(missing_weights_message(missing, root, str(exc))) from exc.__cause__
                if asset.hf_ref is not None and asset.revision is not None:
                    _write_text_atomic(root.joinpath(*asset.hf_ref.split("/")), asset.revision)
                logger.info("weights asset %s ready at %s", asset.name, asset.path(root))
                paths.append(asset.path(root))
            return paths
    finally:
        if own_session:
            http.close()


def list_assets(root: Path | None = None, *, manifest: Mapping[str, Asset] | None = None) -> list[AssetRow]:
    """Describe every registered asset and what of it is on disk (no hashing, no network)."""
    registry = load_manifest() if manifest is None else manifest
    root = weights_root() if root is None else Path(root)
    return [
        AssetRow(
            name=asset.name,
            kind=asset.kind,
            licence=asset.licence,
            size=asset.total_size,
            pinned=asset.pinned,
            state=_asset_state(asset, root),
            path=asset.path(root),
            description=asset.description,
        )
        for asset in registry.values()
    ]


def main_weights_fetch(argv_names: list[str], root: Path | None) -> int:
    """Entry point of ``python -m musicgen_remix weights fetch [NAME...]``.

    Args:
        argv_names: asset names from the command line; empty means :data:`DEFAULT_ASSETS`
            (the caller expands ``--all`` into every registered name).
        root: weights root from the command line, or None for :func:`weights_root`.

    Returns:
        Process exit status: 0 when every asset is present and verified, 1 otherwise (the reason
        is logged).
    """
    bars = TqdmProgress()
    try:
        paths = fetch(argv_names or None, root, progress=bars)
    except WeightsError as exc:
        logger.error("weights fetch failed: %s", exc)
        return 1
    finally:
        bars.close()
    for path in paths:
        logger.info("ready: %s", path)
    return 0


class TqdmProgress:
    """Progress callback drawing one tqdm bar per file, for the command line."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm] = {}

    def __call__(self, label: str, done: int, total: int | None) -> None:
        bar = self._bars.get(label)
        if bar is None:
            bar = tqdm(total=total, initial=done, desc=label, unit="B", unit_scale=True, unit_divisor=1024)
            self._bars[label] = bar
        else:
            bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    def close(self) -> None:
        """Close every bar still open (after an error)."""
        for bar in self._bars.values():
            bar.close()


class LogProgress:
    """Progress callback writing a log line per ``step`` fraction of each file, for servers."""

    def __init__(self, step: float = 0.1, log: logging.Logger = logger) -> None:
        self._step = step
        self._log = log
        self._next: dict[str, float] = {}

    def __call__(self, label: str, done: int, total: int | None) -> None:
        if not total:
            return
        fraction = done / total
        if fraction >= self._next.get(label, 0.0):
            self._log.info("downloading %s: %.0f%% of %.1f MB", label, 100 * fraction, total / 1e6)
            self._next[label] = fraction + self._step


def _fetch_file(
    http: requests.Session,
    asset: Asset,
    file: AssetFile,
    root: Path,
    progress: ProgressCallback | None,
    retries: int,
    retry_wait_s: float,
    timeout: tuple[float, float],
    offline: str | None,
) -> None:
    """Make ``file`` present and verified under ``root``, downloading it unless ``offline`` names a setting.

    Raises:
        _NotFetched: downloads are off, the host cannot be reached, or every attempt failed.
        WeightsError: the server or the bytes are wrong (HTTP error, size or hash mismatch).
    """
    dest = file.path(root)
    if _present_and_verified(dest, file):
        logger.debug("%s already present and verified", dest)
        return
    if offline is not None:
        raise _NotFetched(f"{offline} is set, so nothing was downloaded (no connection was tried)")
    part = _with_suffix(dest, PART_SUFFIX)
    label = f"{asset.name}/{file.filename}"
    attempt = 0
    while True:
        try:
            digest = _download(http, file, part, label, progress, timeout)
            break
        except _Unreachable as exc:
            raise _NotFetched(f"downloading {file.url} failed: {exc}{_kept(part)}") from exc
        except _Retryable as exc:
            if attempt >= retries:
                raise _NotFetched(
                    f"downloading {file.url} failed after {attempt + 1} attempt(s): {exc}{_kept(part)}"
                ) from exc
            wait = retry_wait_s * 2**attempt
            attempt += 1
            logger.warning("downloading %s: %s; retry %d/%d in %.0f s", label, exc, attempt, retries, wait)
            time.sleep(wait)
    _check_download(part, file, digest)
    commit(part, dest)
    _write_sidecar(dest, digest)
    if file.sha256 is None:
        logger.warning(
            "%s has no full sha256 in the manifest; recorded the downloaded file's sha256 %s", label, digest
        )


def _download(
    http: requests.Session,
    file: AssetFile,
    part: Path,
    label: str,
    progress: ProgressCallback | None,
    timeout: tuple[float, float],
) -> str:
    """Stream ``file.url`` into ``part`` (resuming it), returning the SHA-256 of the whole file.

    The transfer runs under the download core's deadline and stall rule (``MUSICGEN_REMIX_DOWNLOAD_*``);
    either ending it is retryable, and the ``.part`` keeps what arrived.
    """
    offset = part.stat().st_size if part.exists() else 0
    if file.size is not None and offset > file.size:
        part.unlink()
        offset = 0
    # Hashed before the request: gigabytes of local reading must not count against the stall rule.
    resumed = _hash_file(part) if offset else None
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with watched() as watch, http.get(file.url, headers=headers, stream=True, timeout=timeout) as resp:
            if resp.status_code == 416 and offset and resumed is not None:
                return _finish_unsatisfied_range(resp, file, part, offset, resumed)
            if resp.status_code >= 500 or resp.status_code == 429:
                raise _Retryable(f"HTTP {resp.status_code} {resp.reason}")
            if resp.status_code not in (200, 206):
                raise WeightsError(
                    f"cannot download {file.filename}: HTTP {resp.status_code} {resp.reason} for {file.url}"
                )
            offset, total = _start(resp, file, part, offset)
            part.parent.mkdir(parents=True, exist_ok=True)  # only now: a failed first try leaves no directory
            whole = total if total is not None else file.size
            watch.expect(None if whole is None else whole - offset)
            if progress is not None:
                progress(label, offset, total)
            streamed = stream_into(
                resp,
                part,
                watch,
                offset=offset,
                hasher=resumed if offset else None,
                max_bytes=file.size,
                on_bytes=None if progress is None else lambda done: progress(label, done, total),
            )
    except DownloadTooLarge as exc:
        _discard(part)
        raise _size_error(file, f"more than {file.size}") from exc
    except DownloadTooSlow as exc:
        raise _Retryable(str(exc)) from exc
    except requests.exceptions.InvalidURL as exc:
        raise WeightsError(f"cannot download {file.filename}: invalid URL {file.url}") from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        why = unreachable(exc)
        if why is not None:
            raise _Unreachable(f"{urlsplit(file.url).hostname} could not be reached: {why}") from exc
        raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
    except requests.exceptions.ChunkedEncodingError as exc:
        raise _Retryable(f"connection broken: {exc}") from exc
    except requests.exceptions.RequestException as exc:
        raise WeightsError(f"cannot download {file.filename} from {file.url}: {exc}") from exc
    except OSError as exc:
        raise WeightsError(f"cannot write {part}: {exc}") from exc
    if total is not None and streamed.size != total:
        raise _Retryable(f"connection closed after {streamed.size} of {total} bytes")
    return streamed.sha256


def _start(resp: requests.Response, file: AssetFile, part: Path, offset: int) -> tuple[int, int | None]:
    """Decide where the body starts and how long the whole file is; check it against the manifest."""
    if resp.status_code == 206:
        match = _CONTENT_RANGE_RE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != offset:
            _discard(part)
            raise _Retryable(
                f"server answered Range bytes={offset}- with Content-Range "
                f"{resp.headers.get('Content-Range')!r}; starting over"
            )
        total = None if match.group(3) == "*" else int(match.group(3))
    else:
        if offset:
            logger.info("%s: server ignored the Range request; downloading from the start", file.url)
        offset = 0
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    if file.size is not None and total is not None and total != file.size:
        _discard(part)
        raise _size_error(file, str(total))
    return offset, total


def _finish_unsatisfied_range(
    resp: requests.Response, file: AssetFile, part: Path, offset: int, resumed: hashlib._Hash
) -> str:
    """HTTP 416 after a Range request: the ``.part`` (hashed as ``resumed``) is complete if it has the full length."""
    match = _UNSATISFIED_RANGE_RE.fullmatch(resp.headers.get("Content-Range", "").strip())
    total = int(match.group(1)) if match else file.size
    if total is not None and total == offset:
        return resumed.hexdigest()
    _discard(part)
    raise _Retryable(f"server rejected Range bytes={offset}- (HTTP 416); starting over")


def _check_download(part: Path, file: AssetFile, digest: str) -> None:
    size = part.stat().st_size
    if file.size is not None and size != file.size:
        _discard(part)
        raise _size_error(file, str(size))
    if not file.accepts(digest):
        _discard(part)
        raise WeightsError(
            f"sha256 mismatch for {file.filename} from {file.url}: expected {file.expected_hash}, "
            f"got {digest}; the download was deleted"
        )


def _present_and_verified(dest: Path, file: AssetFile) -> bool:
    """True if ``dest`` holds the right file; removes it (and its sidecar) if it is wrong."""
    if not dest.is_file():
        return False
    sidecar = _with_suffix(dest, SIDECAR_SUFFIX)
    if _sidecar_valid(dest, file):
        return True
    size = dest.stat().st_size
    if file.size is not None and size != file.size:
        logger.warning("%s has %d bytes, expected %d; downloading it again", dest, size, file.size)
    else:
        digest = _hash_file(dest).hexdigest()
        if file.accepts(digest):
            _write_sidecar(dest, digest)
            return True
        logger.warning("%s has sha256 %s, expected %s; downloading it again", dest, digest, file.expected_hash)
    dest.unlink()
    sidecar.unlink(missing_ok=True)
    return False


def _sidecar_valid(dest: Path, file: AssetFile) -> bool:
    """A sidecar counts if it is newer than the file and agrees with the manifest."""
    sidecar = _with_suffix(dest, SIDECAR_SUFFIX)
    try:
        recorded = sidecar.read_text(encoding="utf-8").split()[0]
        fresh = sidecar.stat().st_mtime_ns >= dest.stat().st_mtime_ns
        size = dest.stat().st_size
    except (OSError, IndexError):
        return False
    return (
        fresh
        and re.fullmatch(r"[0-9a-f]{64}", recorded) is not None
        and file.accepts(recorded)
        and (file.size is None or size == file.size)
    )


def _asset_state(asset: Asset, root: Path) -> AssetState:
    paths = [f.path(root) for f in asset.files]
    present = [p.is_file() for p in paths]
    if all(present):
        verified = all(_sidecar_valid(p, f) for p, f in zip(paths, asset.files, strict=True))
        return "verified" if verified else "present"
    if any(present) or any(_with_suffix(p, PART_SUFFIX).is_file() for p in paths):
        return "partial"
    return "missing"


def _kept(part: Path) -> str:
    """What a failed transfer left to resume, for its message; an empty ``.part`` is removed, not claimed."""
    try:
        kept = part.stat().st_size
    except OSError:
        return ""
    if not kept:
        _discard(part)
        return ""
    return f"; {kept} bytes are kept in {part} and the next fetch resumes from there"


def _size_error(file: AssetFile, got: str) -> WeightsError:
    return WeightsError(
        f"size mismatch for {file.filename} from {file.url}: expected {file.size} bytes, got {got}; "
        "the download was deleted"
    )


def _hash_file(path: Path) -> hashlib._Hash:
    """The sha256 of ``path`` so far (callers may keep feeding it, to resume a download)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256")


def _write_sidecar(dest: Path, digest: str) -> None:
    _write_text_atomic(_with_suffix(dest, SIDECAR_SUFFIX), f"{digest}  {dest.name}\n")


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _with_suffix(path, ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)


def _with_suffix(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _new_session() -> requests.Session:
    session = new_session()  # the manifest is deployment configuration: no address guard
    session.headers["User-Agent"] = _USER_AGENT
    return session


@contextmanager
def _root_lock(root: Path) -> Iterator[None]:
    """Serialise fetches into one root across processes (advisory ``flock``)."""
    with (root / LOCK_NAME).open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another weights fetch into %s to finish", root)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
