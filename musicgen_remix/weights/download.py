"""The one HTTP download core: every URL the project fetches goes through it.

Two policies use it: :mod:`musicgen_remix.weights.fetch` (manifest assets: resume with ``Range``, retries,
sha256/size verification, sidecars, progress) and :mod:`musicgen_remix.models.remote` (a caller's
``replicate_weights``: address guard, conditional GET, content-addressed cache, tar extraction). What they
share lives here:

- :func:`new_session`: a requests session whose connections resolve each host once, connect only to the
  addresses an optional :class:`~musicgen_remix.weights.guard.AddressGuard` accepts (for every redirect hop
  too), and register their sockets with the running :class:`Watch`.
- :func:`watched`: bounds everything in its block (connect, TLS handshake, redirects, headers, body) by a
  **total deadline**, and the body by a **stall rule**. A watchdog thread enforces both by shutting the
  connection's socket down, which wakes a read that is blocked however the peer trickles its bytes (a
  per-read timeout never fires while a byte arrives every few seconds). The block then raises
  :class:`DownloadTooSlow`.
- :func:`stream_into`: streams a response body into a partial file while hashing it, counting bytes for
  the stall rule as they arrive, and enforcing a byte cap (:class:`DownloadTooLarge`).
- :func:`commit`: the atomic rename of a finished partial file.
- :func:`unreachable`: whether a failure means the host could not be reached at all (not worth retrying).

Limits (:class:`Limits`, read by :meth:`Limits.from_env`; defaults in brackets):

- ``MUSICGEN_REMIX_DOWNLOAD_STALL_S`` [30] and ``MUSICGEN_REMIX_DOWNLOAD_STALL_BYTES`` [1 MiB]: once the
  headers are in, a transfer is aborted when fewer than STALL_BYTES arrived in the last STALL_S seconds.
- ``MUSICGEN_REMIX_DOWNLOAD_MIN_RATE`` [1 MiB/s]: the total deadline is 60 s plus the expected size
  divided by this rate. The expected size is the manifest's size, else the declared ``Content-Length``,
  else the policy's byte cap (``replicate_weights``: 16 GiB, so at most 4 h 34 min); with none of
  them the deadline is one hour. Until the headers arrive the deadline is the 60 s alone. A 1 GB
  checkpoint thus has 60 s + 954 s.
- ``MUSICGEN_REMIX_DOWNLOAD_DEADLINE_S`` [unset]: a fixed total deadline in seconds instead of the derived one.

The watchdog checks every ``min(0.5, STALL_S / 10)`` seconds (at least 0.02) and at the deadline, so the
stall rule fires at most one such tick late.

Not covered: a DNS lookup cannot be interrupted (the system resolver's own timeouts apply), and a session
made elsewhere (``fetch(session=...)``) has its sockets registered only once the response headers are in.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family, create_connection

from musicgen_remix.errors import WeightsError
from musicgen_remix.weights import guard as _guard
from musicgen_remix.weights.guard import AddressGuard, AddressNotAllowed

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
"""Largest read; a read returns as soon as any bytes arrived, so the stall rule counts them at once."""
STALL_S = 30.0
STALL_BYTES = 1 << 20
MIN_RATE = float(1 << 20)
GRACE_S = 60.0
UNKNOWN_SIZE_DEADLINE_S = 3600.0
STALL_S_ENV = "MUSICGEN_REMIX_DOWNLOAD_STALL_S"
STALL_BYTES_ENV = "MUSICGEN_REMIX_DOWNLOAD_STALL_BYTES"
MIN_RATE_ENV = "MUSICGEN_REMIX_DOWNLOAD_MIN_RATE"
DEADLINE_ENV = "MUSICGEN_REMIX_DOWNLOAD_DEADLINE_S"
_USER_AGENT = "musicgen-remix/1"


class DownloadError(Exception):
    """A transfer was stopped by one of this module's limits. Messages never name local paths."""


class DownloadTooSlow(DownloadError):
    """The total deadline passed or the stall rule fired; the message says which, in words."""


