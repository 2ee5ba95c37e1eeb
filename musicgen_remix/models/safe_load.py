"""Loading torch checkpoints without ever executing anything a file asks for.

Release, fine-tuned, chord and MultiBand Diffusion checkpoints pickle OmegaConf training configs next to
their tensors. Those configs were composed by Hydra (as dora composes every training run), which leaves a
*filled* ``collections.defaultdict`` (Hydra's cached ``now`` resolver) inside the pickled config; torch's
own weights-only unpickler refuses to fill anything but ``dict``/``OrderedDict``/``Counter``, whatever is
allow-listed, so it cannot load a single real fine-tune.

The project therefore unpickles with a restricted unpickler of its own, passed to ``torch.load``:

- every global the pickle names goes through :meth:`_RestrictedUnpickler.find_class`, which answers only
  from :func:`allowed_globals` — torch's tensor rebuild functions and dtypes, the plain containers, and
  OmegaConf's config and node classes — and raises :class:`RefusedGlobal` for anything else *before* it
  is imported, so ``os.system``, ``builtins.eval``, ``subprocess.Popen`` or any class with side effects in
  its constructor can never be reached;
- ``builtins.getattr`` (how pickle refers to an enum member) is answered by a function that returns
  members of allow-listed enums only;
- tensor storages are read by torch itself (``persistent_load``), memory-mapped from the zip file, so a
  13 GB fine-tune is never held twice in RAM.

Why this is as strict as ``weights_only=True``: pickle can only call what ``find_class`` returns, and every
entry here is a pure constructor or lookup (containers, tensor rebuilders that check storage bounds,
OmegaConf containers whose ``__setstate__`` only stores data). Nothing is resolved: OmegaConf
interpolations stay text until :mod:`musicgen_remix.models.untrusted` checks them.
"""

from __future__ import annotations

import _compat_pickle
import enum
import functools
import io
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any

from musicgen_remix.errors import WeightsError

# (module, name) pairs a checkpoint may name, grouped by why they are harmless.
_TORCH = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter")
_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes",
             "bytearray", "bool")
_TYPING = ("Any", "Dict", "List", "Tuple", "Optional", "Union")
_OMEGACONF = {
    "omegaconf.dictconfig": ("DictConfig",),
    "omegaconf.listconfig": ("ListConfig",),
    "omegaconf.base": ("ContainerMetadata", "Metadata"),
    "omegaconf.nodes": ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "EnumNode",
                        "BytesNode", "PathNode"),
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside :func:`allowed_globals`; nothing of it was imported or run."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name
        super().__init__(f"{module}.{name}")


@functools.cache
def allowed_globals() -> dict[tuple[str, str], Any]:
    """Every global a checkpoint may reference, by ``(module, name)`` as pickle writes it."""
    import collections
    import typing
    from codecs import encode

    import torch

    allowed: dict[tuple[str, str], Any] = {}
    for name in _TORCH:
        allowed["torch._utils", name] = getattr(torch._utils, name)
    for dtype in {getattr(torch, n) for n in dir(torch) if isinstance(getattr(torch, n, None), torch.dtype)}:
        allowed["torch", str(dtype).removeprefix("torch.")] = dtype
    allowed["torch", "Size"] = torch.Size
    allowed["torch", "device"] = torch.device
    allowed["collections", "OrderedDict"] = collections.OrderedDict
    allowed["collections", "defaultdict"] = collections.defaultdict  # Hydra's resolver cache
    allowed["_codecs", "encode"] = encode  # how protocol 2 writes bytes
    import builtins

    for name in _BUILTINS:
        allowed["builtins", name] = getattr(builtins, name)
    allowed["builtins", "getattr"] = _enum_member
    for name in _TYPING:
        allowed["typing", name] = getattr(typing, name)
    for module_name, names in _OMEGACONF.items():
        module = __import__(module_name, fromlist=list(names))
        for name in names:
            allowed[module_name, name] = getattr(module, name)
    return allowed


def _enum_member(owner: Any, name: str) -> Any:
    """``getattr`` as pickle uses it for enum members, limited to members of allow-listed enums."""
    allowed = {value for value in allowed_globals().values() if isinstance(value, type)}
    if isinstance(owner, type) and issubclass(owner, enum.Enum) and owner in allowed \
            and isinstance(name, str) and name in owner.__members__:
        return owner.__members__[name]
    raise RefusedGlobal("builtins", f"getattr({getattr(owner, '__name__', type(owner).__name__)}, {name!r})")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 writes Python 2 names (``__builtin__.unicode``); map them as pickle itself would.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[module, name]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = allowed_globals().get((module, name))
        if found is None:
            raise RefusedGlobal(module, name)
        return found


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# What ``torch.load(pickle_module=...)`` reads: ``Unpickler`` (zip checkpoints) and ``load`` (legacy ones).
restricted_pickle = types.ModuleType("musicgen_remix_restricted_pickle")
restricted_pickle.Unpickler = _RestrictedUnpickler  # type: ignore[attr-defined]
restricted_pickle.load = _restricted_load  # type: ignore[attr-defined]


def safe_torch_load(path: Path | str, *, what: str = "checkpoint") -> Any:
    """``torch.load`` through the restricted unpickler, tensors memory-mapped (zip checkpoints).

    Raises:
        WeightsError: the file names a global outside :func:`allowed_globals` (the message names it;
            nothing was executed), or it is not a torch checkpoint at all.
    """
    import torch

    name = Path(path).name
    try:
        mmap = zipfile.is_zipfile(path)
        # weights_only=False only lifts torch's own allow-list: every global still goes through ours.
        return torch.load(str(path), map_location="cpu", weights_only=False, mmap=mmap,
                          pickle_module=restricted_pickle)
    except RefusedGlobal as exc:
        raise WeightsError(f"refused to load {what} {name}: it references {exc.module}.{exc.name}, which a "
                           "checkpoint may not contain (allowed: tensors, plain containers, OmegaConf configs); "
                           "nothing from the file was run") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            IndexError, TypeError, AttributeError, io.UnsupportedOperation, MemoryError, OverflowError) as exc:
        # MemoryError: a pickle opcode declared a length (BINBYTES8, BINUNICODE8, ...) that the unpickler
        # tried to allocate at once and could not; nothing was filled, the file is not a checkpoint.
        raise WeightsError(f"{what} {name} is not a readable torch checkpoint ({type(exc).__name__}: "
                           f"{_first_line(exc)})") from None


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:limit]
