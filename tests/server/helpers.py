"""Shared by the server tests and ``benchmarks/soak.py``: the Cog server subprocess, local HTTP peers, audio.

Nothing here imports pytest, so the soak script can use it too. Every socket binds 127.0.0.1.

- :func:`start_cog_server` / :class:`CogServer`: ``python -m cog.server.http`` from the repository root, in
  its own process group and with its own ``TMPDIR``, serving one predictor class.
- :class:`Receiver`: records webhook POSTs and ``--upload-url`` PUTs.
- :class:`FileServer`: serves bytes by path with ``ETag``/``Last-Modified`` and conditional GETs, counts
  GETs, answers 404 for unknown paths.
- :class:`SilentPort`: a port that accepts TCP connections and never answers.
- the seed schema parser (a saved Replicate schema page) and audio data URI helpers.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import email.utils
import hashlib
import importlib.util
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import numpy as np
import requests
import soundfile

REPO = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 32000  # every MusicGen release decodes at 32 kHz
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_CHARS = 6000


# ----------------------------------------------------------------------------------------------------
# The Cog server subprocess


class ServerError(RuntimeError):
    """The server exited or did not become READY."""


@dataclass
class CogServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    tmpdir: Path
    predictor: str

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-chars:]

    def health(self) -> dict:
        response = requests.get(f"{self.url}/health-check", timeout=10)
        response.raise_for_status()
        return response.json()

    def predict(self, inputs: dict, timeout: float = 120.0) -> requests.Response:
        """A synchronous prediction (no id, no webhook): the response carries the finished prediction."""
        return requests.post(f"{self.url}/predictions", json={"input": inputs}, timeout=timeout)

    def predict_async(self, inputs: dict, *, prediction_id: str | None = None, webhook: str | None = None,
                      events: list[str] | None = None, idempotent: bool = False) -> requests.Response:
        """``Prefer: respond-async``; with ``idempotent``, ``PUT /predictions/{prediction_id}``."""
        body: dict[str, Any] = {"input": inputs}
        if webhook is not None:
            body["webhook"] = webhook
        if events is not None:
            body["webhook_events_filter"] = events
        headers = {"Prefer": "respond-async"}
        if idempotent:
            assert prediction_id is not None
            return requests.put(f"{self.url}/predictions/{prediction_id}", json=body, headers=headers, timeout=30)
        if prediction_id is not None:
            body["id"] = prediction_id
        return requests.post(f"{self.url}/predictions", json=body, headers=headers, timeout=30)

    def cancel(self, prediction_id: str) -> requests.Response:
        return requests.post(f"{self.url}/predictions/{prediction_id}/cancel", timeout=10)

    def wait_status(self, wanted: str = "READY", timeout: float = 30.0) -> str:
        """Poll ``/health-check`` until its status is ``wanted``; returns the last status seen."""
        deadline = time.monotonic() + timeout
        status = "no answer"
        while time.monotonic() < deadline:
            status = self.health()["status"]
            if status == wanted:
                return status
            time.sleep(0.05)
        return status

    def request_dirs(self) -> list[Path]:
        """The per-request directories (``musicgen-remix-*``) in the server's TMPDIR."""
        return sorted(self.tmpdir.glob("musicgen-remix-*"))

    def tmp_entries(self) -> list[str]:
        return sorted(p.name for p in self.tmpdir.iterdir())

    def process_tree(self) -> list[int]:
        """PIDs of the server and every descendant (the predictor worker among them)."""
        return [self.process.pid, *descendants(self.process.pid)]

    def rss_bytes(self) -> int:
        return sum(rss_bytes(pid) for pid in self.process_tree())

    def stop(self) -> None:
        stop_process_group(self.process)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cog_server(predictor: str, *, weights: Path, workdir: Path, upload_url: str | None = None,
                     env: dict[str, str] | None = None) -> CogServer:
    """Start ``predict.py:<predictor>`` behind the real HTTP server and return once it is READY.

    Args:
        predictor: the class name in predict.py.
        weights: the weights root (``MUSICGEN_REMIX_WEIGHTS``), e.g. the tiny weights.
        workdir: a fresh directory for the server's log and its ``TMPDIR``.
        upload_url: passed as ``--upload-url`` (async predictions upload their outputs there).
        env: extra environment variables.

    Raises:
        ServerError: coglet is importable, or the server exited or was not READY in time.
    """
    # cog 0.16.12's server silently hands over to the Rust server when it can import coglet.
    if importlib.util.find_spec("coglet") is not None:
        raise ServerError("coglet is installed: cog 0.16.12 would hand over to the Rust server; uninstall it")
    port = free_port()
    tmpdir = workdir / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.pop("COG_WEIGHTS", None)  # setup() then gets ./weights, i.e. the deployment's default model
    full_env.update({
        "PORT": str(port),
        "COG_PREDICT_TYPE_STUB": f"predict.py:{predictor}",
        "MUSICGEN_REMIX_WEIGHTS": str(weights),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(tmpdir),
        # Webhooks at most every 0.1 s (default 0.5 s); 0.1 is the lowest that still sends the start event.
        "COG_THROTTLE_RESPONSE_INTERVAL": "0.1",
        **(env or {}),
    })
    command = [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"]
    if upload_url is not None:
        command += ["--upload-url", upload_url]
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=full_env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = CogServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path, tmpdir=tmpdir,
                       predictor=predictor)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: CogServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    status = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"the Cog server ({server.predictor}) exited with code {server.process.returncode} "
                              f"before it was ready; its output:\n{server.log_tail()}")
        try:
            status = server.health().get("status", "no status")
        except requests.RequestException as exc:
            status = f"no answer ({type(exc).__name__})"
        if status == "READY":
            return
        if status in ("SETUP_FAILED", "DEFUNCT"):
            break
        time.sleep(0.25)
    raise ServerError(f"the Cog server ({server.predictor}) is not READY after {READY_TIMEOUT_S:.0f} s (last "
                      f"status: {status}); its output:\n{server.log_tail()}")


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left of it."""
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    # The group may outlive its leader (the predictor worker is a child process).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid``, read from /proc (no psutil needed)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after its closing one.
        fields = text[text.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ----------------------------------------------------------------------------------------------------
# Local HTTP peers


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up early (timeouts, size caps) are part of these tests


class _Peer:
    """A threaded http.server on 127.0.0.1 and a free port, stopped by :meth:`close` (or ``with``)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0], 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


