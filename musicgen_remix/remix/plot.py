"""The remix plot: the song's waveform with its downbeats, the generated downbeats before and after beat
sync, and the chord timeline, in one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def plot_remix(path: Path, *, song: np.ndarray, sample_rate: int, song_downbeats: Sequence[float],
               generated_downbeats: Sequence[float], synced_downbeats: Sequence[float],
               chords: Sequence[tuple[float, float, str]], title: str = "") -> Path:
    """Write the plot to ``path`` (PNG). ``song`` is mono ``[T]``; times in seconds."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    duration = len(song) / sample_rate
    fig, (ax_wave, ax_beats, ax_chords) = plt.subplots(
        3, 1, figsize=(14, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 1]})
    step = max(1, len(song) // 20000)  # enough points for the envelope, cheap to draw
    t = np.arange(0, len(song), step) / sample_rate
    ax_wave.plot(t, song[::step], linewidth=0.4, color="0.4")
    for d in song_downbeats:
        ax_wave.axvline(d, color="tab:blue", linewidth=0.8, alpha=0.7)
    ax_wave.set_ylabel("song")
    # parse_math=False: a prompt with "$...$" is text, not mathtext (which fails on "$^$").
    ax_wave.set_title(title or "remix: downbeats and chords", parse_math=False)

    rows = [("song", song_downbeats, "tab:blue"), ("generated", generated_downbeats, "tab:red"),
            ("synced", synced_downbeats, "tab:green")]
    for y, (label, times, color) in enumerate(rows):
        ax_beats.vlines(list(times), y - 0.4, y + 0.4, color=color, linewidth=1.2, label=label)
    ax_beats.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax_beats.set_ylim(-0.6, len(rows) - 0.4)
    ax_beats.set_ylabel("downbeats")

    palette = plt.get_cmap("tab20")
    labels = sorted({c[2] for c in chords})
    for start, end, label in chords:
        fill: str | tuple[float, float, float, float] = (
            "0.9" if label == "N" else palette(labels.index(label) % 20))
        ax_chords.axvspan(start, end, color=fill, alpha=0.8)
        if end - start > duration / 80:
            ax_chords.text((start + end) / 2, 0.5, label, ha="center", va="center", fontsize=7, rotation=90)
    ax_chords.set_yticks([])
    ax_chords.set_ylabel("chords")
    ax_chords.set_xlabel("seconds")
    ax_chords.set_xlim(0, duration)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
