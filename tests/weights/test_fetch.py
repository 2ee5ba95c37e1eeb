"""Downloader tests against the local file server (Range, redirects, dropped connections), and
the download core's deadline and stall rule against a trickling peer."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.peers import FileServer, TricklePeer
from musicgen_remix.errors import WeightsError
from musicgen_remix.weights import (
    Asset,
    asset_path,
    fetch,
    guard,
    list_assets,
    load_manifest,
    main_weights_fetch,
    manifest,
)
from musicgen_remix.weights.download import (
    CHUNK_BYTES,
    DEADLINE_ENV,
    MIN_RATE_ENV,
    STALL_BYTES_ENV,
    STALL_S_ENV,
)

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Download limits are the defaults unless a test sets them."""
    for name in (STALL_S_ENV, STALL_BYTES_ENV, MIN_RATE_ENV, DEADLINE_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests download (from local peers): the suite itself starts with HF_HUB_OFFLINE=1 (conftest.py)."""
    monkeypatch.setattr(manifest, "STARTUP_HF_HUB_OFFLINE", None)
    monkeypatch.delenv(manifest.OFFLINE_ENV, raising=False)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer(validators=False) as peer:
        yield peer


def _manifest(tmp_path: Path, server: FileServer, text: str) -> dict[str, Asset]:
    path = tmp_path / "manifest.toml"
    path.write_text(text, encoding="utf-8")
    return load_manifest(path, hf_endpoint=server.base)


def _url_asset(
    tmp_path: Path,
    server: FileServer,
    data: bytes,
    *,
    name: str = "blob",
    size: int | None = None,
    sha256: str | None = None,
    kind: str = "chord",
) -> dict[str, Asset]:
    url = server.add(f"/files/{name}.th", data)
    lines = [f"[assets.{name}]", f'kind = "{kind}"', f'url = "{url}"']
    if size is not None:
        lines.append(f"size = {size}")
    if sha256 is not None:
        lines.append(f'sha256 = "{sha256}"')
    lines += ['licence = "MIT"', 'description = "test asset"']
    return _manifest(tmp_path, server, "\n".join(lines) + "\n")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _payload(n: int, seed: int = 1) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


def test_download_verifies_and_records_sidecar(tmp_path: Path, server: FileServer) -> None:
    data = _payload(300_000)
    manifest = _url_asset(tmp_path, server, data, size=len(data), sha256=_sha(data))
    root = tmp_path / "root"

    (path,) = fetch(["blob"], root, manifest=manifest, retries=0)

    assert path == root / "sakemin" / "blob.th" == asset_path("blob", root, manifest=manifest)
    assert path.read_bytes() == data
    assert (root / "sakemin" / "blob.th.sha256").read_text().split() == [_sha(data), "blob.th"]
    assert not (root / "sakemin" / "blob.th.part").exists()


def test_resume_after_dropped_connection(tmp_path: Path, server: FileServer) -> None:
    data = _payload(5 * CHUNK_BYTES + 123)
    manifest = _url_asset(tmp_path, server, data, size=len(data), sha256=_sha(data))
    server.drop_once("/files/blob.th", 2 * CHUNK_BYTES + 1000)
    root = tmp_path / "root"
    dest = root / "sakemin" / "blob.th"
    part = root / "sakemin" / "blob.th.part"

    with pytest.raises(WeightsError, match="resumes") as info:
        fetch(["blob"], root, manifest=manifest, retries=0)
    assert server.base + "/files/blob.th" in str(info.value)
    assert not dest.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(data)

    fetch(["blob"], root, manifest=manifest, retries=0)

    assert server.ranges("/files/blob.th") == [None, f"bytes={kept}-"]
    assert dest.read_bytes() == data
    assert not part.exists()


def test_one_call_retries_and_resumes(tmp_path: Path, server: FileServer) -> None:
    data = _payload(4 * CHUNK_BYTES)
    manifest = _url_asset(tmp_path, server, data, sha256=_sha(data))
    server.drop_once("/files/blob.th", 2 * CHUNK_BYTES + 1000)

    (path,) = fetch(["blob"], tmp_path / "root", manifest=manifest, retries=1, retry_wait_s=0)

    ranges = server.ranges("/files/blob.th")
    # Reads return whatever arrived, so the retry resumes after the last byte received, not the last whole chunk.
    assert ranges == [None, f"bytes={2 * CHUNK_BYTES + 1000}-"]
    assert path.read_bytes() == data


def test_server_error_is_retried(tmp_path: Path, server: FileServer) -> None:
    data = _payload(1000)
    manifest = _url_asset(tmp_path, server, data, sha256=_sha(data))
    server.fail_once("/files/blob.th", 503)

    (path,) = fetch(["blob"], tmp_path / "root", manifest=manifest, retries=1, retry_wait_s=0)

    assert len(server.ranges("/files/blob.th")) == 2
    assert path.read_bytes() == data


def test_sha256_mismatch_deletes_download(tmp_path: Path, server: FileServer) -> None:
    data = _payload(50_000)
    wrong = _sha(b"something else")
    manifest = _url_asset(tmp_path, server, data, sha256=wrong)
    root = tmp_path / "root"

    with pytest.raises(WeightsError) as info:
        fetch(["blob"], root, manifest=manifest, retries=0)

    message = str(info.value)
    assert "blob.th" in message and wrong in message and _sha(data) in message
    assert not (root / "sakemin" / "blob.th").exists()
    assert not (root / "sakemin" / "blob.th.part").exists()
    assert not (root / "sakemin" / "blob.th.sha256").exists()


@pytest.mark.parametrize("delta", [1, -1])
def test_size_mismatch_deletes_download(tmp_path: Path, server: FileServer, delta: int) -> None:
    data = _payload(20_000)
    manifest = _url_asset(tmp_path, server, data, size=len(data) + delta)
    root = tmp_path / "root"

    with pytest.raises(WeightsError, match="size mismatch") as info:
        fetch(["blob"], root, manifest=manifest, retries=0)

    assert f"expected {len(data) + delta}" in str(info.value)
    assert str(len(data)) in str(info.value)
    assert not (root / "sakemin" / "blob.th").exists()
    assert not (root / "sakemin" / "blob.th.part").exists()


def test_present_verified_files_are_not_downloaded_again(tmp_path: Path, server: FileServer) -> None:
    data = _payload(10_000)
    manifest = _url_asset(tmp_path, server, data, size=len(data), sha256=_sha(data))
    root = tmp_path / "root"
    fetch(["blob"], root, manifest=manifest, retries=0)
    assert len(server.requests) == 1

    fetch(["blob"], root, manifest=manifest, retries=0)
    sidecar = root / "sakemin" / "blob.th.sha256"
    sidecar.unlink()  # a file copied in by hand: hashed once, then trusted
    fetch(["blob"], root, manifest=manifest, retries=0)

    assert len(server.requests) == 1
    assert sidecar.read_text().split()[0] == _sha(data)


def test_corrupted_present_file_is_downloaded_again(tmp_path: Path, server: FileServer) -> None:
    data = _payload(10_000)
    manifest = _url_asset(tmp_path, server, data, size=len(data), sha256=_sha(data))
    root = tmp_path / "root"
    (path,) = fetch(["blob"], root, manifest=manifest, retries=0)
    path.write_bytes(bytes(len(data)))  # same size, wrong bytes, newer than its sidecar
    later = time.time_ns() + 5_000_000_000
    os.utime(path, ns=(later, later))

    fetch(["blob"], root, manifest=manifest, retries=0)

    assert len(server.requests) == 2
    assert path.read_bytes() == data


def test_complete_part_file_is_finished_on_416(tmp_path: Path, server: FileServer) -> None:
    data = _payload(5_000)
    manifest = _url_asset(tmp_path, server, data, sha256=_sha(data))
    root = tmp_path / "root"
    part = root / "sakemin" / "blob.th.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data)

    (path,) = fetch(["blob"], root, manifest=manifest, retries=0)

    assert server.ranges("/files/blob.th") == [f"bytes={len(data)}-"]
    assert path.read_bytes() == data


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, server: FileServer) -> None:
    data = _payload(8_000)
    manifest = _url_asset(tmp_path, server, data, sha256=_sha(data))
    server.honour_range = False
    root = tmp_path / "root"
    part = root / "sakemin" / "blob.th.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another file")

    (path,) = fetch(["blob"], root, manifest=manifest, retries=0)

    assert path.read_bytes() == data


def test_unknown_name_lists_known_names(tmp_path: Path, server: FileServer) -> None:
    manifest = _url_asset(tmp_path, server, b"x", name="alpha")

    with pytest.raises(WeightsError, match="known assets: alpha") as info:
        fetch(["alpha", "no-such-asset"], tmp_path / "root", manifest=manifest)

    assert "'no-such-asset'" in str(info.value)
    assert server.requests == []


def test_http_404_names_the_url(tmp_path: Path, server: FileServer) -> None:
    manifest = _url_asset(tmp_path, server, b"x")
    server.remove("/files/blob.th")

    with pytest.raises(WeightsError, match="HTTP 404") as info:
        fetch(["blob"], tmp_path / "root", manifest=manifest, retries=3, retry_wait_s=0)

    assert server.base + "/files/blob.th" in str(info.value)
    assert len(server.requests) == 1  # a 404 is not retried


def test_read_timeout_is_reported(tmp_path: Path, server: FileServer) -> None:
    manifest = _url_asset(tmp_path, server, b"late")
    server.delay("/files/blob.th", 1.0)

    with pytest.raises(WeightsError, match="Timeout"):
        fetch(["blob"], tmp_path / "root", manifest=manifest, retries=0, timeout=(2.0, 0.2))


def test_hf_asset_in_hub_cache_layout_through_redirect(tmp_path: Path, server: FileServer) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    config, vocab = b'{"d_model": 8}', _payload(3_000)
    for filename, data in (("config.json", config), ("spiece.model", vocab)):
        blob = f"/cdn/{_sha(data)}"
        server.add(blob, data)
        server.redirect(f"/t5-base/resolve/{REV}/{filename}", server.base + blob)
    manifest = _manifest(
        tmp_path,
        server,
        f"""
[assets.t5-base]
kind = "t5"
hf = "t5-base"
revision = "{REV}"
files = [{{ name = "config.json", sha256 = "{_sha(config)}" }}, "spiece.model"]
licence = "Apache-2.0"
description = "text encoder"
""",
    )
    root = tmp_path / "root"

    (path,) = fetch(["t5-base"], root, manifest=manifest, retries=0)

    cache = root / "hf"
    assert path == cache / "models--t5-base" / "snapshots" / REV
    assert (cache / "models--t5-base" / "refs" / "main").read_text() == REV
    found = huggingface_hub.try_to_load_from_cache("t5-base", "spiece.model", cache_dir=cache)
    assert found is not None and Path(found).read_bytes() == vocab
    assert server.ranges(f"/t5-base/resolve/{REV}/config.json") == [None]


def test_musicgen_asset_is_a_directory_of_release_files(tmp_path: Path, server: FileServer) -> None:
    lm, codec = _payload(2_000, 3), _payload(1_000, 4)
    server.add(f"/facebook/musicgen-melody/resolve/{REV}/state_dict.bin", lm)
    server.add(f"/facebook/musicgen-melody/resolve/{REV}/compression_state_dict.bin", codec)
    manifest = _manifest(
        tmp_path,
        server,
        f"""
[assets.musicgen-melody]
kind = "musicgen"
hf = "facebook/musicgen-melody"
revision = "{REV}"
files = ["state_dict.bin", "compression_state_dict.bin"]
licence = "CC-BY-NC-4.0"
description = "melody"
""",
    )

    (path,) = fetch(["musicgen-melody"], tmp_path / "root", manifest=manifest, retries=0)

    assert path == tmp_path / "root" / "facebook" / "musicgen-melody"
    assert (path / "state_dict.bin").read_bytes() == lm
    assert (path / "compression_state_dict.bin").read_bytes() == codec


def test_progress_reports_every_byte(tmp_path: Path, server: FileServer) -> None:
    data = _payload(3 * 1024 * 1024 + 17)
    manifest = _url_asset(tmp_path, server, data, size=len(data))
    calls: list[tuple[str, int, int | None]] = []

    fetch(["blob"], tmp_path / "root", manifest=manifest, progress=lambda *a: calls.append(a))

    assert calls[0] == ("blob/blob.th", 0, len(data))
    assert calls[-1] == ("blob/blob.th", len(data), len(data))
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)


def test_list_assets_reports_disk_state(tmp_path: Path, server: FileServer) -> None:
    data = _payload(4_000)
    manifest = _url_asset(tmp_path, server, data, sha256=_sha(data))
    root = tmp_path / "root"

    def state() -> str:
        (row,) = list_assets(root, manifest=manifest)
        return row.state

    assert state() == "missing"
    part = root / "sakemin" / "blob.th.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:100])
    assert state() == "partial"
    fetch(["blob"], root, manifest=manifest, retries=0)
    assert state() == "verified"
    (root / "sakemin" / "blob.th.sha256").unlink()
    assert state() == "present"
    (row,) = list_assets(root, manifest=manifest)
    assert (row.name, row.licence, row.pinned) == ("blob", "MIT", True)
    assert row.path == root / "sakemin" / "blob.th"


def test_main_weights_fetch_fails_cleanly_on_unknown_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main_weights_fetch(["no-such-asset"], tmp_path) == 1
    assert "no-such-asset" in caplog.text and "musicgen-melody" in caplog.text


def _prefixed_release(tmp_path: Path, server: FileServer, lm: bytes, prefix: str) -> dict[str, Asset]:
    server.add(f"/facebook/musicgen-medium/resolve/{REV}/state_dict.bin", lm)
    server.add(f"/facebook/musicgen-medium/resolve/{REV}/compression_state_dict.bin", _payload(100, 5))
    return _manifest(tmp_path, server, f"""
[assets.musicgen-medium]
kind = "musicgen"
hf = "facebook/musicgen-medium"
revision = "{REV}"
files = [{{ name = "state_dict.bin", sha256_prefix = "{prefix}" }}, "compression_state_dict.bin"]
licence = "CC-BY-NC-4.0"
description = "medium"
""")


def test_publisher_sha256_prefix_accepts_the_right_file(tmp_path: Path, server: FileServer) -> None:
    lm = _payload(5_000, 6)
    manifest = _prefixed_release(tmp_path, server, lm, _sha(lm)[:10])
    (path,) = fetch(["musicgen-medium"], tmp_path / "root", manifest=manifest, retries=0)
    assert (path / "state_dict.bin").read_bytes() == lm
    # Verified once: a second fetch trusts the sidecar and downloads nothing.
    before = len(server.requests)
    fetch(["musicgen-medium"], tmp_path / "root", manifest=manifest, retries=0)
    assert len(server.requests) == before


def test_publisher_sha256_prefix_refuses_another_file(tmp_path: Path, server: FileServer) -> None:
    lm = _payload(5_000, 7)
    manifest = _prefixed_release(tmp_path, server, lm, "fbc9f401db")
    with pytest.raises(WeightsError, match=r"expected fbc9f401db\.\.\., got " + _sha(lm)):
        fetch(["musicgen-medium"], tmp_path / "root", manifest=manifest, retries=0)
    assert not (tmp_path / "root" / "facebook" / "musicgen-medium" / "state_dict.bin").exists()


def _trickled_asset(tmp_path: Path, url: str, size: int) -> dict[str, Asset]:
    path = tmp_path / "manifest.toml"
    path.write_text(f'[assets.slow]\nkind = "chord"\nurl = "{url}"\nsize = {size}\nlicence = "MIT"\n'
                    'description = "a mirror that trickles"\n', encoding="utf-8")
    return load_manifest(path)


def test_trickling_mirror_is_cut_by_the_stall_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte every 50 ms never trips the 60 s read timeout; the stall rule ends it, the bytes stay for a resume."""
    monkeypatch.setenv(STALL_S_ENV, "1")
    monkeypatch.setenv(STALL_BYTES_ENV, "1024")
    root = tmp_path / "root"
    with TricklePeer(interval=0.05, length=1 << 20, max_s=10) as peer:
        manifest = _trickled_asset(tmp_path, peer.url("/slow.th"), 1 << 20)
        start = time.monotonic()
        with pytest.raises(WeightsError, match="stalled: fewer than 1024 bytes arrived in 1 s") as info:
            fetch(["slow"], root, manifest=manifest, retries=0)
        elapsed = time.monotonic() - start
        trickle = peer.wait_hung_up()
    assert 1.0 <= elapsed < 3.0, elapsed
    assert peer.url("/slow.th") in str(info.value)
    kept = (root / "sakemin" / "slow.th.part").stat().st_size
    assert 0 < kept <= trickle.sent
    assert f"{kept} bytes are kept" in str(info.value)
    assert not (root / "sakemin" / "slow.th").exists()


def test_trickling_mirror_is_cut_by_the_total_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STALL_S_ENV, "100")
    monkeypatch.setenv(STALL_BYTES_ENV, "1")
    monkeypatch.setenv(DEADLINE_ENV, "1.5")
    with TricklePeer(interval=0.05, length=1 << 20, max_s=10) as peer:
        manifest = _trickled_asset(tmp_path, peer.url("/slow.th"), 1 << 20)
        start = time.monotonic()
        with pytest.raises(WeightsError, match="deadline of 1.5 s"):
            fetch(["slow"], tmp_path / "root", manifest=manifest, retries=0)
    assert 1.5 <= time.monotonic() - start < 3.5


