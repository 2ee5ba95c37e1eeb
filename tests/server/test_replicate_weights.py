"""``replicate_weights`` and ``COG_WEIGHTS`` over HTTP, against the real generate server (coglet).

The input is the one place a caller's URL is downloaded and loaded. Checked here: only http(s) URLs;
a checkpoint whose unpickling would run code (create a file) is refused without running it; wrong
formats, files over the size cap (``MUSICGEN_REMIX_MAX_WEIGHTS_BYTES``, set low for this module) and
unreachable URLs fail the prediction only; two fine-tunes served one after the other each give their
own output (the first again after the second); a blank value after a swap serves the default weights
again, byte for byte.

A repeated URL is not downloaded again while the server says it is unchanged (conditional GET on the
``ETag``/``Last-Modified`` it sent): the local file server counts full GETs and 304s. New content at the
same URL is downloaded and served. The content-addressed cache stays bounded.

``COG_WEIGHTS`` (how Replicate hands a trained version its fine-tune) is served as the default model, given
as a URL or as a local path; it is deployment configuration, so an internal host is fine for it.

127.0.0.1 is an internal address: the main server allows it (``MUSICGEN_REMIX_ALLOWED_HOSTS``) to reach the
local peers, and runs with a tight stall rule (``MUSICGEN_REMIX_DOWNLOAD_STALL_*``) that a trickling peer
hits within seconds. A second server, started without the allow-list, refuses every internal address with
one error, whether anything listens there or not, and never connects.

The server gets a private weights root (symlinks to the tiny weights) so that its download cache,
``<root>/.cache/replicate_weights``, is its own. It runs with a secret in its environment
(``MUSICGEN_TEST_SECRET``) that a caller's checkpoint config tries to read with ``${oc.env:...}``: refused
without being resolved, and the secret is in no response and no log line. A small file declaring a large
model is refused from its shapes before anything is built (no GBs allocated, in seconds).
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from fixtures.audio import decode_audio_uri
from fixtures.hostile import create_file, shell
from fixtures.peers import FileServer, SilentPort, TricklePeer
from fixtures.weights import finetune_path

if TYPE_CHECKING:
    from fixtures.cogserver import CogServer

    from .conftest import StartServer

pytestmark = [pytest.mark.server, pytest.mark.slow]  # each module starts real servers (8-15 s each)

SECRET = "s3cr3t-of-the-worker-0f9e2c"  # in the server's environment, as an API token would be
MAX_BYTES = 2_000_000  # above every tiny fine-tune (< 1 MB), far below a real one
STALL_S, STALL_BYTES = 2, 4096  # a local peer delivers a tiny fine-tune in milliseconds
KEEP = 3  # musicgen_remix.models.remote.KEEP
PROMPT = {"prompt": "calm piano", "duration": 1}


@pytest.fixture(scope="module")
def weights_root(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weights-root")
    for entry in tiny_weights.iterdir():
        if entry.name != ".cache":
            (root / entry.name).symlink_to(entry)
    return root


@pytest.fixture(scope="module")
def server(cog_servers: StartServer, weights_root: Path) -> CogServer:
    return cog_servers("generate", weights=weights_root,
                       env={"MUSICGEN_REMIX_MAX_WEIGHTS_BYTES": str(MAX_BYTES),
                            "MUSICGEN_REMIX_ALLOWED_HOSTS": "127.0.0.1",
                            "MUSICGEN_REMIX_DOWNLOAD_STALL_S": str(STALL_S),
                            "MUSICGEN_REMIX_DOWNLOAD_STALL_BYTES": str(STALL_BYTES),
                            "MUSICGEN_TEST_SECRET": SECRET})


@pytest.fixture(scope="module")
def guarded(cog_servers: StartServer) -> CogServer:
    """A server with the default address policy: no allow-list."""
    return cog_servers("generate", env={"MUSICGEN_REMIX_ALLOWED_HOSTS": ""})


@pytest.fixture(scope="module")
def cache_dir(weights_root: Path) -> Path:
    return weights_root / ".cache" / "replicate_weights"


def finetune(tiny_weights: Path, name: str) -> bytes:
    return finetune_path(tiny_weights, name).read_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def output(server: CogServer, seed: int, weights: str | None = None) -> str:
    inputs: dict[str, Any] = {**PROMPT, "seed": seed}
    if weights is not None:
        inputs["replicate_weights"] = weights
    body = server.predict(inputs).json()
    assert body["status"] == "succeeded", f"{body.get('error')}\n{body.get('logs')}"
    return body["output"]


def samples(uri: str) -> np.ndarray:
    return decode_audio_uri(uri)[0]


def failure(server: CogServer, weights: str) -> str:
    body = server.predict({**PROMPT, "seed": 1, "replicate_weights": weights}).json()
    assert body["status"] == "failed", body["status"]
    assert "InputError: replicate_weights=" in body["error"], body["error"]
    assert server.wait_status("READY") == "READY"
    return body["error"]


# ----------------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize("url", ["file:///etc/passwd", "/etc/passwd", "ftp://127.0.0.1/w.th", "gs://b/w.th"])
def test_only_http_urls(server: CogServer, url: str) -> None:
    assert "an http(s) URL" in failure(server, url)


@pytest.mark.parametrize("payload", [create_file, shell])
def test_checkpoint_that_would_create_a_file_is_refused(server: CogServer, files: FileServer, cache_dir: Path,
                                                        tmp_path: Path, payload: Callable[[Path], Any]) -> None:
    import torch

    marker = tmp_path / "created-by-unpickling"
    evil = tmp_path / "evil.th"
    torch.save({"xp.cfg": "{}", "model": payload(marker)}, evil)
    data = evil.read_bytes()
    error = failure(server, files.add(f"/evil-{payload.__name__}.th", data))
    assert "refused to load" in error and "nothing from the file was run" in error, error
    assert not marker.exists()
    assert not (cache_dir / f"{sha(data)}.th").exists()  # not kept for a later request


def test_wrong_formats_fail_cleanly(server: CogServer, files: FileServer, cache_dir: Path, tmp_path: Path) -> None:
    import torch

    text = files.add("/notes.th", b"these are not weights\n" * 100)
    assert "not a readable torch checkpoint" in failure(server, text)
    other = tmp_path / "other.th"
    torch.save({"state": torch.zeros(3)}, other)
    error = failure(server, files.add("/other.th", other.read_bytes()))
    assert "not a MusicGen fine-tune" in error, error
    leftovers = [p.name for p in cache_dir.glob("*")] if cache_dir.exists() else []
    assert sha(other.read_bytes()) + ".th" not in leftovers
    assert not [name for name in leftovers if name.endswith(".part")]


def test_oversized_file_fails_cleanly(server: CogServer, files: FileServer, cache_dir: Path) -> None:
    url = files.add("/huge.th", bytes(MAX_BYTES + 1))
    assert f"at most {MAX_BYTES} bytes" in failure(server, url)
    assert files.gets("/huge.th")[0] == 1  # asked once, refused on its declared length
    assert not cache_dir.exists() or not list(cache_dir.glob("*.part"))


def test_unreachable_url_fails_cleanly(server: CogServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    assert "download failed" in failure(server, f"http://127.0.0.1:{port}/weights.th")


def test_404_fails_cleanly(server: CogServer, files: FileServer) -> None:
    assert "HTTP 404" in failure(server, f"{files.base}/missing.th")


def test_trickling_peer_is_cut_off_and_the_slot_freed(server: CogServer, cache_dir: Path) -> None:
    """A byte every 50 ms: no read ever times out, the stall rule ends the download."""
    with TricklePeer(interval=0.05, length=MAX_BYTES // 2, max_s=60) as peer:
        start = time.monotonic()
        error = failure(server, peer.url("/slow.th"))
        elapsed = time.monotonic() - start
        trickle = peer.wait_hung_up()
    assert f"stalled: fewer than {STALL_BYTES} bytes arrived in {STALL_S} s" in error, error
    assert elapsed < STALL_S + 8, elapsed
    assert trickle.hung_up is not None and trickle.hung_up - trickle.started < STALL_S + 3
    assert not cache_dir.exists() or not list(cache_dir.glob("*.part"))
    assert str(cache_dir) not in error


# ----------------------------------------------------------------------------------------------------
# Untrusted configs and architectures (issue 11)


def edited_finetune(tiny_weights: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """A fixture fine-tune (a Hydra-composed config, as real ones carry) changed by ``edit``; the file's bytes.

    Read with a plain ``torch.load``: the file is the fixtures' own, and the expectation must not come from the
    loader under test."""
    import torch

    pkg = torch.load(finetune_path(tiny_weights, "melody-a"), map_location="cpu", weights_only=False)
    edit(pkg)
    path = tmp_path / "edited.th"
    torch.save(pkg, path)
    return path.read_bytes()


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(pkg: dict[str, Any]) -> None:
        from omegaconf import OmegaConf

        OmegaConf.update(pkg["xp.cfg"], key, value, force_add=True)
    return edit


def _yaml_lm_model(pkg: dict[str, Any]) -> None:
    from omegaconf import OmegaConf

    text = OmegaConf.to_yaml(pkg["xp.cfg"])
    assert "lm_model: transformer_lm" in text
    pkg["xp.cfg"] = text.replace("lm_model: transformer_lm", "lm_model: ${oc.env:MUSICGEN_TEST_SECRET}")


@pytest.mark.parametrize(("where", "edit"), [
    ("lm_model", _set("lm_model", "${oc.env:MUSICGEN_TEST_SECRET}")),
    ("conditioners.description.t5.name", _set("conditioners.description.t5.name", "${oc.env:MUSICGEN_TEST_SECRET}")),
    ("lm_model (YAML text)", _yaml_lm_model),
])
def test_a_config_reading_the_environment_is_refused_and_the_secret_never_shown(
        server: CogServer, files: FileServer, tiny_weights: Path, tmp_path: Path, where: str,
        edit: Callable[[dict[str, Any]], None]) -> None:
    # The secret is there to be read: in the environment of the worker that loads the checkpoint.
    environments = [Path(f"/proc/{pid}/environ").read_bytes() for pid in server.process_tree()]
    assert any(f"MUSICGEN_TEST_SECRET={SECRET}".encode() in env for env in environments)
    url = files.add(f"/secret/{where.split()[0]}.th", edited_finetune(tiny_weights, tmp_path, edit))
    response = server.predict({**PROMPT, "seed": 1, "replicate_weights": url})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed", body["status"]
    assert "InputError: replicate_weights=" in body["error"], body["error"]
    assert f"config key {where.split()[0]} calls an OmegaConf resolver" in body["error"], body["error"]
    assert SECRET not in response.text  # neither the error nor the logs
    assert SECRET not in server.log_text()
    assert server.wait_status("READY") == "READY"


def _declares_large(pkg: dict[str, Any]) -> None:
    """The release "large" architecture (dim 2048, 32 heads, 48 layers, 2048 tokens) over one tiny tensor."""
    import torch
    from omegaconf import OmegaConf

    for key, value in (("dim", 2048), ("num_heads", 32), ("num_layers", 48), ("card", 2048)):
        OmegaConf.update(pkg["xp.cfg"], f"transformer_lm.{key}", value)
    pkg["model"] = {"emb.0.weight": torch.zeros(3, 3)}


def test_a_small_file_declaring_a_large_model_is_refused_quickly(server: CogServer, files: FileServer,
                                                                 tiny_weights: Path, tmp_path: Path) -> None:
    """The 12 KB checkpoint that cost 3 GB and a minute: refused from its tensors' shapes, nothing built."""
    data = edited_finetune(tiny_weights, tmp_path, _declares_large)
    assert len(data) < 200_000
    url = files.add("/large/declared.th", data)
    peak_before = server.peak_rss_bytes()
    started = time.monotonic()
    error = failure(server, url)
    elapsed = time.monotonic() - started
    assert "tensors do not match its config's architecture" in error, error
    assert elapsed < 5.0, f"refused only after {elapsed:.1f} s"
    grown = server.peak_rss_bytes() - peak_before
    assert grown < 300 * 2**20, f"the server's peak memory grew by {grown / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------------------------------
