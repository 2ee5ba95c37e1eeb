"""Chords and keys as a musician writes them: ``Gm7`` beside the Harte label ``G:min7``, ``A minor``.

:func:`common_name` spells a Harte label in lead-sheet notation (slash chords for inversions, ``N.C.`` for
no chord). :func:`estimate_key` finds the key that best explains the chords, weighting each chord's pitch
classes by how long it sounds and correlating them with the Krumhansl-Kessler key profiles (the 24 major
and minor keys); its confidence is the margin of the best key's correlation over the runner-up's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mir_eval
import numpy as np

from musicgen_remix.analysis.chords import NO_CHORD, Chord
from musicgen_remix.analysis.chroma import pitch_classes

# Harte quality -> the suffix a lead sheet writes after the root.
_SUFFIX = {
    "maj": "", "min": "m", "7": "7", "maj7": "maj7", "min7": "m7", "dim": "dim", "aug": "aug",
    "dim7": "dim7", "hdim7": "m7b5", "minmaj7": "m(maj7)", "maj6": "6", "min6": "m6", "9": "9",
    "maj9": "maj9", "min9": "m9", "sus2": "sus2", "sus4": "sus4", "11": "11", "13": "13", "min11": "m11",
    "maj13": "maj13", "min13": "m13", "1": "5", "5": "5",
}
_SHARPS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def common_name(label: str) -> str:
    """Lead-sheet spelling of a Harte label: ``G:min7`` -> ``Gm7``, ``C:maj/3`` -> ``C/E``, ``N`` -> ``N.C.``."""
    if label in (NO_CHORD, "X"):
        return "N.C." if label == NO_CHORD else "X"
    root, quality, extensions, bass = mir_eval.chord.split(label, reduce_extended_chords=False)
    name = root + _SUFFIX.get(quality, f"({quality})")
    if extensions:
        name += "(" + ",".join(sorted(extensions)) + ")"
    if bass and bass != "1":
        semitone = (mir_eval.chord.pitch_class_to_semitone(root) + mir_eval.chord.scale_degree_to_semitone(bass)) % 12
        name += "/" + (_FLATS if "b" in root[1:] or bass.startswith("b") else _SHARPS)[semitone]
    return name


@dataclass(frozen=True)
class Key:
    """A key (``tonic`` spelled with sharps, or flats for the flat keys), ``mode`` major or minor."""

    tonic: str
    mode: str
    confidence: float  # best correlation minus the second best, 0..2

    def __str__(self) -> str:
        return f"{self.tonic} {self.mode}"


def estimate_key(chords: Sequence[Chord]) -> Key | None:
    """The key that best explains ``chords``; None without any sounding chord."""
    histogram = np.zeros(12)
    for chord in chords:
        histogram += pitch_classes(chord.label) * max(0.0, chord.end - chord.start)
    if not histogram.any():
        return None
    scores = []
    for tonic in range(12):
        for mode, profile in (("major", _MAJOR), ("minor", _MINOR)):
            scores.append((float(np.corrcoef(histogram, np.roll(profile, tonic))[0, 1]), tonic, mode))
    scores.sort(reverse=True)
    best, tonic, mode = scores[0]
    flat_keys = {5, 10, 3, 8, 1} if mode == "major" else {2, 7, 0, 5, 10, 3}  # F Bb Eb Ab Db / Dm Gm Cm Fm Bbm Ebm
    spelled = (_FLATS if tonic in flat_keys else _SHARPS)[tonic]
    return Key(spelled, mode, round(best - scores[1][0], 3))
