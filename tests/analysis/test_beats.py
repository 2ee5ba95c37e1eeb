"""Tests for musicgen_remix.analysis.beats: DBN decoding on synthetic activations, and the full tracker
scored with mir_eval on rendered songs (three tempos, meters 3 and 4, an offset before the first downbeat)."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest
import torch

from musicgen_remix.analysis import Beats, beat_activations, decode_beats, track_beats
from musicgen_remix.audio import Audio, read_audio
from musicgen_remix.errors import AnalysisError

from . import CASES, Case, have_fluidsynth, rendered

needs_fluidsynth = pytest.mark.skipif(not have_fluidsynth(), reason="fluidsynth or the GM soundfont is missing")

# mir_eval's standard beat tolerance.
WINDOW_S = 0.07
# Measured on these renders: beat and downbeat F-measure 1.000 for every case. A tracker that slips by one
# beat loses every downbeat (F near 0), so these bounds fail on real regressions but allow one miss.
MIN_BEAT_F = 0.9
MIN_DOWNBEAT_F = 0.8


def synthetic_activations(frames: int, first: int, period: int, meter: int) -> tuple[np.ndarray, np.ndarray]:
    """Activations with a 3-frame peak every ``period`` frames from ``first``, every ``meter``-th a downbeat.

    Returns the ``[frames, 2]`` activations and the peak frames. Elsewhere they sit at 0.001, as network
    outputs do (exact zeros make the DBN's observation model impossible).
    """
    activations = np.full((frames, 2), 1e-3, dtype=np.float32)
    peaks = np.arange(first, frames, period)
    for k, peak in enumerate(peaks):
        column = 1 if k % meter == 0 else 0
        for delta, value in ((-1, 0.3), (0, 0.95), (1, 0.3)):
            if 0 <= peak + delta < frames:
                activations[peak + delta, column] = value
    return activations, peaks


# ----------------------------------------------------------------------------------------------------
# Decoding


@pytest.mark.parametrize(("meter", "period", "bpm"), [(4, 50, 120.0), (3, 40, 150.0), (4, 43, 60 / 0.43)])
def test_decode_beats_finds_the_peaks_of_synthetic_activations(meter: int, period: int, bpm: float) -> None:
    activations, peaks = synthetic_activations(1200, first=37, period=period, meter=meter)

    beats = decode_beats(activations, fps=100)

    np.testing.assert_allclose(beats.times, peaks / 100, atol=0.011)
    np.testing.assert_array_equal(beats.positions, np.arange(len(peaks)) % meter + 1)
    np.testing.assert_allclose(beats.downbeats, peaks[::meter] / 100, atol=0.011)
    assert beats.meter == meter
    assert beats.bpm == pytest.approx(bpm, rel=0.01)


def test_decode_beats_honours_fps() -> None:
    activations, peaks = synthetic_activations(1200, first=37, period=50, meter=4)
    beats = decode_beats(activations, fps=50)
    np.testing.assert_allclose(beats.times, peaks / 50, atol=0.021)
    assert beats.bpm == pytest.approx(60.0, rel=0.01)


@pytest.mark.parametrize("frames", [0, 1, 500])
def test_decode_beats_on_silence_gives_empty_beats(frames: int) -> None:
    beats = decode_beats(np.zeros((frames, 2), dtype=np.float32))

    assert beats.times.shape == (0,)
    assert beats.positions.shape == (0,)
    assert beats.downbeats.shape == (0,)
    assert beats.bpm is None
    assert beats.meter is None


def test_decode_beats_with_a_single_beat_has_no_tempo() -> None:
    activations = np.full((100, 2), 1e-3, dtype=np.float32)
    activations[50, 1] = 0.95
    beats = decode_beats(activations)
    assert beats.times.size <= 1
    assert beats.bpm is None
    assert beats.meter is None


def test_decode_beats_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="^activations="):
        decode_beats(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="^meters="):
        decode_beats(np.zeros((10, 2)), meters=(1,))
    with pytest.raises(ValueError, match="^fps="):
        decode_beats(np.zeros((10, 2)), fps=0)
    bad = np.full((10, 2), 0.1)
    bad[3, 0] = np.nan
    with pytest.raises(AnalysisError):
        decode_beats(bad)


def test_beats_empty() -> None:
    empty = Beats.empty()
    assert empty.times.dtype == np.float64 and empty.positions.dtype == np.int64
    assert empty.downbeats.size == 0


# ----------------------------------------------------------------------------------------------------
# Network stage and the full tracker


@pytest.mark.parametrize("seconds", [0.001, 0.05, 2.0])
def test_track_beats_on_silence_is_empty_and_does_not_raise(seconds: float) -> None:
    audio = Audio(torch.zeros(2, max(1, round(seconds * 22050))), 22050)
    beats = track_beats(audio)
    assert beats.times.size == 0 and beats.bpm is None and beats.meter is None


def test_beat_activations_are_100_fps_at_any_rate() -> None:
    one_second = np.zeros((2, 32000), dtype=np.float32)
    activations = beat_activations(one_second, 32000)
    assert activations.dtype == np.float32
    assert activations.shape == (100, 2)
    with pytest.raises(ValueError, match="^wav="):
        beat_activations(np.zeros((1, 2, 100)), 32000)


@pytest.fixture(scope="module")
def tracked() -> dict[Case, Beats]:
    if not have_fluidsynth():
        pytest.skip("fluidsynth or the GM soundfont is missing")
    return {case: track_beats(read_audio(rendered(case).path)) for case in CASES}


@needs_fluidsynth
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_track_beats_hits_beats_and_downbeats(case: Case, tracked: dict[Case, Beats]) -> None:
    song, beats = rendered(case), tracked[case]

    beat_f = mir_eval.beat.f_measure(np.array(song.beats), beats.times, f_measure_threshold=WINDOW_S)
    downbeat_f = mir_eval.beat.f_measure(np.array(song.downbeats), beats.downbeats, f_measure_threshold=WINDOW_S)

    assert beat_f >= MIN_BEAT_F, f"beat F {beat_f:.3f}"
    assert downbeat_f >= MIN_DOWNBEAT_F, f"downbeat F {downbeat_f:.3f}"


@needs_fluidsynth
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_track_beats_reports_tempo_and_meter(case: Case, tracked: dict[Case, Beats]) -> None:
    beats = tracked[case]
    # Beat times are quantised to 10 ms frames: the median interval is within one frame of the truth.
    beat_s = 60.0 / case.bpm
    assert 60.0 / (beat_s + 0.0101) <= beats.bpm <= 60.0 / (beat_s - 0.0101)
    assert beats.meter == case.meter
    assert beats.downbeats[0] == pytest.approx(case.offset, abs=WINDOW_S)
