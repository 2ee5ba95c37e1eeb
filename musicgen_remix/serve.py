"""``python -m musicgen_remix serve ENTRYPOINT``: Cog's own HTTP server for one entrypoint, from a checkout.

The current Cog runtime (``cog`` 0.23, whose server is the Rust ``coglet``) runs without Docker, but it
needs what ``cog build`` would have put in an image, and it reads nothing from ``cog.yaml``:

- the entrypoint's OpenAPI schema at ``.cog/openapi_schema.json`` in its working directory (for input
  validation and ``/openapi.json``): one per entrypoint, so each gets a working directory of its own
  (``.cache/serve/<entrypoint>/``) holding a copy of ``openapi/<entrypoint>.json``;
- the runner as ``COG_PREDICT_TYPE_STUB`` (``<checkout>/predict.py:<Class>``);
- this environment's Python first on ``PATH`` (the server starts its worker as ``python``).

Then this process becomes the server (``exec``), so signals reach it directly. The port comes from
``--port`` (Cog reads ``PORT``); ``--upload-url`` is Cog's own option.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from musicgen_remix.errors import InputError

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO_ROOT / "openapi"
RUN_DIR = REPO_ROOT / ".cache" / "serve"


@dataclass(frozen=True)
class Served:
    """An entrypoint: its runner class in predict.py and its Cog config."""

    runner: str
    config: str


ENTRYPOINTS: dict[str, Served] = {
    "generate": Served("GenerateRunner", "cog.generate.yaml"),
    "remix": Served("RemixRunner", "cog.yaml"),
    "remix-detailed": Served("RemixDetailedRunner", "cog.remix-detailed.yaml"),
}


def schema_path(entrypoint: str) -> Path:
    """The committed OpenAPI schema of ``entrypoint`` (what ``cog build`` writes for it)."""
    return SCHEMA_DIR / f"{entrypoint}.json"


def prepare(entrypoint: str) -> tuple[Path, dict[str, str]]:
    """The working directory and environment Cog's server needs to serve ``entrypoint``.

    Raises:
        InputError: an unknown entrypoint, naming the known ones.
    """
    if entrypoint not in ENTRYPOINTS:
        raise InputError("ENTRYPOINT", entrypoint, f"one of {', '.join(ENTRYPOINTS)}")
    workdir = RUN_DIR / entrypoint
    schema = workdir / ".cog" / "openapi_schema.json"
    schema.parent.mkdir(parents=True, exist_ok=True)
    partial = schema.with_suffix(f".{os.getpid()}.part")  # several servers may start at once: replace atomically
    shutil.copyfile(schema_path(entrypoint), partial)
    os.replace(partial, schema)
    env = dict(os.environ)
    env["COG_PREDICT_TYPE_STUB"] = f"{REPO_ROOT / 'predict.py'}:{ENTRYPOINTS[entrypoint].runner}"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return workdir, env


def serve(entrypoint: str, *, host: str = "127.0.0.1", port: int = 5000, upload_url: str | None = None) -> None:
    """Replace this process with Cog's server for ``entrypoint`` (returns only if that fails to start)."""
    if not 0 < port < 65536:
        raise InputError("--port", port, "a TCP port from 1 to 65535")
    workdir, env = prepare(entrypoint)
    env["PORT"] = str(port)
    if env.get("WEBHOOK_AUTH_TOKEN"):
        logger.warning("WEBHOOK_AUTH_TOKEN is set: Cog sends it as a bearer token to every webhook URL a caller "
                       "names; set it only where callers cannot choose webhooks (see the README)")
    command = [sys.executable, "-m", "cog.server.http", "--host", host]
    if upload_url:
        command += ["--upload-url", upload_url]
    sys.stdout.flush()
    sys.stderr.flush()
    # The server reads .cog/openapi_schema.json relative to its working directory: it must start there.
    os.chdir(workdir)
    os.execve(sys.executable, command, env)
