"""Tests for musicgen_remix.analysis, scored with mir_eval on songs with known beats and chords.

The songs come from ``fixtures/songs.py`` (pretty_midi + fluidsynth). They are rendered once per test process
into a temporary directory and shared by the test modules; the directory is removed at exit.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mir_eval
import numpy as np

from fixtures.songs import have_fluidsynth, render_song

__all__ = ["have_fluidsynth", "render_song"]


@dataclass(frozen=True)
class Case:
    bpm: float
    meter: int
    offset: float  # seconds before the first downbeat
    progression: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.bpm:g}bpm-{self.meter}beats"

    @property
    def bars(self) -> int:
        """About 10 s of music, at least once through the progression."""
        return max(len(self.progression), round(10.0 / (60.0 / self.bpm * self.meter)))


# Three tempos, both meters, an offset before the first downbeat in each, sevenths among the triads.
CASES = (
    Case(90, 4, 0.5, ("C:maj", "A:min", "F:maj", "G:7")),
    Case(120, 3, 0.4, ("G:maj", "E:min", "C:maj", "D:7")),
    Case(140, 4, 0.3, ("E:min", "C:maj", "G:maj", "D:maj")),
    Case(140, 3, 0.6, ("A:min", "F:maj", "C:maj", "G:maj")),
)

_renders: list[tempfile.TemporaryDirectory] = []


@functools.cache
def rendered(case: Case):
    """The rendered song of ``case`` (a ``tests.music.Song``), rendered once per process."""
    if not _renders:
        _renders.append(tempfile.TemporaryDirectory(prefix="analysis-songs-"))
    path = Path(_renders[0].name) / f"{case.id}.wav"
    return render_song(path, progression=list(case.progression), bpm=case.bpm, meter=case.meter, bars=case.bars,
                       offset=case.offset)  # fmt: skip


def majmin_accuracy(reference: list[tuple[float, float, str]], estimate: list) -> float:
    """Duration-weighted major/minor accuracy of ``estimate`` (Chord segments) over the reference's span."""
    ref_intervals = np.array([[start, end] for start, end, _ in reference])
    ref_labels = [label for _, _, label in reference]
    est_intervals = np.array([[c.start, c.end] for c in estimate])
    est_labels = [c.label for c in estimate]
    est_intervals, est_labels = mir_eval.util.adjust_intervals(
        est_intervals, est_labels, ref_intervals.min(), ref_intervals.max(), "N", "N"
    )
    intervals, ref, est = mir_eval.util.merge_labeled_intervals(ref_intervals, ref_labels, est_intervals, est_labels)
    durations = mir_eval.util.intervals_to_durations(intervals)
    return float(mir_eval.chord.weighted_accuracy(mir_eval.chord.majmin(ref, est), durations))