class DownloadTooLarge(DownloadError):
    """More bytes arrived than the cap allows."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"more than {limit} bytes")


def _env_number(environ: Mapping[str, str], name: str, *, whole: bool = False) -> float | None:
    """The positive number in ``environ[name]``, or None when it is unset or blank."""
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(int(text)) if whole else float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        kind = "whole number" if whole else "number"
        raise WeightsError(f"{name}={text!r} is not a positive {kind}")
    return value


@dataclass(frozen=True)
class Limits:
    """How long a transfer may take (see the module docstring for the rules).

    Attributes:
        stall_s, stall_bytes: the stall rule: at least ``stall_bytes`` in every ``stall_s`` seconds.
        min_rate: bytes per second the derived total deadline assumes.
        grace_s: seconds added to every derived deadline (connection, redirects, headers).
        deadline_s: a fixed total deadline in seconds; None derives it from the expected size.
    """

    stall_s: float = STALL_S
    stall_bytes: int = STALL_BYTES
    min_rate: float = MIN_RATE
    grace_s: float = GRACE_S
    deadline_s: float | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The defaults, overridden by ``MUSICGEN_REMIX_DOWNLOAD_*``.

        Raises:
            WeightsError: a variable is set to something other than a positive number.
        """
        env = os.environ if environ is None else environ
        stall_s = _env_number(env, STALL_S_ENV)
        stall_bytes = _env_number(env, STALL_BYTES_ENV, whole=True)
        min_rate = _env_number(env, MIN_RATE_ENV)
        return cls(
            stall_s=STALL_S if stall_s is None else stall_s,
            stall_bytes=STALL_BYTES if stall_bytes is None else int(stall_bytes),
            min_rate=MIN_RATE if min_rate is None else min_rate,
            deadline_s=_env_number(env, DEADLINE_ENV),
        )

    @property
    def headers_deadline_s(self) -> float:
        """Seconds from the start until the response headers must be in."""
        return self.deadline_s if self.deadline_s is not None else self.grace_s

    def deadline_for(self, expected_bytes: int | None) -> float:
        """Seconds the whole transfer may take when its body is ``expected_bytes`` long (None: unknown)."""
        if self.deadline_s is not None:
            return self.deadline_s
        if expected_bytes is None:
            return UNKNOWN_SIZE_DEADLINE_S
        return self.grace_s + expected_bytes / self.min_rate


_CURRENT: ContextVar[Watch | None] = ContextVar("musicgen_remix_download_watch", default=None)


