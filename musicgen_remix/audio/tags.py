"""Provenance tags written into every audio file the project makes, so a take can be reproduced.

A :class:`Provenance` (prompt, seed, model, package version, and the inputs that shaped the take) becomes
the tags of each format: a WAV's ``LIST/INFO`` chunk and a FLAC's Vorbis comments (written by libsndfile:
``title``, ``software``, ``comment``), and an MP3's ID3v2.4 tag (``TIT2``, ``TSSE``, ``COMM``), built here
because the MP3 encoder writes none. The comment holds the whole provenance as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
        record = {"software": SOFTWARE, "entrypoint": self.entrypoint, "prompt": self.prompt, "seed": self.seed,
                  "model": self.model, "inputs": dict(self.inputs)}
        return {"title": self.prompt or f"musicgen-remix {self.entrypoint}", "software": SOFTWARE,
                "comment": json.dumps(record, ensure_ascii=False, sort_keys=True, default=str)}


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
