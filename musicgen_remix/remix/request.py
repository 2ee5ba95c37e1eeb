"""Every input of the remix entrypoint, with its default (read by Cog, the CLI and the library), and the
one check that turns a request into a :class:`RemixJob` before any model is looked for or audio decoded (the
song's length is read from its file's header)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

from musicgen_remix.analysis.chords import DEFAULT_BAR_SECONDS, parse_chord_progression
from musicgen_remix.analysis.chroma import check_chroma_coefficient
from musicgen_remix.audio.io import check_audio_file, check_declared_length
from musicgen_remix.engine.inputs import Shared, SharedInputs, check_text, clean_prompt, input_defaults
from musicgen_remix.errors import InputError
from musicgen_remix.remix.beatsync import check_threshold

ChordVersion = Literal["chord", "stereo-chord", "chord-large", "stereo-chord-large"]
CHORD_VERSIONS: tuple[str, ...] = get_args(ChordVersion)
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


@dataclass(frozen=True)
class RemixJob:
    """A remix request checked once: typed, in range, what the pipeline takes."""

    prompt: str  # whitespace collapsed
    music_input: Path
    beat_sync_threshold: float | None  # seconds; None: 1.1 beats of the song, once its tempo is known
    chroma_coefficient: float
    model_version: ChordVersion
    large_chord_voca: bool
    chords: str | None  # a progression whose every name is known; None: recognise the song's chords
    shared: Shared
    request: RemixRequest  # what the caller sent, for the provenance record


def remix_defaults() -> dict[str, object]:
    return input_defaults(RemixRequest)


def check_remix_request(req: RemixRequest) -> RemixJob:
    """Every check that needs no model or audio, once.

    Raises:
        InputError: naming the first input that cannot work, its value and what is allowed.
    """
    prompt = clean_prompt(req.prompt)
    if prompt is None:
        raise InputError("prompt", req.prompt, "a description of the new arrangement, e.g. 'bossa nova, "
                                               "nylon guitar'")
    if req.music_input is None:
        raise InputError("music_input", None, "an audio file of the song to remix")
    _check_song_file(Path(req.music_input))
    shared = req.check_shared()
    if req.model_version not in CHORD_VERSIONS:
        raise InputError("model_version", req.model_version, f"one of {', '.join(CHORD_VERSIONS)}")
    coefficient = check_chroma_coefficient(req.chroma_coefficient)
    threshold = check_threshold(req.beat_sync_threshold)
    chords = None
    if req.chords is not None and check_text("chords", req.chords, CHORDS_MAX_CHARS).strip():
        # The chord names, checked before any audio work (laying them over the bars needs the downbeats).
        parse_chord_progression(req.chords, (), DEFAULT_BAR_SECONDS)
        chords = req.chords
    return RemixJob(prompt=prompt, music_input=req.music_input, beat_sync_threshold=threshold,
                    chroma_coefficient=coefficient, model_version=cast(ChordVersion, req.model_version),
                    large_chord_voca=bool(req.large_chord_voca), chords=chords, shared=shared, request=req)


def _check_song_file(path: Path) -> None:
    """The song's file: usable, and as long as a song the remix takes, by its header (when it says)."""
    check_audio_file(path, "music_input")
    check_declared_length(path, "music_input", min_s=SONG_MIN_S, max_s=SONG_MAX_S,
                          too_short=f"a song of at least {SONG_MIN_S:.0f} s")