def test_each_retry_gets_its_own_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cut transfer is retried like a dropped connection, resuming with a Range request."""
    monkeypatch.setenv(DEADLINE_ENV, "0.5")
    with TricklePeer(interval=0.05, length=1 << 20, max_s=10) as peer:
        manifest = _trickled_asset(tmp_path, peer.url("/slow.th"), 1 << 20)
        start = time.monotonic()
        with pytest.raises(WeightsError, match="after 2 attempt"):
            fetch(["slow"], tmp_path / "root", manifest=manifest, retries=1, retry_wait_s=0)
    assert 1.0 <= time.monotonic() - start < 3.0
    first, second = peer.trickles
    assert first.range is None and second.range is not None and second.range.startswith("bytes=")
    assert 0 < int(second.range[len("bytes="):-1]) <= first.sent


# -- when the weights cannot be had: at once, in one message, with the ways forward -------------------------


def _two_assets(tmp_path: Path, server: FileServer, first_url: str) -> dict[str, Asset]:
    """``first`` from ``first_url``, ``second`` from the local server."""
    second = server.add("/files/second.th", _payload(1_000))
    return _manifest(tmp_path, server, f"""
[assets.first]
kind = "chord"
url = "{first_url}"
licence = "MIT"
description = "first"

[assets.second]
kind = "chord"
url = "{second}"
licence = "MIT"
description = "second"
""")


def _assert_ways_forward(message: str, names: list[str]) -> None:
    assert f"weights {', '.join(repr(n) for n in names)} are not under" in message
    assert f"python -m musicgen_remix weights fetch {' '.join(names)}" in message
    assert "python -m fixtures.weights DIR" in message and "MUSICGEN_REMIX_WEIGHTS=DIR" in message
    assert ".part" not in message  # nothing was kept, so nothing is claimed


def test_refused_connection_fails_at_once_naming_every_missing_asset(tmp_path: Path, server: FileServer) -> None:
    """A host that refuses is not retried for seconds (the default retries and waits are in force)."""
    with socket.socket() as bound:  # bound, never listening: connections to it are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/files/first.th"
        registry = _two_assets(tmp_path, server, url)
        root = tmp_path / "root"
        start = time.monotonic()
        with pytest.raises(WeightsError) as info:
            fetch(["first", "second"], root, manifest=registry)
        elapsed = time.monotonic() - start
    assert elapsed < 1.0, elapsed
    message = str(info.value)
    assert "127.0.0.1 could not be reached: it refused the connection" in message and url in message
    _assert_ways_forward(message, ["first", "second"])
    assert server.requests == []  # nothing further is tried once a host is out of reach
    assert not (root / "sakemin").exists()  # a failed first try leaves no directory to mistake for an asset


def test_name_that_does_not_resolve_fails_at_once(
    tmp_path: Path, server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []

    def no_such_name(host: str, *args: object) -> list[object]:
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(guard, "resolve", no_such_name)
    registry = _two_assets(tmp_path, server, "https://weights.example.invalid/files/first.th")
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        fetch(["first", "second"], tmp_path / "root", manifest=registry)
    assert time.monotonic() - start < 1.0
    assert lookups == ["weights.example.invalid"]
    assert "weights.example.invalid could not be reached: its name does not resolve" in str(info.value)
    _assert_ways_forward(str(info.value), ["first", "second"])


def test_a_dropped_transfer_is_still_retried_and_the_message_names_what_is_kept(
    tmp_path: Path, server: FileServer
) -> None:
    data = _payload(3 * CHUNK_BYTES)
    registry = _url_asset(tmp_path, server, data, sha256=_sha(data))
    server.drop_once("/files/blob.th", CHUNK_BYTES + 10)
    server.fail_once("/files/blob.th", 503)  # answered first; then the drop, then nothing more is tried
    with pytest.raises(WeightsError, match="after 2 attempt") as info:
        fetch(["blob"], tmp_path / "root", manifest=registry, retries=1, retry_wait_s=0)
    kept = (tmp_path / "root" / "sakemin" / "blob.th.part").stat().st_size
    assert kept == CHUNK_BYTES + 10
    assert f"{kept} bytes are kept" in str(info.value)
    assert "weights 'blob' are not under" in str(info.value) and "python -m fixtures.weights DIR" in str(info.value)


@pytest.mark.parametrize(("variable", "startup"), [("HF_HUB_OFFLINE", True), ("MUSICGEN_REMIX_OFFLINE", False)])
def test_offline_setting_makes_no_connection(
    tmp_path: Path, server: FileServer, monkeypatch: pytest.MonkeyPatch, variable: str, startup: bool
) -> None:
    data = _payload(2_000)
    registry = _url_asset(tmp_path, server, data, sha256=_sha(data))
    if startup:
        monkeypatch.setattr(manifest, "STARTUP_HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.setenv(variable, "1")
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        fetch(["blob"], tmp_path / "root", manifest=registry)
    assert time.monotonic() - start < 0.5
    assert server.requests == []
    message = str(info.value)
    assert f"{variable}=1 is set, so nothing was downloaded" in message
    assert f"unset {variable} and run `python -m musicgen_remix weights fetch blob`" in message
    _assert_ways_forward(message, ["blob"])


def test_offline_setting_still_serves_what_is_present(
    tmp_path: Path, server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _payload(2_000)
    registry = _url_asset(tmp_path, server, data, sha256=_sha(data))
    (path,) = fetch(["blob"], tmp_path / "root", manifest=registry)
    monkeypatch.setattr(manifest, "STARTUP_HF_HUB_OFFLINE", "1")
    assert fetch(["blob"], tmp_path / "root", manifest=registry) == [path]
    assert len(server.requests) == 1


def test_hf_hub_offline_is_read_as_the_process_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """use_weights_root() sets HF_HUB_OFFLINE=1 for the hub libraries; that is not the user asking for offline."""
    monkeypatch.setattr(manifest, "STARTUP_HF_HUB_OFFLINE", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert manifest.offline_setting() is None
    monkeypatch.setattr(manifest, "STARTUP_HF_HUB_OFFLINE", "true")
    assert manifest.offline_setting() == "HF_HUB_OFFLINE=true"
    monkeypatch.setattr(manifest, "STARTUP_HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("MUSICGEN_REMIX_OFFLINE", "1")
    assert manifest.offline_setting() == "MUSICGEN_REMIX_OFFLINE=1"
