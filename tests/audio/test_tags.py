"""Provenance tags: what goes into a record (never a credential), and reading the tags back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from musicgen_remix.audio import write_audio
from musicgen_remix.audio.tags import SOFTWARE, Provenance, public_url, read_tags, sync_tags


@pytest.mark.parametrize(("url", "kept"), [
    ("https://replicate.delivery/pbxt/abc/trained_model.tar", "https://replicate.delivery/pbxt/abc/trained_model.tar"),
    ("https://user:secret@example.com:8443/w/model.th", "https://example.com:8443/w/model.th"),
    ("https://bucket.s3.amazonaws.com/model.th?X-Amz-Signature=secret#frag", "https://bucket.s3.amazonaws.com/model.th"),
    ("  http://[::1]:8000/model.th  ", "http://[::1]:8000/model.th"),
])
def test_a_recorded_url_carries_no_credentials(url: str, kept: str) -> None:
    assert public_url(url) == kept


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_tags_read_back_as_written(tmp_path: Path, fmt: str) -> None:
    """What a re-encoded copy is written with: the same three tags (libsndfile's own name left out)."""
    tags = Provenance("remix", "dub ☃", 7, "chord", {"chords": "Am F"}).tags()
    path = write_audio(tmp_path / f"take.{fmt}", torch.zeros(1, 32000), 32000, fmt=fmt, tags=tags)
    assert read_tags(path) == tags


def test_sync_tags_say_which_take_went_onto_which_reference() -> None:
    tags = sync_tags("song.wav", "take.wav", None, 0.55)
    assert tags["title"] == "take.wav synced to song.wav" and tags["software"] == SOFTWARE
    assert json.loads(tags["comment"]) == {"software": SOFTWARE, "entrypoint": "sync", "reference": "song.wav",
                                           "audio": "take.wav", "inputs": {"threshold": None}, "threshold_s": 0.55}
