"""Plots a musician reads: the waveform with numbered bars, beats, and the chords in lead-sheet spelling.

:func:`plot_analysis` draws one song's analysis (``analyze --plot``); :func:`draw_song` and
:func:`draw_chords` are the panels the remix and sync plots share. The format follows the file's suffix
(PNG, PDF, JPEG, SVG: whatever matplotlib writes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musicgen_remix.analysis.names import common_name, estimate_key

if TYPE_CHECKING:
    from musicgen_remix.analysis.chords import Chord
    from musicgen_remix.analysis.summary import Analysis

MAX_BAR_LABELS = 48  # beyond this many bars, every n-th bar is numbered


def figure(rows: int, heights: Sequence[float]) -> tuple[Any, list[Any]]:
    """A figure of ``rows`` panels sharing the time axis.

    A bare :class:`matplotlib.figure.Figure` (Agg canvas), not pyplot: no process-wide figure registry to
    share between the server's prediction threads, and nothing kept once the figure is dropped.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 1.6 * sum(heights)))
    axes = fig.subplots(rows, 1, sharex=True, gridspec_kw={"height_ratios": list(heights)})
    return fig, list(np.atleast_1d(axes))


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def draw_song(ax: Any, song: np.ndarray, sample_rate: int, downbeats: Sequence[float], *,
              beats: Sequence[float] = (), label: str = "song", title: str = "") -> None:
    """The waveform, a thin line per beat, a line per downbeat with the bar's number above it."""
    step = max(1, len(song) // 20000)  # enough points for the envelope, cheap to draw
    t = np.arange(0, len(song), step) / sample_rate
    ax.plot(t, song[::step], linewidth=0.4, color="0.4")
    for b in beats:
        ax.axvline(b, color="tab:blue", linewidth=0.3, alpha=0.35)
    every = max(1, int(np.ceil(len(downbeats) / MAX_BAR_LABELS)))
    for number, d in enumerate(downbeats, start=1):
        ax.axvline(d, color="tab:blue", linewidth=0.9, alpha=0.8)
        if (number - 1) % every == 0:
            ax.text(d, 1.02, str(number), transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=7, color="tab:blue")
    ax.set_ylabel(label)
    if title:
        # parse_math=False: a prompt with "$...$" is text, not mathtext (which fails on "$^$").
        ax.set_title(title, parse_math=False, pad=14)


def draw_chords(ax: Any, chords: Sequence[Chord], duration: float) -> None:
    """The chord timeline, each chord in lead-sheet spelling, one colour per chord."""
    from matplotlib import colormaps

    palette = colormaps["tab20"]
    labels = sorted({c.label for c in chords})
    for chord in chords:
        fill: Any = "0.9" if chord.label == "N" else palette(labels.index(chord.label) % 20)
        ax.axvspan(chord.start, chord.end, color=fill, alpha=0.8)
        if chord.end - chord.start > duration / 80:
            ax.text((chord.start + chord.end) / 2, 0.5, common_name(chord.label), ha="center", va="center",
                    fontsize=7, rotation=90)
    key = estimate_key(chords)
    ax.set_yticks([])
    ax.set_ylabel("chords" if key is None else f"chords\n({key})")
    ax.set_xlabel("seconds")
    ax.set_xlim(0, duration)


def plot_analysis(path: Path, *, song: np.ndarray, sample_rate: int, analysis: Analysis, title: str = "") -> Path:
    """One song's analysis: numbered bars over the waveform, beats, chords, key; ``song`` mono ``[T]``."""
    fig, (ax_song, ax_chords) = figure(2, [3, 1])
    tempo = "tempo unknown" if analysis.bpm is None else f"{analysis.bpm:.1f} bpm"
    signature = analysis.time_signature or (f"{analysis.meter} beats per bar" if analysis.meter else "metre unknown")
    draw_song(ax_song, song, sample_rate, analysis.downbeats, beats=analysis.beats,
              title=title or f"{tempo}, {signature}: bars numbered, beats and downbeats")
    from matplotlib.lines import Line2D

    ax_song.legend(handles=[Line2D([], [], color="tab:blue", linewidth=0.9, label="downbeat (bar number above)"),
                            Line2D([], [], color="tab:blue", linewidth=0.3, alpha=0.5, label="beat")],
                   loc="upper right", fontsize=7)
    draw_chords(ax_chords, analysis.chords, analysis.duration)
    return save(fig, path)
