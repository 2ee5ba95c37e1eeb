"""Fetching a ``replicate_weights`` checkpoint: the one place a user-supplied URL is downloaded.

Only http(s) URLs; a size cap and connect/read timeouts; the file lands in a content-addressed cache
(named by its sha256) that keeps a bounded number of checkpoints. A ``.tar`` (as Replicate trainings
deliver weights) is accepted when it holds one checkpoint file; it is extracted by reading that
member only, never by ``extractall``. Loading it is :func:`musicgen_remix.models.loading.load_finetune`'s
job, which uses the safe allow-list.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import lzma
import os
import tarfile
import tempfile
import zlib
from pathlib import Path
from urllib.parse import urlsplit

from musicgen_remix.errors import InputError, WeightsError

logger = logging.getLogger(__name__)

FIELD = "replicate_weights"
MAX_BYTES = 16 * 1024**3  # the largest fine-tune (stereo-melody-large, fp32) is ~13 GB
KEEP = 3
CHECKPOINT_SUFFIXES = (".th", ".pt", ".pth", ".bin", ".ckpt")


def check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(FIELD, url, "an http(s) URL of a fine-tuned MusicGen checkpoint, or blank for the "
                                     "default weights")
    return url


def download_checkpoint(url: str, cache_dir: Path, *, max_bytes: int = MAX_BYTES,
                        timeout: tuple[float, float] = (10.0, 60.0), keep: int = KEEP) -> Path:
    """Download ``url`` into ``cache_dir/<sha256>.th`` and return that path."""
    import requests

    url = check_url(url)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with requests.get(url, stream=True, timeout=timeout, allow_redirects=True) as response:
                    if response.status_code != 200:
                        raise InputError(FIELD, url, f"a reachable URL (the server answered HTTP "
                                                     f"{response.status_code})")
                    declared = int(response.headers.get("Content-Length") or 0)
                    if declared > max_bytes:
                        raise InputError(FIELD, url, f"a checkpoint of at most {max_bytes} bytes "
                                                     f"(this one declares {declared})")
                    size = 0
                    for block in response.iter_content(chunk_size=1 << 20):
                        size += len(block)
                        if size > max_bytes:
                            raise InputError(FIELD, url, f"a checkpoint of at most {max_bytes} bytes")
                        digest.update(block)
                        out.write(block)
            except requests.RequestException as exc:
                raise InputError(FIELD, url, f"a reachable URL (download failed: {type(exc).__name__})") from None
        if size == 0:
            raise InputError(FIELD, url, "a non-empty checkpoint file")
        final = cache_dir / f"{digest.hexdigest()}.th"
        if tarfile.is_tarfile(tmp):
            try:
                _extract_single_checkpoint(tmp, final, url, max_bytes)
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
                # A truncated or corrupt archive is the caller's data, not a server fault.
                final.unlink(missing_ok=True)
                raise InputError(FIELD, url, f"a readable .tar weights archive ({type(exc).__name__}: "
                                             f"{str(exc)[:200]})") from None
            tmp.unlink()
        else:
            os.replace(tmp, final)
        os.utime(final)
        _prune(cache_dir, keep)
        logger.info("replicate_weights %s -> %s (%d bytes)", url, final.name[:16], final.stat().st_size)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def _extract_single_checkpoint(archive: Path, dest: Path, url: str, max_bytes: int) -> None:
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(CHECKPOINT_SUFFIXES)]
        if len(members) != 1:
            raise WeightsError(f"{url}: a weights archive must hold exactly one checkpoint file "
                               f"({', '.join(CHECKPOINT_SUFFIXES)}), found {len(members)}")
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