# The default address policy


def test_internal_addresses_are_refused_by_default(guarded: CogServer, files: FileServer) -> None:
    """An open port serving a real file, a closed port, a silent port, the metadata address, IPv6 loopback and
    an IPv4-mapped loopback all get the same error, and nothing is asked of the local file server."""
    data = b"weights that must not be fetched" * 10
    served = files.add("/internal/weights.th", data)
    port = served.split(":")[2].split("/")[0]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/weights.th"
    silent = SilentPort()
    try:
        urls = [served, closed, f"{silent.base}/weights.th", "http://169.254.169.254/latest/meta-data/",
                f"http://[::1]:{port}/internal/weights.th", f"http://[::ffff:127.0.0.1]:{port}/internal/weights.th",
                f"http://localhost:{port}/internal/weights.th"]
        errors = {failure(guarded, url).replace(repr(url), "URL") for url in urls}
    finally:
        silent.close()
    assert len(errors) == 1, errors
    assert "not an allowed host" in errors.pop()
    assert files.gets("/internal/weights.th") == (0, 0)


# ----------------------------------------------------------------------------------------------------
# Swaps


def test_two_finetunes_one_after_the_other_then_blank(server: CogServer, files: FileServer,
                                                      tiny_weights: Path) -> None:
    default = output(server, seed=11)
    url_a = files.add("/a/melody-a.th", finetune(tiny_weights, "melody-a"))
    url_b = files.add("/b/melody-b.th", finetune(tiny_weights, "melody-b"))
    a = output(server, 11, url_a)
    b = output(server, 11, url_b)
    a_again = output(server, 11, url_a)
    assert a_again == a  # nothing left over from b
    # Three models, three different pieces of music (the files' tags name the model, so compare samples).
    assert not np.array_equal(samples(a), samples(b))
    assert not np.array_equal(samples(default), samples(a)) and not np.array_equal(samples(default), samples(b))
    # A blank value after a swap serves the default weights again, byte for byte.
    for blank in ("", "   "):
        assert output(server, 11, blank) == default
    assert output(server, 11) == default


