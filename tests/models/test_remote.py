"""Tests for musicgen_remix.models.remote (``replicate_weights`` downloads) against a local HTTP server
on 127.0.0.1: content-addressed cache, URL scheme check, HTTP errors, timeouts, size cap, tar archives
and the bounded cache."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from musicgen_remix.errors import InputError, WeightsError
from musicgen_remix.models.remote import check_url, download_checkpoint

FAST = (2.0, 2.0)


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up early (size cap, timeouts) are part of these tests


@dataclass
class Served:
    files: dict[str, bytes] = field(default_factory=dict)
    no_length: set[str] = field(default_factory=set)  # paths sent without Content-Length
    base: str = ""

    def add(self, path: str, data: bytes, *, declare_length: bool = True) -> str:
        self.files[path] = data
        if not declare_length:
            self.no_length.add(path)
        return self.base + path


@pytest.fixture(scope="module")
def _httpd() -> Iterator[Served]:
    state = Served()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            if self.path in state.no_length:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = QuietServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture()
def server(_httpd: Served) -> Served:
    """The module's server, serving nothing until a test adds files."""
    _httpd.files.clear()
    _httpd.no_length.clear()
    return _httpd


@pytest.fixture()
def silent_server() -> Iterator[str]:
    """A port that accepts TCP connections (kernel backlog) but never answers a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/weights.th"
    finally:
        sock.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(n: int = 5000, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed * 7 + i // 251) % 256 for i in range(n))


def tar_of(members: dict[str, bytes], compression: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------


def test_download_to_content_addressed_file(server: Served, tmp_path: Path) -> None:
    data = payload()
    url = server.add("/weights.th", data)
    path = download_checkpoint(url, tmp_path / "cache", timeout=FAST)
    assert path == tmp_path / "cache" / f"{sha(data)}.th"
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_download_without_content_length(server: Served, tmp_path: Path) -> None:
    data = payload(3000, seed=1)
    url = server.add("/stream.th", data, declare_length=False)
    path = download_checkpoint(url, tmp_path, timeout=FAST)
    assert path.name == f"{sha(data)}.th"
    assert path.read_bytes() == data


def test_same_content_at_two_urls_is_one_file(server: Served, tmp_path: Path) -> None:
    data = payload(2000, seed=2)
    first = download_checkpoint(server.add("/a.th", data), tmp_path, timeout=FAST)
    second = download_checkpoint(server.add("/b/c.th", data), tmp_path, timeout=FAST)
    assert first == second
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "ftp://127.0.0.1/weights.th",
    "/tmp/weights.th",
    "weights.th",
    "http://",
    "gs://bucket/weights.th",
    "",
])
def test_non_http_url_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        download_checkpoint(url, tmp_path / "cache", timeout=FAST)
    assert info.value.field == "replicate_weights"
    assert "replicate_weights" in str(info.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_check_url_strips_and_accepts_http_and_https() -> None:
    assert check_url("  http://127.0.0.1:8000/w.th \n") == "http://127.0.0.1:8000/w.th"
    assert check_url("https://example.org/w.th") == "https://example.org/w.th"


def test_http_404_is_an_input_error(server: Served, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="404") as info:
        download_checkpoint(server.base + "/missing.th", tmp_path, timeout=FAST)
    assert info.value.field == "replicate_weights"
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_an_input_error(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(InputError, match="download failed"):
        download_checkpoint(f"http://127.0.0.1:{port}/w.th", tmp_path, timeout=FAST)
    assert list(tmp_path.iterdir()) == []


def test_silent_server_times_out(silent_server: str, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(InputError, match="Timeout") as info:
        download_checkpoint(silent_server, tmp_path, timeout=(0.5, 0.5))
    assert time.monotonic() - start < 5.0
    assert info.value.field == "replicate_weights"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("declare_length", [True, False])
def test_oversized_download_is_refused_and_leaves_nothing(server: Served, tmp_path: Path,
                                                          declare_length: bool) -> None:
    url = server.add("/big.th", payload(3 << 20), declare_length=declare_length)
    with pytest.raises(InputError, match="at most 1000000 bytes"):
        download_checkpoint(url, tmp_path, max_bytes=1_000_000, timeout=FAST)
    assert list(tmp_path.iterdir()) == []  # no checkpoint and no .part file


def test_empty_download_is_refused(server: Served, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="non-empty"):
        download_checkpoint(server.add("/empty.th", b""), tmp_path, timeout=FAST)
    assert list(tmp_path.iterdir()) == []


def test_tar_with_one_checkpoint_is_extracted(server: Served, tmp_path: Path) -> None:
    data = payload(4000, seed=3)
    archive = tar_of({"README.md": b"trained weights\n", "output/model.th": data})
    path = download_checkpoint(server.add("/trained.tar", archive), tmp_path, timeout=FAST)
    assert path.read_bytes() == data
    assert path.name == f"{sha(archive)}.th"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_tar_with_two_checkpoints_fails(server: Served, tmp_path: Path) -> None:
    archive = tar_of({"a.th": payload(100), "b.pt": payload(100, seed=1)})
    with pytest.raises((WeightsError, InputError), match="exactly one checkpoint.*found 2"):
        download_checkpoint(server.add("/two.tar", archive), tmp_path, timeout=FAST)
    assert list(tmp_path.iterdir()) == []


def test_tar_without_checkpoint_fails(server: Served, tmp_path: Path) -> None:
    archive = tar_of({"README.md": b"nothing here\n"})
    with pytest.raises((WeightsError, InputError), match="found 0"):
        download_checkpoint(server.add("/none.tar", archive), tmp_path, timeout=FAST)
    assert list(tmp_path.iterdir()) == []


def test_compressed_tar_member_over_the_cap_is_refused(server: Served, tmp_path: Path) -> None:
    """A gzip'd tar (which tarfile opens transparently) whose member inflates past the cap."""
    archive = tar_of({"model.th": bytes(2 << 20)}, compression="gz")
    assert len(archive) < 100_000
    with pytest.raises(InputError, match="at most 100000 bytes"):
        download_checkpoint(server.add("/bomb.tar.gz", archive), tmp_path, max_bytes=100_000, timeout=FAST)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("compression", ["", "gz"])
