"""The package's modules depend in one direction: every import goes to the same layer or one below.

Layers, bottom to top (what each may use):

1. ``errors`` — the error family (and the package's ``__init__``: its version); then ``progress``: progress
   reporting and the cancel flag every long stage checks, from analysis to generation.
2. ``audio`` — reading, writing, normalising audio.
3. ``weights`` — the registry and downloads (files, not models).
4. ``models`` — loading checkpoints safely into models, the model store.
5. ``analysis`` — beats, chords, chroma of a song (no models of ours).
6. ``engine`` — shared inputs, sampling, seeds, token generation and decoding.
7. ``generate``, ``remix`` — the two pipelines (neither imports the other).
8. ``service`` — what an entrypoint holds: models loaded once, requests served.
9. ``serving``, ``serve`` — the Cog entrypoints' plumbing and the ``serve`` command.
10. ``cli`` — the command line, and ``__main__`` above it.

Around the package, each room looks only inward: the package never imports ``fixtures``, ``benchmarks`` or
``tests``; ``fixtures`` (made of the package's parts, for tests and benchmarks) never imports ``tests`` or
``benchmarks``; ``benchmarks`` never imports ``tests``; ``predict.py`` (the Cog adapter) reaches the package
only through its ``service`` and ``serving`` layers.

Every import counts: module-level, deferred (inside a function) and type-only (under ``TYPE_CHECKING``),
absolute or relative, ``from pkg import name`` as an import of ``pkg.name`` where that is a module, and
``importlib.import_module`` / ``__import__`` of a literal name. No module of the package may reach itself
again through them (a cycle), nor may a layer (a subpackage or top-level module).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "musicgen_remix"
ROOMS = (PACKAGE, "fixtures", "benchmarks", "tests")
LAYERS = [["errors", "__init__"], ["progress"], ["audio"], ["weights"], ["models"], ["analysis"], ["engine"],
          ["generate", "remix"], ["service"], ["serving", "serve"], ["cli"], ["__main__"]]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# What each room around the package must never import.
FORBIDDEN = {PACKAGE: {"fixtures", "benchmarks", "tests"}, "fixtures": {"tests", "benchmarks"},
             "benchmarks": {"tests"}}
PREDICT_MAY_USE = {f"{PACKAGE}.service", f"{PACKAGE}.serving"}
# Module cycles allowed on purpose, each with its reason: none today.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to a dotted module name, where it was written."""

    source: str  # the importing module's dotted name
    target: str  # the imported module (``pkg.name`` for ``from pkg import name`` when that is a module)
    path: Path
    line: int
    deferred: bool  # written inside a function (run when called, not when the module is imported)

    def __str__(self) -> str:
        where = "deferred" if self.deferred else "module level"
        return f"{self.path.relative_to(ROOT)}:{self.line} ({where}) imports {self.target}"