def test_repeated_url_is_not_downloaded_again(server: CogServer, files: FileServer, tiny_weights: Path,
                                              cache_dir: Path) -> None:
    path = "/memo/melody-a.th"
    data = finetune(tiny_weights, "melody-a")
    url = files.add(path, data)
    first = output(server, 12, url)
    for _ in range(3):
        assert output(server, 12, url) == first
    full, not_modified = files.gets(path)
    assert full == 1, f"the checkpoint was downloaded {full} times"
    assert not_modified == 3
    assert (cache_dir / f"{sha(data)}.th").is_file()


def test_new_content_at_the_same_url_is_downloaded_and_served(server: CogServer, files: FileServer,
                                                              tiny_weights: Path) -> None:
    path = "/moving/weights.th"
    url = files.add(path, finetune(tiny_weights, "melody-a"))
    a = output(server, 13, url)
    files.add(path, finetune(tiny_weights, "melody-b"))  # a new ETag and new bytes at the same URL
    b = output(server, 13, url)
    assert a != b
    assert files.gets(path) == (2, 0)
    # The same weights from another URL: the same music (the file's tags record the URL, so compare samples).
    direct = output(server, 13, files.add("/direct/melody-b.th", finetune(tiny_weights, "melody-b")))
    assert np.array_equal(samples(direct), samples(b))