class Watch:
    """The deadline and stall rule of one transfer, enforced by a watchdog thread.

    When a limit is hit the watch records why and shuts down every socket registered with it (each a
    duplicate of the connection's descriptor, so that a TLS handshake in progress is reached too), which
    makes a blocked read return at once. Use it through :func:`watched`.
    """

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self.started = clock()
        self._deadline_s = limits.headers_deadline_s
        self._body_started: float | None = None
        self.received = 0
        self._marks: deque[tuple[float, int]] = deque()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-watchdog", daemon=True)

    @property
    def reason(self) -> str | None:
        """Why the transfer was stopped, or None while it may go on."""
        return self._reason

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self.started

    def expect(self, expected_bytes: int | None) -> None:
        """The headers are in: set the total deadline for a body of ``expected_bytes`` and start the stall rule."""
        with self._lock:
            self._deadline_s = self.limits.deadline_for(expected_bytes)
            now = self._clock()
            self._body_started = now
            self._marks.clear()
            self._marks.append((now, self.received))

    def count(self, n: int) -> None:
        """``n`` more body bytes arrived (called by the one reading thread)."""
        self.received += n

    def check(self) -> None:
        """Raise :class:`DownloadTooSlow` if a limit was hit."""
        if self._reason is not None:
            raise DownloadTooSlow(self._reason)

    def register(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when a limit is hit (at once if one already was)."""
        if sock is None or sock.fileno() < 0:
            return
        try:
            dup = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return
        with self._lock:
            self._sockets.append(dup)
            fired = self._reason is not None
        if fired:
            _shutdown(dup)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop the watchdog and release the duplicated descriptors (the connections stay as they are)."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for dup in sockets:
            dup.close()

    def _tick_s(self) -> float:
        return max(0.02, min(0.5, self.limits.stall_s / 10))

    def _wait_s(self) -> float:
        """Until the next check: one tick, or sooner when the deadline comes first."""
        with self._lock:
            left = self.started + self._deadline_s - self._clock()
        return min(self._tick_s(), max(left, 0.0) + 0.001)

    def _run(self) -> None:
        while not self._done.wait(self._wait_s()):
            reason = self._verdict()
            if reason is None:
                continue
            with self._lock:
                if self._done.is_set():
                    return
                self._reason = reason
                sockets = list(self._sockets)
            logger.info("download stopped: %s", reason)
            for dup in sockets:
                _shutdown(dup)
            return

    def _verdict(self) -> str | None:
        now = self._clock()
        with self._lock:
            if now - self.started > self._deadline_s:
                return f"did not finish within its deadline of {self._deadline_s:g} s"
            if self._body_started is None:
                return None
            received = self.received
            self._marks.append((now, received))
            window_start = now - self.limits.stall_s
            while len(self._marks) > 1 and self._marks[1][0] <= window_start:
                self._marks.popleft()
            since, base = self._marks[0]
            if since <= window_start and received - base < self.limits.stall_bytes:
                return (f"stalled: fewer than {self.limits.stall_bytes} bytes arrived in "
                        f"{self.limits.stall_s:g} s ({received - base} did)")
        return None


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed or never connected: nothing is blocked on it
        sock.shutdown(socket.SHUT_RDWR)


_NETWORK_ERRORS: tuple[type[BaseException], ...] = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


@contextmanager
def watched(limits: Limits | None = None) -> Iterator[Watch]:
    """Run a transfer under ``limits`` (default :meth:`Limits.from_env`).

    Connections made by a :func:`new_session` session inside the block register with the watch. A network
    error raised in the block after a limit was hit becomes :class:`DownloadTooSlow`.
    """
    watch = Watch(Limits.from_env() if limits is None else limits)
    token = _CURRENT.set(watch)
    watch.start()
    try:
        yield watch
    except DownloadError:
        raise
    except _NETWORK_ERRORS as exc:
        if watch.reason is not None:
            raise DownloadTooSlow(watch.reason) from exc
        raise
    finally:
        _CURRENT.reset(token)
        watch.close()


@dataclass(frozen=True)
class Streamed:
    """What :func:`stream_into` wrote: the whole file's size and sha256 (resumed bytes included)."""

    size: int
    sha256: str


def stream_into(
    response: requests.Response,
    part: Path,
    watch: Watch,
    *,
    offset: int = 0,
    hasher: Any | None = None,
    max_bytes: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Streamed:
    """Stream ``response``'s body into ``part`` while hashing it, under ``watch``'s limits.

    Args:
        offset: bytes already in ``part`` (the body is appended); 0 truncates it.
        hasher: a sha256 object fed with those ``offset`` bytes already; a fresh one when None.
        max_bytes: cap on the whole file (``offset`` included).
        on_bytes: called with the file's size so far after every write.

    The partial file is left as it is when this raises: the caller keeps it (to resume) or removes it.

    Raises:
        DownloadTooSlow: the deadline or the stall rule stopped the transfer.
        DownloadTooLarge: more than ``max_bytes``.
        requests.RequestException: the connection failed (as ``iter_content`` reports it).
        OSError: ``part`` could not be written.
    """
    digest = hashlib.sha256() if hasher is None else hasher
    raw = response.raw
    watch.register(getattr(getattr(raw, "connection", None), "sock", None))
    size = offset
    with part.open("ab" if offset else "wb") as out:
        while True:
            try:
                block = raw.read1(CHUNK_BYTES, decode_content=True)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                watch.check()
                raise _as_requests_error(exc) from exc
            if not block:
                break
            watch.count(len(block))
            size += len(block)
            if max_bytes is not None and size > max_bytes:
                raise DownloadTooLarge(max_bytes)
            digest.update(block)
            out.write(block)
            if on_bytes is not None:
                on_bytes(size)
        watch.check()  # a shut-down socket reads as end of file when no length was declared
        out.flush()
        os.fsync(out.fileno())
    return Streamed(size, digest.hexdigest())


def _as_requests_error(exc: BaseException) -> requests.RequestException:
    """The exception ``Response.iter_content`` would have raised for a urllib3 read error."""
    errors = urllib3.exceptions
    if isinstance(exc, errors.ProtocolError):
        return requests.exceptions.ChunkedEncodingError(exc)
    if isinstance(exc, errors.DecodeError):
        return requests.exceptions.ContentDecodingError(exc)
    if isinstance(exc, errors.ReadTimeoutError):
        return requests.exceptions.ReadTimeout(exc)
    if isinstance(exc, errors.SSLError):
        return requests.exceptions.SSLError(exc)
    return requests.exceptions.ConnectionError(exc)


def unreachable(exc: BaseException) -> str | None:
    """Why no connection to the host could be made at all, in words; None when the failure came later.

    A name that does not resolve, a refused connection, an unreachable network or a connect timeout: the
    host did not take the request, and another attempt a few seconds later will not change that (unlike a
    transfer dropped part-way). Looks through the chain requests and urllib3 wrap around the cause.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    found: str | None = None
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, NameResolutionError):
            return "its name does not resolve (no network, or no DNS)"
        if isinstance(error, ConnectionRefusedError):
            return "it refused the connection"
        if isinstance(error, NewConnectionError):
            cause = error.__cause__
            detail = f": {cause.strerror}" if isinstance(cause, OSError) and cause.strerror else ""
            found = found or f"no connection could be made{detail}"
        elif isinstance(error, (ConnectTimeoutError, requests.exceptions.ConnectTimeout)):
            found = found or "connecting timed out"
        links = [error.__cause__, error.__context__, getattr(error, "reason", None),
                 *(arg for arg in error.args if isinstance(arg, BaseException))]
        pending.extend(link for link in links if isinstance(link, BaseException))
    return found


def commit(part: Path, dest: Path) -> None:
    """Move a finished partial file into place atomically (same directory, so one ``rename``)."""
    os.replace(part, dest)


# ----------------------------------------------------------------------------------------------------
# Sessions whose connections are resolved, checked and watched here.


def _open_socket(conn: HTTPConnection, address_guard: AddressGuard | None) -> socket.socket:
    """``HTTPConnection._new_conn``: resolve once, keep the permitted addresses, connect to one of them."""
    watch = _CURRENT.get()
    host = conn.host.strip("[]")
    port = conn.port or (443 if isinstance(conn, HTTPSConnection) else 80)
    try:
        infos = _guard.resolve(host, port, allowed_gai_family())
    except (OSError, UnicodeError) as exc:
        if address_guard is not None:
            raise AddressNotAllowed(host) from None
        raise NameResolutionError(host, conn, exc) from exc  # type: ignore[arg-type]
    if address_guard is not None:
        infos = address_guard.permitted(host, infos)
    if watch is not None:
        watch.check()
    error: OSError | None = None
    for info in infos:
        address = str(info[4][0])
        try:
            sock = create_connection((address, port), conn.timeout, source_address=conn.source_address,
                                     socket_options=conn.socket_options)
        except OSError as exc:
            error = exc
            continue
        if watch is not None:
            watch.register(sock)
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})") from error
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}") from error


def _pool_classes(address_guard: AddressGuard | None) -> dict[str, type[HTTPConnectionPool]]:
    class Connection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _open_socket(self, address_guard)

        def getresponse(self) -> Any:  # type: ignore[override]
            watch = _CURRENT.get()
            if watch is not None:
                watch.register(self.sock)  # a kept-alive connection was made before this watch
            return super().getresponse()

    class TLSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _open_socket(self, address_guard)

        def getresponse(self) -> Any:  # type: ignore[override]
            watch = _CURRENT.get()
            if watch is not None:
                watch.register(self.sock)
            return super().getresponse()

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TLSConnection

    return {"http": Pool, "https": TLSPool}


class _Adapter(HTTPAdapter):
    def __init__(self, address_guard: AddressGuard | None) -> None:
        self._address_guard = address_guard
        self._classes = _pool_classes(address_guard)
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        if self._address_guard is not None:
            # A proxy would connect on our behalf, out of the guard's sight.
            raise AddressNotAllowed(proxy)
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._classes
        return manager


def new_session(address_guard: AddressGuard | None = None) -> requests.Session:
    """A session for downloads: connections register with the running :func:`watched` block.

    With ``address_guard`` every connection (the first and each redirect's) goes only to addresses the guard
    permits, checked on the resolution actually connected to; the session ignores the environment's proxies
    and ``.netrc`` (a proxy would make the connection instead, and credentials are not for a caller's URL).
    Without it (deployment configuration: the manifest, ``COG_WEIGHTS``) the environment is honoured.
    """
    session = requests.Session()
    session.headers["User-Agent"] = _USER_AGENT
    if address_guard is not None:
        session.trust_env = False
    adapter = _Adapter(address_guard)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
