"""Tests for musicgen_remix.models.remote (``replicate_weights`` downloads) against the local file server on
127.0.0.1: content-addressed cache, URL scheme check, HTTP errors, timeouts, size cap, tar archives and the
bounded cache; the total deadline and stall rule against trickling peers; the address guard.

127.0.0.1 is an internal address, refused by default: every test runs with
``MUSICGEN_REMIX_ALLOWED_HOSTS=127.0.0.1`` unless it is about the guard's defaults."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.peers import FileServer, SilentPort, TricklePeer
from musicgen_remix.errors import InputError, WeightsError
from musicgen_remix.models.remote import check_url, download_checkpoint
from musicgen_remix.weights.download import DEADLINE_ENV, MIN_RATE_ENV, STALL_BYTES_ENV, STALL_S_ENV
from musicgen_remix.weights.guard import ALLOWED_HOSTS_ENV

FAST = (2.0, 2.0)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local test servers are allowed; download limits are the defaults unless a test sets them."""
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, "127.0.0.1")
    for name in (STALL_S_ENV, STALL_BYTES_ENV, MIN_RATE_ENV, DEADLINE_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _files() -> Iterator[FileServer]:
    with FileServer(validators=False) as peer:
        yield peer


@pytest.fixture()
def server(_files: FileServer) -> FileServer:
    """The module's file server, serving nothing until a test adds files."""
    _files.reset()
    return _files


@pytest.fixture()
def silent_server() -> Iterator[str]:
    """A port that accepts TCP connections (kernel backlog) but never answers a byte."""
    silent = SilentPort()
    try:
        yield f"{silent.base}/weights.th"
    finally:
        silent.close()


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


def test_download_to_content_addressed_file(server: FileServer, tmp_path: Path) -> None:
    data = payload()
    url = server.add("/weights.th", data)
    path = download_checkpoint(url, tmp_path / "cache", timeout=FAST)
    assert path == tmp_path / "cache" / f"{sha(data)}.th"
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_download_without_content_length(server: FileServer, tmp_path: Path) -> None:
    data = payload(3000, seed=1)
    url = server.add("/stream.th", data, declare_length=False)
    path = download_checkpoint(url, tmp_path, timeout=FAST)
    assert path.name == f"{sha(data)}.th"
    assert path.read_bytes() == data


def test_same_content_at_two_urls_is_one_file(server: FileServer, tmp_path: Path) -> None:
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


def test_http_404_is_an_input_error(server: FileServer, tmp_path: Path) -> None:
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
def test_oversized_download_is_refused_and_leaves_nothing(server: FileServer, tmp_path: Path,
                                                          declare_length: bool) -> None:
    url = server.add("/big.th", payload(3 << 20), declare_length=declare_length)
    with pytest.raises(InputError, match="at most 1000000 bytes"):
        download_checkpoint(url, tmp_path, max_bytes=1_000_000, timeout=FAST)
    assert list(tmp_path.iterdir()) == []  # no checkpoint and no .part file


def test_empty_download_is_refused(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="non-empty"):
        download_checkpoint(server.add("/empty.th", b""), tmp_path, timeout=FAST)
    assert list(tmp_path.iterdir()) == []


def test_tar_with_one_checkpoint_is_extracted(server: FileServer, tmp_path: Path) -> None:
    data = payload(4000, seed=3)
    archive = tar_of({"README.md": b"trained weights\n", "output/model.th": data})
    path = download_checkpoint(server.add("/trained.tar", archive), tmp_path, timeout=FAST)
    assert path.read_bytes() == data
    assert path.name == f"{sha(archive)}.th"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_tar_with_two_checkpoints_fails(server: FileServer, tmp_path: Path) -> None:
    archive = tar_of({"a.th": payload(100), "b.pt": payload(100, seed=1)})
    with pytest.raises(InputError, match="replicate_weights.*exactly one checkpoint.*found 2"):
        download_checkpoint(server.add("/two.tar", archive), tmp_path, timeout=FAST)
    assert list(tmp_path.iterdir()) == []


def test_tar_without_checkpoint_fails(server: FileServer, tmp_path: Path) -> None:
    archive = tar_of({"README.md": b"nothing here\n"})
    with pytest.raises(InputError, match="replicate_weights.*exactly one checkpoint.*found 0"):
        download_checkpoint(server.add("/none.tar", archive), tmp_path, timeout=FAST)
    assert list(tmp_path.iterdir()) == []


def test_compressed_tar_member_over_the_cap_is_refused(server: FileServer, tmp_path: Path) -> None:
    """A gzip'd tar (which tarfile opens transparently) whose member inflates past the cap."""
    archive = tar_of({"model.th": bytes(2 << 20)}, compression="gz")
    assert len(archive) < 100_000
    with pytest.raises(InputError, match="at most 100000 bytes"):
        download_checkpoint(server.add("/bomb.tar.gz", archive), tmp_path, max_bytes=100_000, timeout=FAST)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("compression", ["", "gz"])
def test_truncated_tar_is_an_input_error(server: FileServer, tmp_path: Path, compression: str) -> None:
    archive = tar_of({"model.th": bytes(range(256)) * 1200}, compression=compression)
    url = server.add("/cut.tar", archive[: len(archive) // 2])
    with pytest.raises(InputError, match="readable .tar") as info:
        download_checkpoint(url, tmp_path, timeout=FAST)
    assert info.value.field == "replicate_weights"
    assert list(tmp_path.iterdir()) == []


def test_cache_keeps_at_most_keep_files(server: FileServer, tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        paths.append(download_checkpoint(server.add(f"/w{i}.th", payload(1000, seed=10 + i)), tmp_path,
                                         keep=2, timeout=FAST))
        time.sleep(0.01)  # distinct modification times
        assert len(list(tmp_path.glob("*.th"))) == min(i + 1, 2)
    assert sorted(tmp_path.iterdir()) == sorted(paths[-2:])


def test_redownload_refreshes_the_cached_file(server: FileServer, tmp_path: Path) -> None:
    first = download_checkpoint(server.add("/w0.th", payload(500, seed=20)), tmp_path, keep=2, timeout=FAST)
    time.sleep(0.01)
    download_checkpoint(server.add("/w1.th", payload(500, seed=21)), tmp_path, keep=2, timeout=FAST)
    time.sleep(0.01)
    download_checkpoint(server.base + "/w0.th", tmp_path, keep=2, timeout=FAST)  # most recent again
    time.sleep(0.01)
    third = download_checkpoint(server.add("/w2.th", payload(500, seed=22)), tmp_path, keep=2, timeout=FAST)
    assert sorted(tmp_path.iterdir()) == sorted([first, third])


# ----------------------------------------------------------------------------------------------------
# Total deadline and stall rule: a peer that trickles a byte every 50 ms never lets a read time out.


def _trickle_failure(peer: TricklePeer, cache: Path, timeout: tuple[float, float] = FAST) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        download_checkpoint(peer.url(), cache, timeout=timeout)
    elapsed = time.monotonic() - start
    assert info.value.field == "replicate_weights"
    assert info.value.value == peer.url()
    message = str(info.value)
    assert str(cache) not in message and ".part" not in message  # no internal path reaches the caller
    assert list(cache.iterdir()) == []  # no checkpoint and no partial file
    return message, elapsed


@pytest.mark.parametrize("declare_length", [True, False])
def test_trickling_body_is_cut_by_the_stall_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 declare_length: bool) -> None:
    """Without a Content-Length the cut looks like the end of the body: it must not pass for a short file."""
    monkeypatch.setenv(STALL_S_ENV, "1")
    monkeypatch.setenv(STALL_BYTES_ENV, "1024")
    with TricklePeer(max_s=10, interval=0.05, declare_length=declare_length) as peer:
        message, elapsed = _trickle_failure(peer, tmp_path)
        trickle = peer.wait_hung_up()
    assert "stalled: fewer than 1024 bytes arrived in 1 s" in message, message
    assert 1.0 <= elapsed < 3.0, elapsed
    assert trickle.hung_up is not None and trickle.hung_up - trickle.started < 3.5
    assert trickle.sent < 100


def test_trickling_body_is_cut_by_the_total_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """20 bytes/s satisfy a stall rule of 1 byte per 100 s; the deadline still ends the transfer."""
    monkeypatch.setenv(STALL_S_ENV, "100")
    monkeypatch.setenv(STALL_BYTES_ENV, "1")
    monkeypatch.setenv(DEADLINE_ENV, "1.5")
    with TricklePeer(max_s=10, interval=0.05) as peer:
        message, elapsed = _trickle_failure(peer, tmp_path)
    assert "did not finish within its deadline of 1.5 s" in message, message
    assert 1.5 <= elapsed < 3.5, elapsed


def test_trickling_headers_are_cut_by_the_total_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEADLINE_ENV, "1")
    with TricklePeer(max_s=10, interval=0.05, trickle_headers=True) as peer:
        message, elapsed = _trickle_failure(peer, tmp_path)
    assert "deadline of 1 s" in message, message
    assert 1.0 <= elapsed < 3.0, elapsed


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_silent_peer_is_cut_by_the_deadline_before_any_read_timeout(silent_server: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    scheme: str) -> None:
    """The deadline covers the header phase and the TLS handshake, not only the body."""
    monkeypatch.setenv(DEADLINE_ENV, "1")
    url = silent_server.replace("http://", f"{scheme}://")
    start = time.monotonic()
    with pytest.raises(InputError, match="deadline of 1 s"):
        download_checkpoint(url, tmp_path, timeout=(10.0, 10.0))
    assert time.monotonic() - start < 3.0
    assert list(tmp_path.iterdir()) == []


def test_a_fast_download_is_not_affected_by_tight_limits(server: FileServer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STALL_S_ENV, "0.5")
    monkeypatch.setenv(DEADLINE_ENV, "5")
    data = payload(2 << 20, seed=5)
    path = download_checkpoint(server.add("/fast.th", data), tmp_path, timeout=FAST)
    assert path.read_bytes() == data


@pytest.mark.parametrize("name", [STALL_S_ENV, STALL_BYTES_ENV, MIN_RATE_ENV, DEADLINE_ENV])
def test_bad_limit_setting_is_a_weights_error(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              name: str) -> None:
    monkeypatch.setenv(name, "-3")
    with pytest.raises(WeightsError, match=name):
        download_checkpoint(server.add("/w.th", payload(10)), tmp_path, timeout=FAST)
    assert server.hits == []


# ----------------------------------------------------------------------------------------------------
# Address guard: internal addresses are refused by default, before any connection is made.

NOT_ALLOWED = "not an allowed host"


@pytest.mark.parametrize("host", [
    "127.0.0.1", "localhost", "127.0.0.2", "2130706433", "127.1",  # loopback, also in decimal and short forms
    "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",  # IPv6 loopback, IPv4-mapped loopback
    "[64:ff9b::7f00:1]", "[2002:7f00:1::]",  # NAT64 and 6to4 forms of loopback
    "10.0.0.1", "172.16.0.1", "192.168.1.1", "[fd00::1]", "100.64.0.1",  # private, unique local, shared (CGNAT)
    "169.254.169.254", "[fe80::1]", "[::ffff:169.254.169.254]",  # link-local: the metadata service
    "0.0.0.0", "[::]", "224.0.0.1", "[ff02::1]", "240.0.0.1", "255.255.255.255",  # unspecified, multicast, reserved
])
def test_internal_addresses_are_refused_by_default(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   host: str) -> None:
    monkeypatch.delenv(ALLOWED_HOSTS_ENV)
    url = server.add("/weights.th", payload(100)).replace("127.0.0.1", host)
    start = time.monotonic()
    with pytest.raises(InputError, match=NOT_ALLOWED) as info:
        download_checkpoint(url, tmp_path, timeout=FAST)
    assert time.monotonic() - start < 1.0  # refused, not timed out
    assert info.value.field == "replicate_weights"
    assert ALLOWED_HOSTS_ENV in str(info.value)
    assert server.hits == []
    assert list(tmp_path.iterdir()) == []


def test_refusal_does_not_tell_open_closed_and_silent_ports_apart(server: FileServer, silent_server: str,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Nor an internal address from a name that does not resolve (simulated: tests make no DNS queries)."""
    monkeypatch.delenv(ALLOWED_HOSTS_ENV)
    real_getaddrinfo = socket.getaddrinfo

    def dns(host: object, *args: object, **kwargs: object) -> list:
        if host == "no-such-host.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", dns)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{sock.getsockname()[1]}/weights.th"
    sock.close()
    urls = [server.add("/weights.th", payload(100)), closed, silent_server, "http://no-such-host.invalid/weights.th"]
    messages = set()
    for url in urls:
        with pytest.raises(InputError) as info:
            download_checkpoint(url, tmp_path, timeout=FAST)
        messages.add(str(info.value).replace(repr(url), "URL"))
    assert len(messages) == 1, messages
    assert NOT_ALLOWED in messages.pop()


def test_allow_list_names_hosts_and_addresses(server: FileServer, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = payload(300, seed=30)
    url = server.add("/w.th", data)
    by_name = url.replace("127.0.0.1", "localhost")
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, " localhost ")
    assert download_checkpoint(by_name, tmp_path, timeout=FAST).read_bytes() == data
    with pytest.raises(InputError, match=NOT_ALLOWED):  # the name is listed, not its address
        download_checkpoint(url, tmp_path, timeout=FAST)
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, "example.org,127.0.0.0/8")
    assert download_checkpoint(by_name, tmp_path, timeout=FAST).read_bytes() == data
    assert download_checkpoint(url, tmp_path, timeout=FAST).read_bytes() == data


def test_bad_allow_list_entry_is_a_weights_error(server: FileServer, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, "127.0.0.1, http://weights.example:8000")
    with pytest.raises(WeightsError, match=ALLOWED_HOSTS_ENV):
        download_checkpoint(server.add("/w.th", payload(10)), tmp_path, timeout=FAST)
    assert server.hits == []


def test_trusted_urls_are_not_guarded(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``COG_WEIGHTS`` is deployment configuration: a weights store on an internal host is fine."""
    monkeypatch.delenv(ALLOWED_HOSTS_ENV)
    data = payload(200, seed=31)
    assert download_checkpoint(server.add("/w.th", data), tmp_path, timeout=FAST, trusted=True).read_bytes() == data


@pytest.fixture()
def second_loopback() -> Iterator[FileServer]:
    """A file server on 127.0.0.2 (another loopback address), serving nothing until a test adds files."""
    with FileServer("127.0.0.2", validators=False) as peer:
        yield peer


def test_redirect_to_a_forbidden_host_is_refused(server: FileServer, second_loopback: FileServer, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = payload(400, seed=32)
    target = second_loopback.add("/weights.th", data)
    server.redirect("/moved.th", target)
    with pytest.raises(InputError, match=NOT_ALLOWED) as info:
        download_checkpoint(server.base + "/moved.th", tmp_path, timeout=FAST)
    assert info.value.value == server.base + "/moved.th"
    assert server.hits == ["/moved.th"]
    assert second_loopback.hits == []  # never connected to
    assert list(tmp_path.iterdir()) == []
    # The same redirect is followed once the target is allowed too.
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, "127.0.0.1,127.0.0.2")
    assert download_checkpoint(server.base + "/moved.th", tmp_path, timeout=FAST).read_bytes() == data
    assert second_loopback.hits == ["/weights.th"]


def test_connection_goes_to_the_address_that_was_checked(server: FileServer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name first resolves to an allowed address, then to a forbidden one. The host is
    resolved once per connection and that answer is connected to, so the later answer is never used."""
    data = payload(500, seed=33)
    url = server.add("/w.th", data)
    port = int(server.base.rsplit(":", 1)[1])
    real_getaddrinfo = socket.getaddrinfo
    answers: list[str] = []

    def rebinding_dns(host: object, *args: object, **kwargs: object) -> list:
        if host != "weights.rebind.test":
            return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]
        answers.append("127.0.0.1" if not answers else "10.9.9.9")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[-1], port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    path = download_checkpoint(url.replace("127.0.0.1", "weights.rebind.test"), tmp_path, timeout=FAST)
    assert path.read_bytes() == data
    assert answers == ["127.0.0.1"]
    # Rebound to the forbidden address, the next connection is refused.
    with pytest.raises(InputError, match=NOT_ALLOWED):
        download_checkpoint(url.replace("127.0.0.1", "weights.rebind.test").replace("/w.th", "/x.th"), tmp_path,
                            timeout=FAST)
    assert answers == ["127.0.0.1", "10.9.9.9"]
