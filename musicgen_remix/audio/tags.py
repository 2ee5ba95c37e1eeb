"""Provenance tags written into every audio file the project makes, so a take can be reproduced.

A :class:`Provenance` (prompt, seed, model, package version, and the inputs that shaped the take) becomes
the tags of each format: a WAV's ``LIST/INFO`` chunk and a FLAC's Vorbis comments (written by libsndfile:
``title``, ``software``, ``comment``), and an MP3's ID3v2.4 tag (``TIT2``, ``TSSE``, ``COMM``), built here
because the MP3 encoder writes none. The comment holds the whole provenance as JSON. :func:`sync_tags` says
what a ``sync`` output is; :func:`read_tags` reads the tags back, so a re-encoded copy keeps them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from musicgen_remix import __version__

SOFTWARE = f"musicgen-remix {__version__}"


@dataclass(frozen=True)
class Provenance:
    """What made a take: enough to make it again."""

    entrypoint: str  # "generate" or "remix"
    prompt: str | None
    seed: int
    model: str
    inputs: Mapping[str, Any] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        """``title``, ``software`` and ``comment`` (the provenance as JSON)."""
        record = {"entrypoint": self.entrypoint, "prompt": self.prompt, "seed": self.seed, "model": self.model,
                  "inputs": dict(self.inputs)}
        return _tags(self.prompt or f"musicgen-remix {self.entrypoint}", record)


def sync_tags(reference: str, audio: str, threshold: float | None, threshold_s: float) -> dict[str, str]:
    """The tags of a ``sync`` output: which take was stretched onto which reference's downbeats, and how.

    Args:
        reference, audio: the two files' names (never a path).
        threshold: the threshold asked for (None: automatic); ``threshold_s`` the one used, in seconds.
    """
    record = {"entrypoint": "sync", "reference": reference, "audio": audio,
              "inputs": {"threshold": threshold}, "threshold_s": round(threshold_s, 4)}
    return _tags(f"{audio} synced to {reference}", record)


def _tags(title: str, record: Mapping[str, Any]) -> dict[str, str]:
    record = {"software": SOFTWARE, **record}
    return {"title": title, "software": SOFTWARE,
            "comment": json.dumps(record, ensure_ascii=False, sort_keys=True, default=str)}


def public_url(url: str) -> str:
    """``url`` as a record may keep it: no user name or password, no query or fragment (where signed URLs
    carry their credentials)."""
    parts = urlsplit(url.strip())
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def read_tags(path: Path) -> dict[str, str]:
    """The ``title``, ``software`` and ``comment`` tags of a WAV, FLAC or MP3 file (those present)."""
    import soundfile

    with soundfile.SoundFile(str(path)) as handle:
        tags = {key: value for key, value in handle.copy_metadata().items() if key in _TAGS}
    if "software" in tags:  # libsndfile appends its own name when it writes the field
        tags["software"] = _LIBSNDFILE_SUFFIX.sub("", tags["software"])
    return tags


_TAGS = ("title", "software", "comment")
_LIBSNDFILE_SUFFIX = re.compile(r" \(libsndfile-[^)]*\)$")


def id3v24(tags: Mapping[str, str]) -> bytes:
    """An ID3v2.4 tag (UTF-8 text frames) holding ``title``, ``software`` and ``comment``."""
    frames = b""
    if "title" in tags:
        frames += _frame(b"TIT2", b"\x03" + tags["title"].encode("utf-8"))
    if "software" in tags:
        frames += _frame(b"TSSE", b"\x03" + tags["software"].encode("utf-8"))
    if "comment" in tags:  # encoding, language, empty description (NUL), text
        frames += _frame(b"COMM", b"\x03" + b"eng" + b"\x00" + tags["comment"].encode("utf-8"))
    return b"ID3\x04\x00\x00" + _synchsafe(len(frames)) + frames


def _frame(frame_id: bytes, body: bytes) -> bytes:
    return frame_id + _synchsafe(len(body)) + b"\x00\x00" + body


def _synchsafe(size: int) -> bytes:
    """A 28-bit size in four 7-bit bytes, as ID3v2.4 writes sizes."""
    if not 0 <= size < 1 << 28:
        raise ValueError(f"an ID3 size must be below 2**28 bytes, got {size}")
    return bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
