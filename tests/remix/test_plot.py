"""The remix plot takes any prompt as its title."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from musicgen_remix.remix.plot import plot_remix


@pytest.mark.parametrize("title", ["money $$ and $^$", "remix: $x^2$ \\frac{1}{2} 100%"])
def test_a_title_with_mathtext_characters_is_plain_text(tmp_path: Path, title: str) -> None:
    path = plot_remix(tmp_path / "remix.png", song=np.zeros(16000, np.float32), sample_rate=16000,
                      song_downbeats=[0.0, 0.5], generated_downbeats=[0.0, 0.5], synced_downbeats=[0.0, 0.5],
                      chords=[(0.0, 1.0, "C:maj")], title=title)
    assert path.read_bytes().startswith(b"\x89PNG")
