"""Test songs with known tempo, meter, downbeats and chords: MIDI written with pretty_midi, rendered by
fluidsynth with the General MIDI soundfont (Debian ``fluidsynth`` + ``fluid-soundfont-gm``).

Every song is a loop of bars, one chord per bar: a pad playing the chord, a bass on the root, and a drum
kit (kick on beat 1, snare on the back beat, hi-hats), so beat and chord trackers have what real music gives
them. ``Song`` carries the ground truth (beat and downbeat times, chord segments in Harte syntax).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
# Harte label -> (root pitch class, intervals) for the chords the songs use.
_QUALITIES = {"maj": (0, 4, 7), "min": (0, 3, 7), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10)}
_ROOTS = {"C": 0, "C#": 1, "Db": 1, "D": 2, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6, "G": 7, "Ab": 8, "A": 9,
          "Bb": 10, "B": 11}


@dataclass(frozen=True)
class Song:
    path: Path
    bpm: float
    meter: int
    offset: float  # seconds of silence before the first downbeat
    beats: list[float]
    downbeats: list[float]
    chords: list[tuple[float, float, str]]  # (start, end, Harte label)
    duration: float


def have_fluidsynth() -> bool:
    return shutil.which("fluidsynth") is not None and SOUNDFONT.exists()


def render_song(path: Path, *, progression: list[str], bpm: float = 120.0, meter: int = 4, bars: int = 8,
                offset: float = 0.0, sample_rate: int = 44100, drums: bool = True, vocal_line: bool = False,
                program: int = 0) -> Song:
    """Render ``bars`` bars cycling through ``progression`` (Harte labels such as ``"A:min"``) to ``path``."""
    import pretty_midi

    beat = 60.0 / bpm
    bar = beat * meter
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    pad = pretty_midi.Instrument(program=program)  # 0: acoustic grand piano
    bass = pretty_midi.Instrument(program=33)  # electric bass (finger)
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    lead = pretty_midi.Instrument(program=52)  # choir aahs: a voice-like line for separation tests
    chords: list[tuple[float, float, str]] = []
    beats: list[float] = []
    for index in range(bars):
        label = progression[index % len(progression)]
        start = offset + index * bar
        root, quality = label.split(":") if ":" in label else (label, "maj")
        pitches = [48 + _ROOTS[root] + i for i in _QUALITIES[quality]]
        chords.append((start, start + bar, f"{root}:{quality}"))
        for b in range(meter):
            t = start + b * beat
            beats.append(t)
            for p in pitches:
                pad.notes.append(pretty_midi.Note(velocity=70, pitch=p + 12, start=t, end=t + beat * 0.95))
            bass.notes.append(pretty_midi.Note(velocity=90, pitch=36 + _ROOTS[root], start=t, end=t + beat * 0.9))
            if drums:
                kit.notes.append(pretty_midi.Note(velocity=110 if b == 0 else 60, pitch=36 if b == 0 else 42,
                                                  start=t, end=t + 0.1))
                if b % 2 == 1:
                    kit.notes.append(pretty_midi.Note(velocity=90, pitch=38, start=t, end=t + 0.1))
            if vocal_line:
                lead.notes.append(pretty_midi.Note(velocity=80, pitch=pitches[b % len(pitches)] + 24, start=t,
                                                   end=t + beat * 0.9))
    midi.instruments += [pad, bass] + ([kit] if drums else []) + ([lead] if vocal_line else [])
    mid = path.with_suffix(".mid")
    midi.write(str(mid))
    subprocess.run(["fluidsynth", "-ni", "-q", "-F", str(path), "-r", str(sample_rate), "-g", "0.6",
                    str(SOUNDFONT), str(mid)], check=True, capture_output=True)
    duration = offset + bars * bar
    return Song(path=path, bpm=bpm, meter=meter, offset=offset, beats=beats,
                downbeats=[offset + i * bar for i in range(bars)], chords=chords, duration=duration)