def test_url_without_validators_is_downloaded_each_time(server: CogServer, files: FileServer,
                                                        tiny_weights: Path) -> None:
    """Without an ETag or Last-Modified there is no way to know the content is unchanged."""
    path = "/plain/melody-b.th"
    url = files.add(path, finetune(tiny_weights, "melody-b"), validators=False)
    assert output(server, 14, url) == output(server, 14, url)
    assert files.gets(path) == (2, 0)


def test_download_cache_stays_bounded(server: CogServer, files: FileServer, tiny_weights: Path,
                                      cache_dir: Path) -> None:
    for name in ("text-a", "stereo-melody-a", "melody-a", "melody-b"):
        output(server, 15, files.add(f"/bounded/{name}.th", finetune(tiny_weights, name)))
    cached = sorted(p.name for p in cache_dir.iterdir())
    assert len(cached) <= KEEP, cached
    assert all(name.endswith(".th") for name in cached), cached  # no partial downloads left
    assert f"{sha(finetune(tiny_weights, 'melody-b'))}.th" in cached  # the most recent is kept
    assert server.wait_status("READY") == "READY"


# ----------------------------------------------------------------------------------------------------
# COG_WEIGHTS: a trained version's default weights


@pytest.mark.parametrize("given_as", ["url", "path"])
def test_cog_weights_is_served_as_the_default_model(cog_servers: StartServer, server: CogServer,
                                                    files: FileServer, tiny_weights: Path, given_as: str) -> None:
    path = finetune_path(tiny_weights, "melody-b")
    weights = files.add("/trained/weights.th", path.read_bytes()) if given_as == "url" else str(path)
    # COG_WEIGHTS is deployment configuration: fetched from 127.0.0.1 without an allow-list.
    trained = cog_servers("generate", env={"COG_WEIGHTS": weights, "MUSICGEN_REMIX_ALLOWED_HOSTS": ""})
    setup_logs = trained.health()["setup"]["logs"]
    assert "ready: default model fine-tune" in setup_logs, setup_logs
    default_output = output(trained, 21)
    # The same fine-tune through replicate_weights on the plain server gives the same audio (the tags differ:
    # they record the replicate_weights URL).
    same = output(server, 21, files.add("/same/melody-b.th", path.read_bytes()))
    assert np.array_equal(samples(default_output), samples(same))
    assert not np.array_equal(samples(default_output), samples(output(server, 21)))
