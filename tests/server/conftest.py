"""The real Cog HTTP server of the pinned version (0.16.12), serving GeneratePredictor on tiny weights.

It runs as a subprocess from the repository root, as ``python -m cog.server.http`` does in a Cog
image, in its own process group so that teardown ends the server and its predictor worker together.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_CHARS = 6000


@dataclass
class CogServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-LOG_TAIL_CHARS:]

    def health(self) -> dict:
        response = requests.get(f"{self.url}/health-check", timeout=10)
        response.raise_for_status()
        return response.json()

    def predict(self, inputs: dict, timeout: float = 60.0) -> requests.Response:
        """A synchronous prediction (no id, no webhook): the response carries the finished prediction."""
        return requests.post(f"{self.url}/predictions", json={"input": inputs}, timeout=timeout)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: CogServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    status = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the Cog server exited with code {server.process.returncode} before it was ready; "
                        f"its output:\n{server.log_tail()}")
        try:
            status = server.health().get("status", "no status")
        except requests.RequestException as exc:
            status = f"no answer ({type(exc).__name__})"
        if status == "READY":
            return
        if status in ("SETUP_FAILED", "DEFUNCT"):
            break
        time.sleep(0.25)
    pytest.fail(f"the Cog server is not READY after {READY_TIMEOUT_S:.0f} s (last status: {status}); "
                f"its output:\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
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


@pytest.fixture(scope="module")
def cog_server(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CogServer]:
    """``GeneratePredictor`` behind the real HTTP server, READY, on 127.0.0.1 and a free port."""
    # cog 0.16.12's server silently hands over to the Rust server when it can import coglet.
    assert importlib.util.find_spec("coglet") is None, (
        "coglet is installed: cog 0.16.12 would hand over to the Rust server; uninstall it")
    port = _free_port()
    env = dict(os.environ)
    env.pop("COG_WEIGHTS", None)  # setup() then gets ./weights, i.e. the deployment's default model
    env.update({
        "PORT": str(port),
        "COG_PREDICT_TYPE_STUB": "predict.py:GeneratePredictor",
        "MUSICGEN_REMIX_WEIGHTS": str(tiny_weights),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    log_path = tmp_path_factory.mktemp("cog-server") / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    server = CogServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(process)
