"""The restricted unpickler: real training configs load, every hostile pickle is refused before it runs.

Each hostile payload below really does its harm when unpickled without restrictions (checked by
``test_payloads_work_unrestricted``), so "refused and nothing happened" means something.
"""

from __future__ import annotations

import collections
import copyreg
import io
import os
import pathlib
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from fixtures.hostile import PAYLOADS, Reduce, shell
from musicgen_remix.errors import WeightsError
from musicgen_remix.models.safe_load import allowed_globals, safe_torch_load


def _raw(data: bytes) -> Callable[[Path], bytes]:
    return lambda marker: data.replace(b"MARKER", str(marker).encode())


# name -> (how to write the file at `path` given the marker, the global the error must name)
HOSTILE: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "reduce to os.system": (lambda path, m: torch.save({"model": shell(m)}, path), "posix.system"),
    "method of an unlisted class": (
        lambda path, m: torch.save(Reduce(pathlib.Path.touch, pathlib.Path(m)), path), "pathlib.Path"),
    "builtins.exec": (lambda path, m: torch.save(Reduce(exec, f"open('{m}', 'w')"), path), "builtins.exec"),
    "nested inside an allowed config": (
        lambda path, m: torch.save({"xp.cfg": {"a": [1, {"b": shell(m)}]}, "model": {}}, path), "posix.system"),
    "defaultdict whose factory runs a command": (
        lambda path, m: torch.save(collections.defaultdict(shell(m).func), path), "posix.system"),
    "getattr to reach a method": (
        lambda path, m: torch.save(Reduce(getattr, DictConfig, "__init__"), path), "builtins.getattr"),
    "torch.load nested": (lambda path, m: torch.save(Reduce(torch.load, str(m)), path), "torch.serialization.load"),
    "protocol 0 INST opcode (legacy file)": (
        lambda path, m: path.write_bytes(_raw(b"(S'touch MARKER'\nios\nsystem\n.")(m)), "os.system"),
    "Python 2 module name": (
        lambda path, m: path.write_bytes(_raw(b"c__builtin__\neval\n(S'1'\ntR.")(m)), "builtins.eval"),
}


def _write_extension_payload(path: Path, marker: Path) -> None:
    """An EXT opcode: pickle refers to os.system through copyreg's extension registry."""
    copyreg.add_extension("posix", "system", 0x7F01)
    try:
        path.write_bytes(pickle.dumps(shell(marker), protocol=2))
    finally:
        copyreg.remove_extension("posix", "system", 0x7F01)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pickle_is_refused_before_it_runs(tmp_path: Path, name: str) -> None:
    write, offender = HOSTILE[name]
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.th"
    write(path, marker)
    with pytest.raises(WeightsError, match="refused to load") as info:
        safe_torch_load(path)
    assert offender in str(info.value)
    assert "nothing from the file was run" in str(info.value)
    assert not marker.exists()


def test_extension_opcode_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.th"
    _write_extension_payload(path, marker)
    copyreg.add_extension("posix", "system", 0x7F01)  # as if the loading process had it registered
    try:
        with pytest.raises(WeightsError, match="refused to load.*posix.system"):
            safe_torch_load(path)
    finally:
        copyreg.remove_extension("posix", "system", 0x7F01)
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_the_shared_payloads_work_unrestricted_and_are_refused(tmp_path: Path, name: str) -> None:
    """fixtures.hostile's payloads, used by the loader tests at every level, are real and refused here."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.th"
    torch.save({"model": PAYLOADS[name](marker)}, path)
    with pytest.raises(WeightsError, match="refused to load"):
        safe_torch_load(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("name", ["reduce to os.system", "builtins.exec", "protocol 0 INST opcode (legacy file)"])
def test_payloads_work_unrestricted(tmp_path: Path, name: str) -> None:
    """The payloads above are real: an unrestricted load runs them."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.th"
    HOSTILE[name][0](path, marker)
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head == b"PK":
        torch.load(path, weights_only=False)
    else:
        pickle.load(io.BytesIO(path.read_bytes()))  # noqa: S301 - the point of this test
    assert marker.exists()


def test_enum_members_only_through_getattr(tmp_path: Path) -> None:
    path = tmp_path / "enum.th"
    torch.save(Reduce(getattr, collections.OrderedDict, "fromkeys"), path)
    with pytest.raises(WeightsError, match="getattr"):
        safe_torch_load(path)


@pytest.mark.parametrize(("content", "what"), [
    (b"", "empty"),
    (os.urandom(4096), "random bytes"),
    (b'{"xp.cfg": {}, "model": {}}', "JSON"),
    (b"PK\x03\x04 not really a zip", "a broken zip"),
    # A BINBYTES8 opcode declaring 2**40 bytes in a 14-byte file: the unpickler's allocation fails at once
    # (random bytes hit this now and then, which is how it was found).
    (b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"abc", "a huge declared length"),
])
def test_not_a_checkpoint_is_reported_as_such(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "file.th"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="is not a readable torch checkpoint") as info:
        safe_torch_load(path, what="fine-tuned checkpoint")
    assert "file.th" in str(info.value) and "allow" not in str(info.value), what


def test_cached_resolver_config_loads(tmp_path: Path) -> None:
    """The issue's minimal reproduction: a cached resolver leaves a filled defaultdict in the config."""
    OmegaConf.register_new_resolver("test_cached_now", lambda fmt: f"<{fmt}>", use_cache=True, replace=True)
    cfg = OmegaConf.create({"run": {"dir": "outputs/${test_cached_now:%H}"}, "dim": 32})
    assert cfg.run.dir == "outputs/<%H>"
    assert isinstance(cfg._metadata.resolver_cache, collections.defaultdict) and cfg._metadata.resolver_cache
    path = tmp_path / "cfg.th"
    torch.save({"xp.cfg": cfg, "model": {"w": torch.arange(4.0)}}, path)
    with pytest.raises(Exception, match="Unsupported"):
        torch.load(path, weights_only=True)  # what torch's own safe loader does with it
    pkg = safe_torch_load(path)
    assert OmegaConf.to_container(pkg["xp.cfg"], resolve=False) == {"run": {"dir": "outputs/${test_cached_now:%H}"},
                                                                     "dim": 32}
    assert torch.equal(pkg["model"]["w"], torch.arange(4.0))


def test_tensors_are_memory_mapped(tmp_path: Path) -> None:
    path = tmp_path / "big.th"
    torch.save({"w": torch.ones(1 << 20)}, path)
    tensor = safe_torch_load(path)["w"]
    assert str(path) in Path("/proc/self/maps").read_text()  # read in place, not copied into RAM
    assert float(tensor.sum()) == 1 << 20


def test_allow_list_holds_no_callable_with_side_effects() -> None:
    """Every allowed global is a type, a dtype, or one of the pure functions listed here."""
    pure_functions = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                      "encode", "_enum_member"}
    for (module, name), value in allowed_globals().items():
        if isinstance(value, type | torch.dtype) or getattr(value, "__module__", None) == "typing":
            continue
        assert getattr(value, "__name__", None) in pure_functions, (module, name, value)
