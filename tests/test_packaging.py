"""The Cog configs and requirement files agree with each other and with the environment the tests run.

Nothing here builds an image (no Docker on these machines): the checks are on the files themselves.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COG_CONFIGS = {"cog.yaml": "RemixRunner", "cog.generate.yaml": "GenerateRunner",
               "cog.remix-detailed.yaml": "RemixDetailedRunner"}
COG_PACKAGES = {"cog", "coglet"}  # the CLI installs the SDK of build.sdk_version and strips these from requirements
CUDA_TORCH = {"torch": "2.11.0", "torchaudio": "2.11.0"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of the ``name==version`` lines of a requirements file."""
    pins: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        match = _PIN.match(line)
        assert match, f"{path.name}: not an exact pin: {raw!r}"
        name = canonical(match.group(1))
        assert name not in pins, f"{path.name}: {name} is pinned twice"
        pins[name] = match.group(2)
    return pins


def load_config(name: str) -> dict:
    with (REPO / name).open(encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    assert isinstance(config, dict), f"{name} is not a mapping"
    return config


def run_commands(config: dict) -> list[str]:
    """``build.run`` as strings (an item is a command string or a ``{command: ..., mounts: ...}`` map)."""
    return [item["command"] if isinstance(item, dict) else item for item in config["build"].get("run") or []]


def pip_installs(command: str) -> tuple[bool, dict[str, str]]:
    """``(--no-deps given, {package: version})`` of a ``pip install`` command line."""
    words = shlex.split(command)
    assert "install" in words, f"not a pip install: {command!r}"
    packages: dict[str, str] = {}
    for word in words[words.index("install") + 1:]:
        if word.startswith("-"):
            continue
        match = _PIN.match(word)
        assert match, f"unpinned package in build.run: {word!r} (in {command!r})"
        packages[canonical(match.group(1))] = match.group(2)
    return "--no-deps" in words, packages


def predictor_classes() -> set[str]:
    tree = ast.parse((REPO / "predict.py").read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


def test_cuda_requirements_contain_every_base_pin() -> None:
    base = read_pins(REPO / "requirements" / "base.txt")
    cuda = read_pins(REPO / "requirements" / "cuda.txt")
    missing = {name: version for name, version in base.items()
               if cuda.get(name) != version and name not in COG_PACKAGES}
    assert not missing, f"requirements/cuda.txt lacks these base.txt pins (or pins another version): {missing}"
    assert not COG_PACKAGES & set(cuda), "the image's Cog comes from build.sdk_version, not requirements"
    extra = set(cuda) - set(base) - set(CUDA_TORCH)
    assert not extra, f"requirements/cuda.txt pins packages that base.txt does not: {sorted(extra)}"


def test_cuda_requirements_pin_the_cuda_torch() -> None:
    cuda = read_pins(REPO / "requirements" / "cuda.txt")
    assert {name: cuda.get(name) for name in CUDA_TORCH} == CUDA_TORCH


def test_cuda_index_matches_the_image_cuda() -> None:
    """The torch wheel index named in cuda.txt is the CUDA version the image is built for."""
    text = (REPO / "requirements" / "cuda.txt").read_text(encoding="utf-8")
    indexes = re.findall(r"^--(?:extra-)?index-url\s+https://download\.pytorch\.org/whl/cu(\d+)\s*$", text, re.M)
    cuda = str(load_config("cog.yaml")["build"]["cuda"])
    assert indexes == [cuda.replace(".", "")], (indexes, cuda)


def test_nodeps_packages_are_never_resolved_with_dependencies() -> None:
    nodeps = read_pins(REPO / "requirements" / "nodeps.txt")
    for name in ("base.txt", "cuda.txt"):
        resolved = read_pins(REPO / "requirements" / name)
        assert not set(nodeps) & set(resolved), f"requirements/{name} would resolve {set(nodeps) & set(resolved)}"


def test_cog_configs_share_one_build() -> None:
    first, *others = (load_config(name) for name in COG_CONFIGS)
    for other in others:
        assert other["build"] == first["build"]
        assert {k: v for k, v in other.items() if k != "run"} == {k: v for k, v in first.items() if k != "run"}


def test_build_is_the_cuda_image() -> None:
    build = load_config("cog.yaml")["build"]
    assert build["gpu"] is True
    assert str(build["python_version"]) == "3.11"
    assert str(build["cuda"]) in ("12.6", "12.8")  # torch 2.11's CUDA 12 builds
    assert build["python_requirements"] == "requirements/cuda.txt"
    assert "python_packages" not in build  # Cog accepts one of python_packages / python_requirements
    assert {"ffmpeg", "libsndfile1", "rubberband-cli", "build-essential"} <= set(build["system_packages"])


def test_build_run_installs_exactly_the_nodeps_pins_without_deps() -> None:
    nodeps = read_pins(REPO / "requirements" / "nodeps.txt")
    without_deps: dict[str, str] = {}
    for command in run_commands(load_config("cog.yaml")):
        if "pip install" not in command:
            continue
        assert command.startswith("python -m pip install"), f"a bare pip may not be on the image's PATH: {command!r}"
        no_deps, packages = pip_installs(command)
        if no_deps:
            without_deps.update(packages)
        else:
            assert not set(packages) & set(nodeps), f"installed with dependencies: {command!r}"
    assert without_deps == nodeps


def test_sdk_version_is_the_installed_cog() -> None:
    installed = importlib.metadata.version("cog")
    for name in COG_CONFIGS:
        assert str(load_config(name)["build"]["sdk_version"]) == installed, name
    pins = read_pins(REPO / "requirements" / "base.txt")
    assert pins["cog"] == installed
    assert pins["coglet"] == importlib.metadata.version("coglet") == installed


def test_configs_use_the_current_cli_keys() -> None:
    """CLI >= 0.20: ``run:`` names the runner (``predict:`` is deprecated); ``sdk_version`` >= 0.17."""
    for name in COG_CONFIGS:
        config = load_config(name)
        assert "predict" not in config, name
        major, minor = (int(part) for part in str(config["build"]["sdk_version"]).split(".")[:2])
        assert (major, minor) >= (0, 17), name


@pytest.mark.parametrize(("config_name", "class_name"), COG_CONFIGS.items())
def test_run_entries_name_classes_in_predict_py(config_name: str, class_name: str) -> None:
    ref = load_config(config_name)["run"]
    assert ref == f"predict.py:{class_name}", ref
    module, _, cls = ref.partition(":")
    assert (REPO / module).is_file()
    assert cls in predictor_classes(), f"{config_name}: predict.py has no class {cls}"


@pytest.mark.parametrize(("config_name", "class_name"), COG_CONFIGS.items())
def test_serve_command_serves_the_configs_runner(config_name: str, class_name: str) -> None:
    from musicgen_remix.serve import ENTRYPOINTS

    served = {entry.config: entry.runner for entry in ENTRYPOINTS.values()}
    assert served[config_name] == class_name


def runtime_pins() -> set[str]:
    runtime = set(read_pins(REPO / "requirements" / "base.txt")) | set(read_pins(REPO / "requirements" / "nodeps.txt"))
    runtime |= {"torch", "torchaudio"}  # installed first, per machine (scripts/install.sh, cuda.txt)
    return runtime | {"pytsmod"}  # the optional WSOLA stretch engine (GPL-3.0): imported only when asked for


def unpinned_imports(sources: list[Path], pins: set[str]) -> set[str]:
    """Third-party imports in ``sources`` whose distribution is not among ``pins``."""
    distributions = importlib.metadata.packages_distributions()
    missing = set()
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "musicgen_remix":
                    continue
                owners = {canonical(d) for d in distributions.get(top, [])}
                if owners and not owners & pins:
                    missing.add(f"{top} ({', '.join(sorted(owners))}) in {source.relative_to(REPO)}")
    return missing


def test_every_package_import_is_a_runtime_pin() -> None:
    """What the package, predict.py and the fixtures import comes from the runtime pins, not only from the
    test tools: the offline quick start runs ``python -m fixtures.weights`` on a plain install."""
    sources = [*sorted((REPO / "musicgen_remix").rglob("*.py")), REPO / "predict.py",
               *sorted((REPO / "fixtures").rglob("*.py"))]
    missing = unpinned_imports(sources, runtime_pins())
    assert not missing, f"imported but not pinned in requirements/base.txt: {sorted(missing)}"


def test_every_benchmark_import_is_pinned() -> None:
    """The benchmarks run on a ``--dev`` install: runtime and test-tool pins."""
    pins = runtime_pins() | set(read_pins(REPO / "requirements" / "dev.txt"))
    missing = unpinned_imports(sorted((REPO / "benchmarks").rglob("*.py")), pins)
    assert not missing, f"imported but not pinned in requirements/: {sorted(missing)}"