@dataclass
class Hook:
    """One webhook POST: its JSON body and when it arrived (``time.monotonic()``)."""

    body: dict
    at: float


@dataclass
class Upload:
    path: str
    body: bytes
    headers: dict[str, str]


class Receiver(_Peer):
    """Records webhook POSTs (any path) and output uploads (``PUT /upload/<name>``)."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.uploads: list[Upload] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = json.loads(_read_body(self) or b"{}")
                with receiver._lock:
                    receiver.hooks.append(Hook(body, time.monotonic()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_PUT(self) -> None:  # noqa: N802 - stdlib name
                body = _read_body(self)
                with receiver._lock:
                    receiver.uploads.append(Upload(self.path, body, dict(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)

    @property
    def webhook_url(self) -> str:
        return f"{self.base}/webhook"

    @property
    def upload_url(self) -> str:
        return f"{self.base}/upload/"

    def hooks_for(self, prediction_id: str) -> list[Hook]:
        with self._lock:
            return [hook for hook in self.hooks if hook.body.get("id") == prediction_id]

    def wait_for(self, prediction_id: str, condition: Any, timeout: float = 60.0) -> Hook:
        """The first webhook of ``prediction_id`` whose body satisfies ``condition``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for hook in self.hooks_for(prediction_id):
                if condition(hook.body):
                    return hook
            time.sleep(0.02)
        statuses = [hook.body.get("status") for hook in self.hooks_for(prediction_id)]
        raise TimeoutError(f"no webhook for {prediction_id} met the condition in {timeout} s (got {statuses})")

    def wait_terminal(self, prediction_id: str, timeout: float = 60.0) -> Hook:
        return self.wait_for(prediction_id, lambda body: body.get("status") in ("succeeded", "failed", "canceled"),
                             timeout)


