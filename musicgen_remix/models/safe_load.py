"""Loading torch checkpoints without ever unpickling arbitrary objects.

Release and fine-tuned MusicGen checkpoints (and MBD's) pickle OmegaConf configs next to their
tensors. ``torch.load(weights_only=True)`` refuses those; rather than turning safe loading off, the
OmegaConf classes such a config is made of are allow-listed for the duration of one load. Anything
else in the pickle (a class, a function, ``os.system``...) makes the load fail before it is built.
"""

from __future__ import annotations

import collections
import contextlib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from musicgen_remix.errors import WeightsError


def _allowed_globals() -> list[Any]:
    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode, BooleanNode, EnumNode, FloatNode, IntegerNode, StringNode

    return [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, BooleanNode, EnumNode,
            FloatNode, IntegerNode, StringNode, typing.Any, dict, list, tuple, set, int, float, str,
            bool, collections.defaultdict, collections.OrderedDict]


@contextlib.contextmanager
def allow_configs() -> Iterator[None]:
    """Within this block, ``torch.load(weights_only=True)`` also accepts OmegaConf configs.

    For library loaders (audiocraft's MBD loader) that call ``torch.load`` themselves.
    """
    import torch

    with torch.serialization.safe_globals(_allowed_globals()):
        yield


def safe_torch_load(path: Path | str, *, what: str = "checkpoint") -> Any:
    """``torch.load`` restricted to tensors, containers and OmegaConf configs.

    Raises:
        WeightsError: the file is not a torch checkpoint, or it pickles anything outside the
            allow-list (the message names the offending global; nothing of it was executed).
    """
    import pickle
    import zipfile

    import torch

    try:
        with allow_configs():
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"refused to load {what} {Path(path).name}: it pickles objects outside the safe "
                           f"allow-list (tensors, containers, OmegaConf configs): {_offender(exc)}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError) as exc:
        raise WeightsError(f"{what} {Path(path).name} is not a readable torch checkpoint "
                           f"({type(exc).__name__}: {str(exc)[:200]})") from None


def _offender(exc: Exception) -> str:
    """The line of torch's refusal that names the global, without its advice to load unsafely."""
    for line in str(exc).splitlines():
        if "Unsupported" in line or "GLOBAL" in line:
            return line.strip()
    return type(exc).__name__