def test_truncated_tar_is_an_input_error(server: Served, tmp_path: Path, compression: str) -> None:
    archive = tar_of({"model.th": bytes(range(256)) * 1200}, compression=compression)
    url = server.add("/cut.tar", archive[: len(archive) // 2])
    with pytest.raises(InputError, match="readable .tar") as info:
        download_checkpoint(url, tmp_path, timeout=FAST)
    assert info.value.field == "replicate_weights"
    assert list(tmp_path.iterdir()) == []


def test_cache_keeps_at_most_keep_files(server: Served, tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        paths.append(download_checkpoint(server.add(f"/w{i}.th", payload(1000, seed=10 + i)), tmp_path,
                                         keep=2, timeout=FAST))
        time.sleep(0.01)  # distinct modification times
        assert len(list(tmp_path.glob("*.th"))) == min(i + 1, 2)
    assert sorted(tmp_path.iterdir()) == sorted(paths[-2:])


def test_redownload_refreshes_the_cached_file(server: Served, tmp_path: Path) -> None:
    first = download_checkpoint(server.add("/w0.th", payload(500, seed=20)), tmp_path, keep=2, timeout=FAST)
    time.sleep(0.01)
    download_checkpoint(server.add("/w1.th", payload(500, seed=21)), tmp_path, keep=2, timeout=FAST)
    time.sleep(0.01)
    download_checkpoint(server.base + "/w0.th", tmp_path, keep=2, timeout=FAST)  # most recent again
    time.sleep(0.01)
    third = download_checkpoint(server.add("/w2.th", payload(500, seed=22)), tmp_path, keep=2, timeout=FAST)
    assert sorted(tmp_path.iterdir()) == sorted([first, third])
