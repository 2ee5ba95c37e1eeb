"""The real current Cog server (coglet 0.23), started with ``python -m musicgen_remix serve``, on tiny weights.

Servers are module-scoped: a module starts the few it needs through ``cog_servers`` and they stop when the
module ends (with their worker: each runs in its own process group).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fixtures.cogserver import CogServer, ServerError, start_cog_server
from fixtures.peers import FileServer, Receiver

StartServer = Callable[..., CogServer]


@pytest.fixture(scope="module")
def cog_servers(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """``start(entrypoint="generate", *, upload_url=None, env=None, weights=None)`` -> a READY server.

    ``weights`` defaults to the tiny weights; the server listens on 127.0.0.1 and a free port.
    """
    started: list[CogServer] = []

    def start(entrypoint: str = "generate", *, upload_url: str | None = None, env: dict[str, str] | None = None,
              weights: Path | None = None) -> CogServer:
        workdir = tmp_path_factory.mktemp(f"cog-{entrypoint}")
        try:
            server = start_cog_server(entrypoint, weights=weights or tiny_weights, workdir=workdir,
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
    """The generate entrypoint behind the real HTTP server, READY, on 127.0.0.1 and a free port."""
    return cog_servers("generate")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A local webhook and upload receiver for the module."""
    with Receiver() as peer:
        yield peer


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    """A local file server for the module (inputs and weights given by URL)."""
    with FileServer() as peer:
        yield peer
