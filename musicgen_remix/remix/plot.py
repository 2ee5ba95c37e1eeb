"""The remix and sync plots: the song's numbered bars, the take's downbeats before and after beat sync, and
the chords in lead-sheet spelling (panels from :mod:`musicgen_remix.analysis.plot`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicgen_remix.analysis.chords import Chord
from musicgen_remix.analysis.plot import draw_chords, draw_song, figure, save


def plot_remix(path: Path, *, song: np.ndarray, sample_rate: int, song_downbeats: Sequence[float],
               generated_downbeats: Sequence[float], synced_downbeats: Sequence[float],
               chords: Sequence[tuple[float, float, str]], title: str = "") -> Path:
    """Write the remix plot to ``path`` (its suffix decides the format). ``song`` is mono ``[T]``."""
    fig, (ax_song, ax_beats, ax_chords) = figure(3, [3, 1.4, 1])
    draw_song(ax_song, song, sample_rate, song_downbeats, title=title or "remix: downbeats and chords")
    _downbeat_rows(ax_beats, [("song", song_downbeats, "tab:blue"), ("generated", generated_downbeats, "tab:red"),
                              ("synced", synced_downbeats, "tab:green")])
    draw_chords(ax_chords, [Chord(*c) for c in chords], len(song) / sample_rate)
    return save(fig, path)


def plot_sync(path: Path, *, reference: np.ndarray, sample_rate: int, reference_downbeats: Sequence[float],
              take_downbeats: Sequence[float], synced_downbeats: Sequence[float], title: str = "") -> Path:
    """Write the sync plot: the reference's numbered bars, the take's downbeats before and after the stretch."""
    fig, (ax_song, ax_beats) = figure(2, [3, 1.4])
    draw_song(ax_song, reference, sample_rate, reference_downbeats, label="reference",
              title=title or "beat sync: the take's downbeats onto the reference's bars")
    _downbeat_rows(ax_beats, [("reference", reference_downbeats, "tab:blue"), ("take", take_downbeats, "tab:red"),
                              ("synced", synced_downbeats, "tab:green")])
    ax_beats.set_xlabel("seconds")
    ax_beats.set_xlim(0, len(reference) / sample_rate)
    return save(fig, path)


def _downbeat_rows(ax: Any, rows: list[tuple[str, Sequence[float], str]]) -> None:
    for y, (label, times, color) in enumerate(rows):
        ax.vlines(list(times), y - 0.4, y + 0.4, color=color, linewidth=1.2, label=f"{label} downbeats")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("downbeats")
    ax.legend(loc="upper right", fontsize=7, ncols=len(rows))
