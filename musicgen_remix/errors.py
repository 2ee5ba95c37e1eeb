"""The project's one error family.

Every error a caller can cause is an :class:`InputError` that names the field, the value and what
is allowed, so the server can report it in plain words. Nothing here imports torch or cog.
"""

from __future__ import annotations

from typing import Any


class MusicgenRemixError(Exception):
    """Root of every error this package raises on purpose."""


class InputError(MusicgenRemixError, ValueError):
    """A caller-supplied value is not acceptable.

    Args:
        field: the input's name as the caller knows it (the Cog input name).
        value: the offending value (shortened in the message when long).
        allowed: what would have been accepted, in words.
    """

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={_short(value)} is not allowed: {allowed}")


class AudioError(InputError):
    """An audio input cannot be read or is not usable audio."""


def contract_error(name: str, value: Any, expected: str) -> ValueError:
    """A broken internal contract: code passed a function what it cannot take. A bug, never the caller's input
    (which is checked once, up front, and refused with an :class:`InputError`)."""
    return ValueError(f"{name}={_short(value)}: expected {expected}")


class WeightsError(MusicgenRemixError):
    """Weights are missing, corrupt, of the wrong format or unsafe to load."""


class Canceled(MusicgenRemixError):
    """The caller asked to stop; raised between generation steps."""


class AnalysisError(MusicgenRemixError):
    """Music analysis (beats, chords) produced something unusable, e.g. non-finite network outputs."""


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 15] + f"... ({len(text)} chars)"
    return text
