"""Every input of the remix entrypoint, with its default (read by Cog, the CLI and the library), and the
checks that need no model or audio."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from musicgen_remix.analysis.chords import DEFAULT_BAR_SECONDS, parse_chord_progression
from musicgen_remix.analysis.chroma import check_chroma_coefficient
from musicgen_remix.engine.inputs import SharedInputs, check_text, clean_prompt, input_defaults
from musicgen_remix.errors import InputError
from musicgen_remix.remix.beatsync import resolve_threshold

CHORD_VERSIONS = ("chord", "stereo-chord", "chord-large", "stereo-chord-large")
SONG_MIN_S = 5.0
SONG_MAX_S = 300.0
CHORDS_MAX_CHARS = 1000


@dataclass(frozen=True)
class RemixRequest(SharedInputs):
    """Every input of the remix entrypoint, with its default (read by Cog, the CLI and the library)."""

    prompt: str | None = None
    music_input: Path | None = None
    beat_sync_threshold: float | None = 0.75
    chroma_coefficient: float = 1.0
    model_version: str = "stereo-chord"
    large_chord_voca: bool = True
    chords: str | None = None


def remix_defaults() -> dict[str, object]:
    return input_defaults(RemixRequest)


def check_remix_request(req: RemixRequest) -> str:
    """Raise :class:`InputError` for inputs that cannot work; returns the cleaned prompt."""
    prompt = clean_prompt(req.prompt)
    if prompt is None:
        raise InputError("prompt", req.prompt, "a description of the new arrangement, e.g. 'bossa nova, "
                                               "nylon guitar'")
    if req.music_input is None:
        raise InputError("music_input", None, "an audio file of the song to remix")
    req.check_shared()
    if req.model_version not in CHORD_VERSIONS:
        raise InputError("model_version", req.model_version, f"one of {', '.join(CHORD_VERSIONS)}")
    check_chroma_coefficient(req.chroma_coefficient)
    resolve_threshold(req.beat_sync_threshold, bpm=None)  # range check; the song's tempo comes later
    if req.chords is not None:
        check_text("chords", req.chords, CHORDS_MAX_CHARS)
    if req.chords is not None and req.chords.strip():
        # The chord names, checked before any audio work (laying them over the bars needs the downbeats).
        parse_chord_progression(req.chords, (), DEFAULT_BAR_SECONDS)
    return prompt
