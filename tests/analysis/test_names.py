"""Chords and keys as a musician writes them."""

from __future__ import annotations

import pytest

from musicgen_remix.analysis.chords import Chord
from musicgen_remix.analysis.names import common_name, estimate_key


@pytest.mark.parametrize(("label", "name"), [
    ("C:maj", "C"), ("A:min", "Am"), ("G:min7", "Gm7"), ("G:7", "G7"), ("Eb:maj7", "Ebmaj7"), ("F#:hdim7", "F#m7b5"),
    ("B:dim", "Bdim"), ("D:sus4", "Dsus4"), ("C:maj/3", "C/E"), ("C:7/b7", "C7/Bb"), ("Bb:maj/5", "Bb/F"),
    ("N", "N.C."),
])
def test_lead_sheet_spelling(label: str, name: str) -> None:
    assert common_name(label) == name


def _progression(*labels: str) -> list[Chord]:
    return [Chord(2.0 * i, 2.0 * (i + 1), label) for i, label in enumerate(labels)]


@pytest.mark.parametrize(("labels", "key"), [
    (("G:maj", "C:maj", "D:7", "G:maj"), "G major"),
    (("D:min", "G:min", "A:7", "D:min"), "D minor"),
    (("F:maj", "Bb:maj", "C:7", "F:maj"), "F major"),
    (("E:min", "A:min", "B:7", "E:min"), "E minor"),
    (("Eb:maj", "Ab:maj", "Bb:7", "Eb:maj"), "Eb major"),
])
def test_the_key_of_a_cadence(labels: tuple[str, ...], key: str) -> None:
    found = estimate_key(_progression(*labels))
    assert found is not None and str(found) == key and found.confidence > 0


def test_no_key_without_chords() -> None:
    assert estimate_key(_progression("N", "N")) is None
    assert estimate_key([]) is None