@dataclass
class _Served:
    data: bytes
    etag: str | None
    last_modified: str | None


class FileServer(_Peer):
    """Serves bytes by path, with a strong ``ETag`` and ``Last-Modified``; honours ``If-None-Match`` and
    ``If-Modified-Since`` with 304. Counts full GETs (200) and 304s per path; unknown paths get 404."""

    def __init__(self) -> None:
        self.files: dict[str, _Served] = {}
        self.full_gets: dict[str, int] = {}
        self.not_modified: dict[str, int] = {}
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                self._answer(body=True)

            def _answer(self, *, body: bool) -> None:
                served = state.files.get(self.path)
                if served is None:
                    self.send_error(404)
                    return
                if served.etag is not None and (self.headers.get("If-None-Match") == served.etag or (
                        "If-None-Match" not in self.headers
                        and self.headers.get("If-Modified-Since") == served.last_modified)):
                    state.not_modified[self.path] = state.not_modified.get(self.path, 0) + 1
                    self.send_response(304)
                    self.send_header("ETag", served.etag)
                    self.end_headers()
                    return
                if body:
                    state.full_gets[self.path] = state.full_gets.get(self.path, 0) + 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(served.data)))
                if served.etag is not None and served.last_modified is not None:
                    self.send_header("ETag", served.etag)
                    self.send_header("Last-Modified", served.last_modified)
                self.end_headers()
                if body:
                    self.wfile.write(served.data)

        super().__init__(Handler)

    def add(self, path: str, data: bytes, *, validators: bool = True) -> str:
        """Serve ``data`` at ``path`` (replacing what was there: a new ETag) and return its URL.

        With ``validators=False`` the answers carry neither ``ETag`` nor ``Last-Modified``.
        """
        if validators:
            self.files[path] = _Served(data, f'"{hashlib.sha256(data).hexdigest()[:32]}"',
                                       email.utils.formatdate(time.time(), usegmt=True))
        else:
            self.files[path] = _Served(data, None, None)
        return self.base + path

    def gets(self, path: str) -> tuple[int, int]:
        """(full GETs, 304 answers) of ``path`` so far."""
        return self.full_gets.get(path, 0), self.not_modified.get(path, 0)


