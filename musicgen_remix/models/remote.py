"""Fetching a ``replicate_weights`` checkpoint: the one place a user-supplied URL is downloaded.

Only http(s) URLs, and only hosts the address guard permits (:mod:`musicgen_remix.weights.guard`: no
loopback, private, link-local or other internal address unless ``MUSICGEN_REMIX_ALLOWED_HOSTS`` lists it,
checked on every connection, redirects included; one error for every refusal). The transfer is the download
core's (:mod:`musicgen_remix.weights.download`): a size cap (``MUSICGEN_REMIX_MAX_WEIGHTS_BYTES`` overrides
the default), connect/read timeouts, a total deadline and a stall rule (``MUSICGEN_REMIX_DOWNLOAD_*``) that
also end a peer trickling its bytes. What the URL gets wrong is an :class:`InputError` naming
``replicate_weights`` and the URL as given, never a local path. A ``COG_WEIGHTS`` URL comes through here
too, as trusted deployment configuration (no address guard). The file lands in a content-addressed cache
(named by its sha256) that keeps a bounded number of checkpoints. A :class:`UrlMemo` remembers, per URL,
the server's validators (``ETag``, ``Last-Modified``, ``Content-Length``) and the cached file they gave,
so a repeated URL is asked with a conditional GET and an unchanged checkpoint is not downloaded again. A
``.tar`` (as Replicate trainings deliver weights) is accepted when it holds one checkpoint file; it is
extracted by reading that member only, never by ``extractall``. Loading it is
:func:`musicgen_remix.models.loading.load_finetune`'s job, which uses the safe allow-list.
"""

from __future__ import annotations

import gzip
import logging
import lzma
import os
import tarfile
import tempfile
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from musicgen_remix.errors import InputError, WeightsError
from musicgen_remix.weights.download import (
    DownloadTooLarge,
    DownloadTooSlow,
    Limits,
    Streamed,
    commit,
    new_session,
    stream_into,
    watched,
)
from musicgen_remix.weights.guard import ALLOWED_HOSTS_ENV, AddressGuard, AddressNotAllowed

logger = logging.getLogger(__name__)

FIELD = "replicate_weights"
MAX_BYTES = 16 * 1024**3  # the largest fine-tune (stereo-melody-large, fp32) is ~13 GB
MAX_BYTES_ENV = "MUSICGEN_REMIX_MAX_WEIGHTS_BYTES"
KEEP = 3
MEMO_ENTRIES = 32
CHECKPOINT_SUFFIXES = (".th", ".pt", ".pth", ".bin", ".ckpt")


