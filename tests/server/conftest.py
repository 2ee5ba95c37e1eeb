"""The real Cog HTTP server of the pinned version (0.16.12), serving a predictor class on tiny weights.

Each server runs as a subprocess from the repository root, as ``python -m cog.server.http`` does in a
Cog image, in its own process group (teardown ends the server and its predictor worker together) and
with its own ``TMPDIR``. Servers are module-scoped: a module starts the few it needs through
``cog_servers`` and they stop when the module ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import CogServer, Receiver, ServerError, start_cog_server

__all__ = ["CogServer"]

StartServer = Callable[..., CogServer]


@pytest.fixture(scope="module")
def cog_servers(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """``start(predictor="GeneratePredictor", *, upload_url=None, env=None, weights=None)`` -> a READY server.

    ``weights`` defaults to the tiny weights; the server listens on 127.0.0.1 and a free port.

    Every server started through it is stopped when the module ends.
    """
    started: list[CogServer] = []

    def start(predictor: str = "GeneratePredictor", *, upload_url: str | None = None,
              env: dict[str, str] | None = None, weights: Path | None = None) -> CogServer:
        workdir = tmp_path_factory.mktemp(f"cog-{predictor}")
        try:
            server = start_cog_server(predictor, weights=weights or tiny_weights, workdir=workdir,
                                      upload_url=upload_url, env=env)
        except ServerError as exc:
            pytest.fail(str(exc))
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def cog_server(cog_servers: StartServer) -> CogServer:
    """``GeneratePredictor`` behind the real HTTP server, READY, on 127.0.0.1 and a free port."""
    return cog_servers("GeneratePredictor")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A local webhook and upload receiver for the module."""
    with Receiver() as peer:
        yield peer
