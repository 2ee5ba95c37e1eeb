"""The package's modules depend in one direction: every import goes to the same layer or one below.

Layers, bottom to top (what each may use):

1. ``errors`` — the error family (and the package's ``__init__``: its version).
2. ``audio`` — reading, writing, normalising audio.
3. ``weights`` — the registry and downloads (files, not models).
4. ``models`` — loading checkpoints safely into models, the model store.
5. ``analysis`` — beats, chords, chroma of a song (no models of ours).
6. ``engine`` — shared inputs, sampling, seeds, progress, token generation and decoding.
7. ``generate``, ``remix`` — the two pipelines (neither imports the other).
8. ``service`` — what an entrypoint holds: models loaded once, requests served.
9. ``serving``, ``serve`` — the Cog entrypoints' plumbing and the ``serve`` command.
10. ``cli`` — the command line, and ``__main__`` above it.

``fixtures`` is never imported by the package (it is made of the package's parts, for tests and benchmarks).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "musicgen_remix"
LAYERS = [["errors", "__init__"], ["audio"], ["weights"], ["models"], ["analysis"], ["engine"], ["generate", "remix"],
          ["service"], ["serving", "serve"], ["cli"], ["__main__"]]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _unit(path: Path) -> str:
    """The layer unit of a module file: its subpackage, or its own name for top-level modules."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every ``musicgen_remix`` (and ``fixtures``) import in ``path``, module-level or deferred, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(name, node.lineno) for name in names if name.split(".")[0] in ("musicgen_remix", "fixtures")]
    return found


def test_every_module_is_in_a_layer() -> None:
    units = {_unit(path) for path in PACKAGE.rglob("*.py")}
    assert units <= set(RANK), f"modules outside the layer order: {sorted(units - set(RANK))}"


def test_imports_only_go_down() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        for name, line in _imports(path):
            parts = name.split(".")
            if parts[0] == "fixtures":
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports the test fixtures ({name})")
                continue
            target = parts[1] if len(parts) > 1 else "__init__"
            if target == unit:
                continue
            if RANK[target] >= RANK[unit]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({unit}) imports {name} ({target})")
    assert not upward, "imports that go up or sideways:\n" + "\n".join(upward)
