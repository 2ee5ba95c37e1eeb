"""The analysis of one song as a typed result: its JSON form and a readable summary.

:func:`analyze` runs the beat tracker and the chord recogniser on one :class:`~musicgen_remix.audio.Audio`;
:class:`Analysis` is what a remix reports back (``to_json``) and :func:`format_summary` is the text a person
reads in the logs or the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from musicgen_remix.analysis.beats import Beats, track_beats
from musicgen_remix.analysis.chords import Chord, recognize_chords
from musicgen_remix.analysis.names import common_name, estimate_key
from musicgen_remix.audio import Audio
from musicgen_remix.progress import Progress

# JSON times are rounded to the millisecond, tempo to the hundredth of a bpm: finer is noise.
_TIME_DECIMALS = 3
_BPM_DECIMALS = 2


@dataclass(frozen=True)
class Analysis:
    """Tempo, beats and chords of one song.

    Attributes:
        duration: length of the analysed audio in seconds.
        sample_rate: sample rate of the analysed audio (as given, before any resampling for the networks).
        bpm: tempo of the counted beat (the dotted quarter in 6/8 and 12/8) from the median inter-beat
            interval; None when fewer than two beats were found.
        beats: beat times in seconds.
        downbeats: times of the first beat of each bar, in seconds.
        chords: contiguous chord segments (Harte labels, ``"N"`` for no chord).
        meter: beats per bar; None when unknown.
        time_signature: ``"4/4"``, ``"3/4"``, ``"2/4"``, ``"6/8"``, ``"9/8"`` or ``"12/8"``; None when unknown.
    """

    duration: float
    sample_rate: int
    bpm: float | None
    beats: list[float]
    downbeats: list[float]
    chords: list[Chord]
    meter: int | None = None
    time_signature: str | None = None

    @classmethod
    def from_results(cls, duration: float, sample_rate: int, beats: Beats, chords: list[Chord]) -> Analysis:
        return cls(
            duration=float(duration),
            sample_rate=int(sample_rate),
            bpm=beats.bpm,
            beats=[float(t) for t in beats.times],
            downbeats=[float(t) for t in beats.downbeats],
            chords=list(chords),
            meter=beats.meter,
            time_signature=beats.time_signature,
        )

    def to_json(self) -> dict[str, Any]:
        """The report's ``analysis`` object.

        ``{"duration": s, "sample_rate": int, "bpm": float | null, "beats": [s...], "downbeats": [s...],
        "chords": [{"start": s, "end": s, "label": "G:min7", "name": "Gm7"}...], "meter": int | null,
        "time_signature": "4/4" | ... | null, "key": "G minor" | null}``; times in seconds rounded to the
        millisecond; ``label`` is Harte, ``name`` the lead-sheet spelling.
        """
        key = estimate_key(self.chords)
        return {
            "duration": _seconds(self.duration),
            "sample_rate": int(self.sample_rate),
            "bpm": None if self.bpm is None else round(float(self.bpm), _BPM_DECIMALS),
            "beats": [_seconds(t) for t in self.beats],
            "downbeats": [_seconds(t) for t in self.downbeats],
            "chords": [{"start": _seconds(c.start), "end": _seconds(c.end), "label": c.label,
                        "name": common_name(c.label)} for c in self.chords],
            "meter": self.meter,
            "time_signature": self.time_signature,
            "key": None if key is None else str(key),
        }


def analyze(audio: Audio, *, large_vocabulary: bool = True, progress: Progress | None = None) -> Analysis:
    """Track beats, then recognise chords in ``audio`` with their boundaries snapped to those beats.

    ``progress`` hears when each of the two stages (``beats and tempo``, ``chords``) starts and ends.
    """
    progress = progress or Progress()
    with progress.stage("beats and tempo"):
        beats = track_beats(audio)
    with progress.stage("chords"):
        chords = recognize_chords(audio, large_vocabulary=large_vocabulary, beats=beats.times)
    return Analysis.from_results(audio.duration, audio.sample_rate, beats, chords)


def format_summary(analysis: Analysis) -> str:
    """Readable multi-line summary: duration, tempo, meter, beat and downbeat counts, chord timeline."""
    bpm = "unknown" if analysis.bpm is None else f"{analysis.bpm:.1f} bpm"
    meter = "unknown" if analysis.meter is None else f"{analysis.meter} beats per bar"
    if analysis.time_signature is not None:
        meter += f" ({analysis.time_signature})"
    first = f", first at {analysis.downbeats[0]:.2f} s" if analysis.downbeats else ""
    key = estimate_key(analysis.chords)
    lines = [
        f"duration: {analysis.duration:.2f} s at {analysis.sample_rate} Hz",
        f"tempo: {bpm}; meter: {meter}; key: {'unknown' if key is None else key}",
        f"beats: {len(analysis.beats)}; downbeats (bars): {len(analysis.downbeats)}{first}",
        f"chords: {len(analysis.chords)} segments" + (":" if analysis.chords else ""),
    ]
    bars = analysis.downbeats
    for c in analysis.chords:
        bar = sum(1 for d in bars if d <= c.start + 1e-3)
        where = f"bar {bar:3d}" if bar else "pickup "
        lines.append(f"  {c.start:7.2f} - {c.end:7.2f} s  {where}  {common_name(c.label):8} ({c.label})")
    return "\n".join(lines)


def _seconds(value: float) -> float:
    return round(float(value), _TIME_DECIMALS)