def _module_name(path: Path) -> str:
    """The dotted name ``path`` is imported as from the repository root (a package's ``__init__``: the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> list[Path]:
    """Every Python file of the package, the rooms around it and ``predict.py``."""
    files = [path for room in ROOMS for path in sorted((ROOT / room).rglob("*.py"))]
    return files + [ROOT / "predict.py"]


MODULES = {_module_name(path): path for path in _sources()}
# Top-level names a test module can be imported by when ``tests/`` is put on ``sys.path`` (as ``conftest`` is).
TEST_TOP_NAMES = {path.stem if path.is_file() else path.name for path in (ROOT / "tests").iterdir()
                  if path.suffix == ".py" or (path / "__init__.py").is_file()}


def _walk(node: ast.AST, deferred: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node under ``node``, each with whether it sits inside a function."""
    for child in ast.iter_child_nodes(node):
        yield child, deferred
        yield from _walk(child, deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def _resolve(source: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names, relative ones (``level`` > 0) resolved against ``source``."""
    if node.level == 0:
        return node.module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _dynamic_import(node: ast.Call) -> str | None:
    """The literal name ``node`` imports if it is ``importlib.import_module("name")`` or ``__import__("name")``."""
    if not node.args:
        return None
    first, func = node.args[0], node.func
    named = (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module")
    return first.value if named and isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def imports_of(path: Path, text: str | None = None) -> list[Import]:
    """Every import in ``path`` (or in ``text``, as if written there), module-level or deferred, resolved to
    dotted module names."""
    source = _module_name(path)
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text)
    for node, deferred in _walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Call)):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(source, path.name == "__init__.py", node)
            # ``from pkg import name`` imports the submodule ``pkg.name`` when there is one, else a name of ``pkg``.
            submodules = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in MODULES]
            named_only = len(submodules) < len(node.names)
            targets = ([module] if named_only or not module else []) + submodules
        else:
            targets = [name] if (name := _dynamic_import(node)) is not None else []
        found += [Import(source, target, path, node.lineno, deferred) for target in targets if target]
    return found


ALL_IMPORTS = [found for path in _sources() for found in imports_of(path)]


def _room(module: str) -> str | None:
    """The room (package, fixtures, benchmarks, tests) a module belongs to, if any."""
    top = module.split(".")[0]
    if top in ROOMS:
        return top
    return "tests" if top in TEST_TOP_NAMES else None


def _unit(module: str) -> str:
    """The layer unit of a package module: its subpackage, or its own name for top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_checker_resolves_what_an_audit_slipped_past_it() -> None:
    """Names imported from a package, relative imports, deferred and dynamic ones all reach the graph."""
    text = ("from musicgen_remix import cli, __version__\nfrom ..service import GenerateService\n"
            "def later():\n    from . import io\n    importlib.import_module('tests.conftest')\n")
    found = [(i.target, i.line, i.deferred) for i in imports_of(ROOT / PACKAGE / "audio" / "tags.py", text)]
    assert found == [("musicgen_remix", 1, False), ("musicgen_remix.cli", 1, False),
                     ("musicgen_remix.service", 2, False), ("musicgen_remix.audio.io", 4, True),
                     ("tests.conftest", 5, True)]


def test_the_checker_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}) == [["a", "b", "c"], ["e"]]
    assert _shortest_cycle({"a": {"b", "c"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c"]) == "a -> c -> a"


def test_every_module_is_in_a_layer() -> None:
    units = {_unit(module) for module in MODULES if module.split(".")[0] == PACKAGE}
    assert units <= set(RANK), f"modules outside the layer order: {sorted(units - set(RANK))}"


def test_imports_only_go_down() -> None:
    upward = []
    for found in ALL_IMPORTS:
        if _room(found.source) != PACKAGE or _room(found.target) != PACKAGE:
            continue
        unit, target = _unit(found.source), _unit(found.target)
        if target != unit and RANK[target] >= RANK[unit]:
            upward.append(f"{found} ({unit} -> {target})")
    assert not upward, "imports that go up or sideways:\n" + "\n".join(upward)


def test_rooms_look_only_inward() -> None:
    crossing = [f"{found} ({_room(found.source)} -> {_room(found.target)})" for found in ALL_IMPORTS
                if _room(found.target) in FORBIDDEN.get(_room(found.source) or "", set())]
    assert not crossing, "imports out of their room:\n" + "\n".join(crossing)


def test_predict_uses_only_the_service_and_serving_layers() -> None:
    outside = [str(found) for found in ALL_IMPORTS if found.source == "predict"
               and _room(found.target) is not None and found.target not in PREDICT_MAY_USE]
    assert not outside, "predict.py imports past the service and serving layers:\n" + "\n".join(outside)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one node (or a node importing itself), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for after in sorted(edges.get(node, ())):
            if after not in index:
                visit(after)
                low[node] = min(low[node], low[after])
            elif after in on_stack:
                low[node] = min(low[node], index[after])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def _shortest_cycle(edges: dict[str, set[str]], members: list[str]) -> str:
    """One shortest cycle through the first of ``members`` (a strongly connected component), as ``a -> b -> a``."""
    start = members[0]
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for after in sorted(edges.get(node, set()) & set(members)):
            if after == start:
                return " -> ".join([*paths[node], start])
            if after not in paths:
                paths[after] = [*paths[node], after]
                queue.append(after)
    raise AssertionError(f"{members} is not a cycle")


def test_no_module_cycles() -> None:
    """No module of the package reaches itself again through imports, deferred and type-only ones included."""
    edges: dict[str, set[str]] = {}
    for found in ALL_IMPORTS:
        if _room(found.source) == PACKAGE and found.target in MODULES and found.target != found.source:
            edges.setdefault(found.source, set()).add(found.target)
    cycles = [_shortest_cycle(edges, members) + (f" (one of {len(members)} modules in a cycle)" if len(members) > 3
                                                 else "")
              for members in _cycles(edges) if frozenset(members) not in ALLOWED_CYCLES]
    assert not cycles, "module import cycles:\n" + "\n".join(cycles)


def test_no_package_cycles() -> None:
    edges: dict[str, set[str]] = {}
    for found in ALL_IMPORTS:
        if _room(found.source) == PACKAGE and _room(found.target) == PACKAGE:
            unit, target = _unit(found.source), _unit(found.target)
            if unit != target:
                edges.setdefault(unit, set()).add(target)
    cycles = [_shortest_cycle(edges, members) for members in _cycles(edges)]
    assert not cycles, "package import cycles:\n" + "\n".join(cycles)
