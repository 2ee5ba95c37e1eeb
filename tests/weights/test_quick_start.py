"""The online quick start's first run without weights, as a user's process runs it: the generate service
builds its store on an empty weights root, with downloads allowed (no ``MUSICGEN_REMIX_WEIGHTS``), and the
Hugging Face endpoint pointed at a local peer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fixtures.peers import FileServer
from musicgen_remix.weights import load_manifest

REPO = Path(__file__).resolve().parents[2]
_SERVICE = """
import sys
from pathlib import Path
from musicgen_remix.errors import WeightsError
from musicgen_remix.service import GenerateService
try:
    GenerateService(root=Path(sys.argv[1]), device="cpu")
except WeightsError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.fixture
def hub() -> Iterator[FileServer]:
    """Serves every hub file the first run needs, as wrong bytes: nothing may get further than asking for one."""
    with FileServer() as peer:
        registry = load_manifest(hf_endpoint=peer.base)
        for name in ("musicgen-melody", "t5-base", "encodec-32khz"):
            for file in registry[name].files:
                peer.add(urlsplit(file.url).path, b"not a checkpoint")
        yield peer


def _first_run(root: Path, hub: FileServer, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("MUSICGEN_REMIX_WEIGHTS", "MUSICGEN_REMIX_OFFLINE", "HF_HUB_OFFLINE")}
    environ.update(HF_ENDPOINT=hub.base, OMP_NUM_THREADS="1", **env)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _SERVICE, str(root)], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - start


def _gets(hub: FileServer) -> dict[str, int]:
    """Whole-body GETs per path asked for."""
    return {path: hub.gets(path)[0] for path in set(hub.hits) if hub.gets(path)[0]}


def test_hf_hub_offline_is_honoured_by_the_first_run(tmp_path: Path, hub: FileServer) -> None:
    """No connection at all, one message with every missing asset and both ways forward; an empty model
    directory (what an earlier failed run may leave) is not taken for the model."""
    root = tmp_path / "weights"
    (root / "facebook" / "musicgen-melody").mkdir(parents=True)
    done, _ = _first_run(root, hub, HF_HUB_OFFLINE="1")
    assert done.returncode == 3, done.stderr
    assert hub.requests == []  # not even a HEAD
    message = done.stdout.strip()
    assert len(message.splitlines()) == 1
    assert ("weights 'musicgen-melody', 't5-base', 'htdemucs', 'encodec-32khz' are not under "
            f"{root}, and HF_HUB_OFFLINE=1 is set") in message
    assert ("unset HF_HUB_OFFLINE and run `python -m musicgen_remix weights fetch musicgen-melody t5-base htdemucs "
            "encodec-32khz`") in message
    assert "`python -m fixtures.weights DIR`" in message and "`MUSICGEN_REMIX_WEIGHTS=DIR`" in message


def test_without_offline_settings_the_first_run_downloads(tmp_path: Path, hub: FileServer) -> None:
    """The service sets HF_HUB_OFFLINE=1 for the hub libraries before its store fetches: that must not stop
    the quick start's download."""
    done, _ = _first_run(tmp_path / "weights", hub)
    assert done.returncode == 3, done.stderr
    melody = urlsplit(load_manifest(hf_endpoint=hub.base)["musicgen-melody"].files[0].url).path
    assert _gets(hub) == {melody: 1}
    assert "state_dict.bin" in done.stdout and "mismatch" in done.stdout