class SilentPort:
    """A port that accepts TCP connections (the kernel's backlog) and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.base = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def close(self) -> None:
        self._sock.close()


# ----------------------------------------------------------------------------------------------------
# The seed schema pages

# A seed type of "None" is how the seed page shows a `choices` input: a string enum in the schema.
SEED_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean", "number": "number",
              "None": "enum"}
_ROW_START = re.compile(r"^\| (\w+) \|\s*$")
_RANGE = re.compile(r"^(?P<default>.*?)\s*(?:Min: (?P<min>\S+))?\s*(?:Max: (?P<max>\S+))?$")


@dataclass(frozen=True)
class SeedInput:
    kind: str  # the seed page's type (see SEED_TYPES)
    default: str | None  # the default as the page writes it; None when the input has none
    minimum: str | None = None
    maximum: str | None = None


def parse_seed_schema(text: str) -> tuple[dict[str, tuple[str, str | None]], dict]:
    """``({input: (type, default or None)}, output schema)`` from a saved Replicate schema page."""
    inputs, output = parse_seed_inputs(text)
    return {name: (spec.kind, spec.default) for name, spec in inputs.items()}, output


def parse_seed_inputs(text: str) -> tuple[dict[str, SeedInput], dict]:
    """``({input: SeedInput}, output schema)`` from a saved Replicate schema page.

    The page's table rows span several lines: ``| name |``, the type, then either ``| default |
    description |`` or, for inputs without a default, ``| description | |``. A range follows the default
    in the same cell: ``1 Min: 0.5 Max: 2``.
    """
    table, _, after = text.partition("Output schema")
    inputs: dict[str, SeedInput] = {}
    rows: list[tuple[str, list[str]]] = []
    for line in table.splitlines():
        match = _ROW_START.match(line)
        if match:
            rows.append((match.group(1), []))
        elif rows:
            rows[-1][1].append(line)
    for name, body in rows:
        cells = [" ".join(cell.split()) for cell in "\n".join(body).split("|")]
        cells = [cell for cell in cells if cell]
        if len(cells) == 2:  # type, description
            inputs[name] = SeedInput(cells[0], None)
        elif len(cells) == 3:  # type, default (and range), description
            parts = _RANGE.match(cells[1])
            assert parts is not None  # the pattern matches any text
            inputs[name] = SeedInput(cells[0], parts["default"], parts["min"], parts["max"])
        else:
            raise ValueError(f"cannot read the seed schema row for {name!r}: {cells}")
    output = ast.literal_eval(after[after.index("{"): after.rindex("}") + 1])
    return inputs, output


def seed_default(kind: str, text: str) -> object:
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        return {"True": True, "False": False}[text]
    return text


# ----------------------------------------------------------------------------------------------------
# Audio


def audio_bytes(samples: np.ndarray, sample_rate: int, *, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def data_uri(payload: bytes, mime: str = "audio/wav") -> str:
    return f"data:{mime};base64," + base64.b64encode(payload).decode("ascii")


def wav_data_uri(samples: np.ndarray, sample_rate: int) -> str:
    return data_uri(audio_bytes(samples, sample_rate))


def decode_audio_uri(uri: str) -> tuple[np.ndarray, int, str]:
    """``(samples [T] or [T, C], sample rate, container format)`` of a ``data:audio/...;base64,`` URI."""
    assert re.match(r"^data:audio/[\w.+-]+;base64,", uri), f"not an audio data URI: {uri[:80]!r}"
    return decode_audio_bytes(base64.b64decode(uri.split(",", 1)[1], validate=True))


def decode_audio_bytes(payload: bytes) -> tuple[np.ndarray, int, str]:
    info = soundfile.info(io.BytesIO(payload))
    samples, sample_rate = soundfile.read(io.BytesIO(payload), dtype="float32")
    return samples, sample_rate, info.format


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    """``(mime type, payload)`` of a base64 data URI."""
    match = re.match(r"^data:([\w.+/-]+);base64,", uri)
    assert match, f"not a base64 data URI: {uri[:80]!r}"
    return match.group(1), base64.b64decode(uri[match.end():], validate=True)


def sine(seconds: float, sample_rate: int = SAMPLE_RATE, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    mono = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels == 1 else np.repeat(mono[:, None], channels, axis=1)


def schema_problems(openapi: dict, seed_inputs: dict[str, SeedInput], *, file_inputs: tuple[str, ...]) -> list[str]:
    """How the served ``Input`` schema departs from a seed's inputs: type, default, range, file format."""
    schemas = openapi["components"]["schemas"]
    properties = schemas["Input"]["properties"]
    problems: list[str] = []
    for name, spec in seed_inputs.items():
        prop = properties.get(name)
        if prop is None:
            problems.append(f"{name}: missing from the Input schema")
            continue
        kind = SEED_TYPES[spec.kind]
        if kind == "enum":
            ref = prop["allOf"][0]["$ref"].rsplit("/", 1)[-1] if "allOf" in prop else None
            enum = schemas.get(ref, {}) if ref else prop
            if enum.get("type") != "string" or "enum" not in enum:
                problems.append(f"{name}: expected a string enum (choices), got {prop}")
            elif spec.default is not None and spec.default not in enum["enum"]:
                problems.append(f"{name}: default {spec.default!r} is not one of {enum['enum']}")
        elif prop.get("type") != kind:
            problems.append(f"{name}: type {prop.get('type')!r}, seed has {kind!r}")
        if name in file_inputs and prop.get("format") != "uri":
            problems.append(f"{name}: expected format 'uri' (a file input), got {prop}")
        expected = None if spec.default is None else seed_default(kind, spec.default)
        if prop.get("default") != expected:
            problems.append(f"{name}: default {prop.get('default')!r}, seed has {expected!r}")
        for bound, key in ((spec.minimum, "minimum"), (spec.maximum, "maximum")):
            if bound is not None and prop.get(key) != seed_default(kind, bound):
                problems.append(f"{name}: {key} {prop.get(key)!r}, seed has {bound}")
    return problems