def max_weights_bytes() -> int:
    """The download size cap: ``MUSICGEN_REMIX_MAX_WEIGHTS_BYTES`` when set, else :data:`MAX_BYTES`."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise WeightsError(f"{MAX_BYTES_ENV}={text!r} is not a positive whole number of bytes")
    return value


@dataclass(frozen=True)
class Validators:
    """What an HTTP server says identifies the version of a resource it served."""

    etag: str | None = None
    last_modified: str | None = None
    content_length: int | None = None

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Validators:
        length = headers.get("Content-Length")
        return cls(etag=headers.get("ETag") or None, last_modified=headers.get("Last-Modified") or None,
                   content_length=int(length) if length and length.isdigit() else None)

    @property
    def usable(self) -> bool:
        """A weak ETag (``W/``) may stay the same across byte changes: only strong ones count."""
        return self.strong_etag is not None or self.last_modified is not None

    @property
    def strong_etag(self) -> str | None:
        return self.etag if self.etag and not self.etag.startswith("W/") else None

    def conditional_headers(self) -> dict[str, str]:
        if self.strong_etag is not None:
            return {"If-None-Match": self.strong_etag}
        if self.last_modified is not None:
            return {"If-Modified-Since": self.last_modified}
        return {}

    def same_version(self, other: Validators) -> bool:
        """True when a full answer (a server that ignores conditional requests) is the remembered version."""
        if self.strong_etag is None or other.strong_etag != self.strong_etag:
            return False
        return None in (self.content_length, other.content_length) or self.content_length == other.content_length


class UrlMemo:
    """URL -> (validators, cached checkpoint name): a bounded LRU kept by whoever downloads repeatedly.

    Entries only point into the content-addressed cache; one whose file was pruned is forgotten on lookup.
    """

    def __init__(self, max_entries: int = MEMO_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Validators, str]] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, url: str, cache_dir: Path) -> tuple[Validators, Path] | None:
        with self._lock:
            entry = self._entries.get(url)
            if entry is None:
                return None
            validators, name = entry
            path = cache_dir / name
            if not path.is_file():
                del self._entries[url]
                return None
            self._entries.move_to_end(url)
            return validators, path

    def remember(self, url: str, validators: Validators, path: Path) -> None:
        with self._lock:
            if not validators.usable:
                self._entries.pop(url, None)
                return
            self._entries[url] = (validators, path.name)
            self._entries.move_to_end(url)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, url: str) -> None:
        with self._lock:
            self._entries.pop(url, None)

    def __len__(self) -> int:
        return len(self._entries)


def check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(FIELD, url, "an http(s) URL of a fine-tuned MusicGen checkpoint, or blank for the "
                                     "default weights")
    return url


NOT_ALLOWED = (f"a URL on an allowed host (this URL, or a redirect from it, is not an allowed host: loopback, "
               f"private, link-local, multicast and reserved addresses, and names that do not resolve, are refused "
               f"unless the server lists them in {ALLOWED_HOSTS_ENV})")
"""What a refused host is told: the same words whatever the rule, and whether or not anything listens there."""


def download_checkpoint(url: str, cache_dir: Path, *, max_bytes: int | None = None,
                        timeout: tuple[float, float] = (10.0, 60.0), keep: int = KEEP,
                        memo: UrlMemo | None = None, trusted: bool = False) -> Path:
    """Download ``url`` into ``cache_dir/<sha256>.th`` and return that path.

    Args:
        max_bytes: size cap; defaults to :func:`max_weights_bytes`.
        timeout: (connect, read) timeouts per socket operation; the whole transfer is also bounded by the
            deadline and stall rule of :mod:`musicgen_remix.weights.download` (``MUSICGEN_REMIX_DOWNLOAD_*``).
        memo: when given, a URL it remembers is asked with a conditional GET, and an answer that the
            content is unchanged (304, or the same strong ETag) reuses the cached file without a download.
        trusted: the URL is deployment configuration (``COG_WEIGHTS``): no address guard. Otherwise only
            hosts :class:`~musicgen_remix.weights.guard.AddressGuard` permits are connected to.

    Raises:
        InputError: naming ``replicate_weights`` and the URL as given: not http(s), not an allowed host,
            unreachable, an HTTP error, too slow, too large, empty or an unusable archive.
    """
    url = check_url(url)
    max_bytes = max_weights_bytes() if max_bytes is None else max_bytes
    limits = Limits.from_env()
    address_guard = None if trusted else AddressGuard.from_env()
    cache_dir.mkdir(parents=True, exist_ok=True)
    known = memo.lookup(url, cache_dir) if memo is not None else None
    headers = known[0].conditional_headers() if known is not None else {}
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with new_session(address_guard) as session:
            try:
                with watched(limits) as watch, session.get(url, stream=True, timeout=timeout, headers=headers,
                                                           allow_redirects=True) as response:
                    served = Validators.of(response.headers)
                    if known is not None and (response.status_code == 304 or (
                            response.status_code == 200 and known[0].same_version(served))):
                        path = known[1]
                        os.utime(path)  # most recently used: the last to be pruned
                        logger.info("replicate_weights %s unchanged (HTTP %d): reusing %s", url,
                                    response.status_code, path.name[:16])
                        return path
                    if response.status_code != 200:
                        raise InputError(FIELD, url, f"a reachable URL (the server answered HTTP "
                                                     f"{response.status_code})")
                    declared = served.content_length
                    if declared is not None and declared > max_bytes:
                        raise InputError(FIELD, url, f"a checkpoint of at most {max_bytes} bytes (this one "
                                                     f"declares {declared})")
                    watch.expect(declared if declared is not None else max_bytes)
                    streamed = stream_into(response, tmp, watch, max_bytes=max_bytes)
            except AddressNotAllowed:
                raise InputError(FIELD, url, NOT_ALLOWED) from None
            except DownloadTooSlow as exc:
                raise InputError(FIELD, url, f"a URL that delivers the checkpoint in time (the download {exc})"
                                 ) from None
            except DownloadTooLarge:
                raise InputError(FIELD, url, f"a checkpoint of at most {max_bytes} bytes") from None
            except requests.RequestException as exc:
                raise InputError(FIELD, url, f"a reachable URL (download failed: {type(exc).__name__})") from None
            except OSError as exc:
                # A local failure (disk full): the server's fault, reported without the temporary path.
                raise WeightsError(f"could not store the replicate_weights download: {exc.strerror}") from None
        final = _store(tmp, streamed, url, cache_dir, max_bytes)
    except InputError:
        if memo is not None:
            memo.forget(url)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    _prune(cache_dir, keep)
    if memo is not None:
        memo.remember(url, served, final)
    logger.info("replicate_weights %s -> %s (%d bytes)", url, final.name[:16], final.stat().st_size)
    return final


def _store(tmp: Path, streamed: Streamed, url: str, cache_dir: Path, max_bytes: int) -> Path:
    """Move a downloaded file to ``cache_dir/<sha256>.th`` (a tar's single checkpoint extracted)."""
    if streamed.size == 0:
        raise InputError(FIELD, url, "a non-empty checkpoint file")
    final = cache_dir / f"{streamed.sha256}.th"
    if tarfile.is_tarfile(tmp):
        try:
            _extract_single_checkpoint(tmp, final, url, max_bytes)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
            # A truncated or corrupt archive is the caller's data, not a server fault.
            final.unlink(missing_ok=True)
            raise InputError(FIELD, url, f"a readable .tar weights archive ({type(exc).__name__}: "
                                         f"{str(exc)[:200]})") from None
        except BaseException:
            final.unlink(missing_ok=True)
            raise
    else:
        commit(tmp, final)
    os.utime(final)
    return final


def _extract_single_checkpoint(archive: Path, dest: Path, url: str, max_bytes: int) -> None:
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(CHECKPOINT_SUFFIXES)]
        if len(members) != 1:
            raise InputError(FIELD, url, f"a weights archive holding exactly one checkpoint file "
                                         f"({', '.join(CHECKPOINT_SUFFIXES)}); found {len(members)}")
        if members[0].size > max_bytes:
            raise InputError(FIELD, url, f"a checkpoint of at most {max_bytes} bytes")
        source = tar.extractfile(members[0])
        assert source is not None  # a regular file member always has content
        with source, open(dest, "wb") as out:
            while block := source.read(1 << 20):
                out.write(block)


def _prune(cache_dir: Path, keep: int) -> None:
    files = sorted(cache_dir.glob("*.th"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)
        logger.info("removed cached replicate_weights %s", old.name[:16])
