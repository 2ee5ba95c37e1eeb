"""Tests for musicgen_remix.remix.beatsync (plan and sync) and musicgen_remix.remix.stretch."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
import scipy.signal
import torch

from musicgen_remix.audio import Audio
from musicgen_remix.errors import InputError
from musicgen_remix.remix.beatsync import (
    DEFAULT_THRESHOLD_S,
    MAX_STRETCH,
    SyncPlan,
    plan_sync,
    resolve_threshold,
    sync_to_reference,
)
from musicgen_remix.remix.stretch import DEFAULT_ENGINE, ENGINES, timemap_stretch

SR = 32000  # MusicGen's rate

needs_rubberband = pytest.mark.skipif(shutil.which("rubberband") is None, reason="the rubberband program is missing")
needs_pytsmod = pytest.mark.skipif(
    importlib.util.find_spec("pytsmod") is None, reason="pytsmod (GPL-3.0, benchmark-only) is not installed"
)
ENGINE_MARKS = {"rubberband": needs_rubberband, "wsola": needs_pytsmod}
ALL_ENGINES = [pytest.param(name, marks=ENGINE_MARKS[name]) for name in ENGINES]


def plan(generated, reference, threshold=0.75, duration_generated=16.0, duration_target=16.0, **kwargs) -> SyncPlan:
    return plan_sync(
        np.asarray(generated, dtype=float),
        np.asarray(reference, dtype=float),
        threshold=threshold,
        duration_generated=duration_generated,
        duration_target=duration_target,
        **kwargs,
    )


def grid(start: float, step: float, count: int) -> np.ndarray:
    return start + step * np.arange(count)


# ----------------------------------------------------------------------------------------------------
# plan_sync: known answers on plain downbeat arrays


def test_equal_grids_with_offset_match_every_downbeat_and_pad_the_lead_in():
    generated = grid(1.0, 2.0, 7)
    result = plan(generated, generated + 0.3)
    assert result.skipped_reason is None and result.decision == "synced"
    np.testing.assert_allclose(result.matched, np.column_stack([generated, generated + 0.3]))
    np.testing.assert_allclose(result.offsets, 0.3)
    np.testing.assert_allclose(result.residuals, 0.0, atol=1e-9)
    assert result.unmatched.size == 0 and result.shift == 0
    # Before the first pair: 0.3 s of silence, then the take from its start; after the last: its tail, cut
    # where the song ends.
    np.testing.assert_allclose(result.anchors[0], [0.0, 0.3])
    np.testing.assert_allclose(result.anchors[1:-1], result.matched)
    np.testing.assert_allclose(result.anchors[-1], [15.7, 16.0])


@pytest.mark.parametrize("offset", [1.2, -1.2, 1.9, -1.9])
def test_offsets_larger_than_the_threshold_are_aligned_in_both_directions(offset):
    # Bars of 2 s, threshold 0.55 s (1.1 beats at 120 bpm): the first downbeats are further apart than it.
    generated = grid(2.1 + min(offset, 0.0) * -1, 2.0, 7) if offset < 0 else grid(2.1, 2.0, 7)
    reference = generated + offset
    result = plan(generated, reference, threshold=0.55, duration_generated=18.0, duration_target=18.0)
    np.testing.assert_allclose(result.matched, np.column_stack([generated, reference]))
    assert result.shift == 0
    # The seed's rule pairs each bar with a neighbouring one, or nothing.
    seed = plan(generated, reference, threshold=0.55, duration_generated=18.0, duration_target=18.0,
                follow_tempo=False)
    assert seed.skipped or np.all(np.abs(seed.offsets - offset) > 0.5)


def test_a_take_starting_one_bar_late_is_paired_bar_for_bar_not_with_the_next_bar():
    # Offset = exactly one bar: nearest neighbours pair bar k of the take with bar k + 1 of the song.
    reference = grid(0.5, 2.0, 8)
    generated = grid(2.5, 2.0, 7)
    result = plan(generated, reference, duration_generated=16.5, duration_target=16.5)
    np.testing.assert_allclose(result.matched, np.column_stack([generated, reference[:7]]))
    np.testing.assert_allclose(result.anchors[0], [2.0, 0.0])  # the take's first 2 s are cut


def test_harmony_picks_the_bar_shift_when_the_take_has_an_extra_bar():
    # The take has a count-in bar (no chords) before bar 1: first-to-first pairing is one bar off, which the
    # downbeats cannot tell; the harmony cue (here: agreement when take bar 1 lands on song bar 1) can.
    reference = grid(1.0, 2.0, 7)
    generated = grid(0.6, 2.0, 8)  # 0.6: count-in; 2.6: bar 1

    def harmony(anchors):
        landed = np.interp(2.6, anchors[:, 0], anchors[:, 1])
        return 0.8 if abs(landed - 1.0) < 0.1 else 0.0

    downbeats_only = plan(generated, reference)
    with_harmony = plan(generated, reference, harmony=harmony)
    assert downbeats_only.matched[0].tolist() == [0.6, 1.0]
    np.testing.assert_allclose(with_harmony.matched[0], [2.6, 1.0])
    assert with_harmony.shift == -1 and with_harmony.harmony == pytest.approx(0.8)


@pytest.mark.parametrize("ratio", [0.9, 1.1])
def test_tempo_ratio_is_followed_bar_after_bar_from_an_offset(ratio):
    # The take is ratio times faster (song bars ratio times longer) and starts 0.9 s earlier than the song.
    generated = grid(0.3, 2.0, 8)
    reference = 1.2 + 2.0 * ratio * np.arange(8)
    result = plan(generated, reference, threshold=0.5, duration_generated=16.0, duration_target=1.2 + 16.0 * ratio)
    np.testing.assert_allclose(result.matched, np.column_stack([generated, reference]))
    np.testing.assert_allclose(result.residuals, 0.0, atol=1e-9)
    assert result.ratio == pytest.approx(ratio)


def test_tempo_ratio_without_following_matches_until_the_drift_passes_the_threshold():
    # The seed's rule (raw gaps): bars 0-3 (0 .. 0.6 s) are within 0.75 s, the rest keep their own time.
    generated = grid(0.5, 2.0, 8)
    reference = grid(0.5, 2.2, 8)
    result = plan(generated, reference, duration_generated=16.0, duration_target=17.6, follow_tempo=False)
    np.testing.assert_allclose(result.matched, np.column_stack([generated[:4], reference[:4]]))
    np.testing.assert_allclose(result.offsets, [0.0, 0.2, 0.4, 0.6], atol=1e-12)
    np.testing.assert_allclose(result.unmatched, generated[4:])


def test_spurious_extra_generated_downbeat_is_left_unmatched():
    true = grid(1.0, 2.0, 7)
    generated = np.sort(np.append(true, 3.4))  # a misdetection 0.4 s after a real downbeat
    result = plan(generated, true + 0.1)
    np.testing.assert_allclose(result.matched[:, 0], true)
    np.testing.assert_allclose(result.offsets, 0.1)
    np.testing.assert_allclose(result.unmatched, [3.4])


def test_reference_missing_a_downbeat_leaves_that_one_unmatched():
    generated = grid(1.0, 2.0, 7)
    reference = np.delete(generated + 0.1, 2)  # the song's downbeat at 5.1 s was missed
    result = plan(generated, reference)
    np.testing.assert_allclose(result.matched[:, 0], np.delete(generated, 2))
    np.testing.assert_allclose(result.matched[:, 1], reference)
    np.testing.assert_allclose(result.unmatched, [5.0])


def test_a_downbeat_further_than_the_threshold_from_where_the_alignment_puts_it_keeps_its_own_time():
    generated = grid(1.0, 2.0, 7)
    reference = generated + 1.0
    reference[3] += 0.4  # this song downbeat is 0.4 s from where the other bars put it
    result = plan(generated, reference, threshold=0.3)
    np.testing.assert_allclose(result.unmatched, [generated[3]])
    assert len(result.matched) == 6 and np.all(np.abs(result.residuals) <= 0.3)
    loose = plan(generated, reference, threshold=0.5)
    assert len(loose.matched) == 7 and np.abs(loose.residuals).max() == pytest.approx(0.4, abs=0.1)


def test_jittered_downbeats_and_a_threshold_below_the_jitter_are_skipped_with_a_reason():
    rng = np.random.default_rng(7)
    generated = grid(1.0, 2.0, 7) + rng.uniform(-0.02, 0.02, 7)
    reference = grid(1.0, 2.0, 7) + 0.5 + rng.uniform(-0.02, 0.02, 7)
    result = plan(generated, reference, threshold=0.001)
    assert result.skipped and "within 0.001 s of where the alignment puts it" in result.skipped_reason
    assert result.anchors.shape == (0, 2) and result.matched.shape == (0, 2) and result.offsets.size == 0
    assert result.shift is not None  # the alignment was found; no downbeat was close enough to it


def test_no_generated_downbeats_is_skipped():
    result = plan([], [1.0, 3.0])
    assert result.skipped and "generated audio" in result.skipped_reason
    assert result.anchors.shape == (0, 2)


def test_no_reference_downbeats_is_skipped():
    result = plan([1.0, 3.0], np.array([]))
    assert result.skipped and "song" in result.skipped_reason
    np.testing.assert_allclose(result.unmatched, [1.0, 3.0])


def test_a_pair_that_would_stretch_a_region_beyond_the_bound_is_dropped():
    generated = grid(1.0, 2.0, 7)
    reference = generated + 0.2
    reference[3] = reference[2] + 0.5  # 2 s of take into 0.5 s of song: 4x
    result = plan(generated, reference, threshold=3.0)
    assert generated[3] in result.unmatched
    ratios = np.diff(result.anchors[:, 1]) / np.diff(result.anchors[:, 0])
    assert np.all((ratios >= 1 / MAX_STRETCH - 1e-9) & (ratios <= MAX_STRETCH + 1e-9))


def test_a_single_pair_near_the_start_is_a_shift_not_a_stretch():
    # The seed stretched (0, 0) -> (0.1, 0.5) fivefold; now the lead-in moves with the first pair.
    result = plan([0.1], [0.5])
    np.testing.assert_allclose(result.anchors, [[0.0, 0.4], [0.1, 0.5], [15.6, 16.0]])


def test_downbeats_at_or_outside_the_timelines_are_not_anchors():
    result = plan([0.0, 2.0, 16.0, 17.0], [0.0, 2.1, 16.0])
    np.testing.assert_allclose(result.matched, [[2.0, 2.1]])
    np.testing.assert_allclose(result.unmatched, [0.0, 16.0, 17.0])


def test_plan_arrays_are_read_only_and_the_report_is_json_ready():
    import json

    result = plan(grid(1.0, 2.0, 7), grid(1.1, 2.0, 7))
    with pytest.raises(ValueError):
        result.anchors[0, 0] = 1.0
    report = json.loads(json.dumps(result.report()))
    assert report["decision"] == "synced" and report["alignment"]["bar_shift"] == 0
    assert len(report["matched"]) == 7 and len(report["residuals_s"]) == 7


def test_map_times_follows_the_anchors_and_extrapolates_the_lead_in():
    result = plan(grid(1.0, 2.0, 7), grid(1.0, 2.2, 7), duration_target=17.6)
    np.testing.assert_allclose(result.map_times([1.0, 3.0, 2.0, 0.5]), [1.0, 3.2, 2.1, 0.45])


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("beat_sync_threshold", {"threshold": 0.0}),
        ("beat_sync_threshold", {"threshold": float("nan")}),
        ("duration_generated", {"duration_generated": 0.0}),
        ("duration_target", {"duration_target": float("inf")}),
        ("max_stretch", {"max_stretch": 1.0}),
    ],
)
def test_plan_rejects_bad_numbers(field, kwargs):
    with pytest.raises(ValueError, match=f"^{field}=") as error:  # checked inputs only reach it: a bug
        plan([1.0], [1.0], **kwargs)
    assert not isinstance(error.value, InputError)


def test_plan_rejects_non_finite_downbeats():
    with pytest.raises(ValueError, match="^generated_downbeats="):
        plan([1.0, float("nan")], [1.0])


def test_anchors_are_strictly_monotonic_for_random_inputs():
    rng = np.random.default_rng(1234)
    for case in range(200):
        duration_generated = rng.uniform(1.0, 40.0)
        duration_target = duration_generated * rng.uniform(0.7, 1.4)
        generated = rng.uniform(-1.0, duration_generated + 1.0, rng.integers(0, 25))
        reference = rng.uniform(-1.0, duration_target + 1.0, rng.integers(0, 25))
        if case % 4 == 0 and generated.size:  # duplicates and shared times
            generated = np.concatenate([generated, generated[:3], reference[:2]])
        threshold = rng.uniform(0.05, 3.0)
        follow_tempo = bool(case % 2)
        result = plan(generated, reference, threshold, duration_generated, duration_target,
                      follow_tempo=follow_tempo)
        unique = np.unique(generated)
        np.testing.assert_array_equal(np.sort(np.concatenate([result.matched[:, 0], result.unmatched])), unique)
        if result.skipped:
            assert result.anchors.shape == (0, 2) and result.skipped_reason
            continue
        anchors = result.anchors
        assert np.all(np.diff(anchors[:, 0]) > 0) and np.all(np.diff(anchors[:, 1]) > 0), case
        assert min(anchors[0]) == 0.0 and min(anchors[0]) >= 0.0, case  # a lead-in cut or padded
        end_source, end_target = anchors[-1]
        assert end_source <= duration_generated + 1e-9 and end_target <= duration_target + 1e-9, case
        assert np.isclose(end_source, duration_generated) or np.isclose(end_target, duration_target), case
        if follow_tempo:
            assert np.all(np.abs(result.residuals) <= threshold + 1e-9)
        else:  # the seed's rule compares raw gaps
            assert np.all(np.abs(result.offsets) <= threshold)
        assert np.isin(result.matched[:, 1], reference).all()
        assert len(np.unique(result.matched[:, 1])) == len(result.matched)
        ratios = np.diff(anchors[:, 1]) / np.diff(anchors[:, 0])
        assert np.all((ratios >= 1 / MAX_STRETCH - 1e-9) & (ratios <= MAX_STRETCH + 1e-9)), case


# ----------------------------------------------------------------------------------------------------
# resolve_threshold


@pytest.mark.parametrize("value", [None, -1, -1.0])
def test_automatic_threshold_is_1_1_beats(value):
    assert resolve_threshold(value, 120.0) == pytest.approx(0.55)
    assert resolve_threshold(value, 100.0) == pytest.approx(0.66)


@pytest.mark.parametrize("bpm", [None, 0.0, float("nan")])
def test_automatic_threshold_without_tempo_is_the_seed_default(bpm):
    assert resolve_threshold(None, bpm) == DEFAULT_THRESHOLD_S == 0.75


def test_explicit_threshold_is_kept():
    assert resolve_threshold(0.4, None) == 0.4
    assert resolve_threshold(2, 120.0) == 2.0


@pytest.mark.parametrize("value", [0, 0.0, -0.5, -2, float("nan"), float("inf")])
def test_bad_threshold_raises_input_error_naming_the_field(value):
    with pytest.raises(InputError) as error:
        resolve_threshold(value, 120.0)
    assert error.value.field == "beat_sync_threshold"
    assert "beat_sync_threshold" in str(error.value)


# ----------------------------------------------------------------------------------------------------
# timemap_stretch

BURST = (np.sin(2 * np.pi * 2000 * np.arange(64) / SR) * np.hanning(64)).astype(np.float32)  # 2 ms, 2 kHz


def click_train(times: np.ndarray, seconds: float, channels: int = 2) -> np.ndarray:
    wav = np.zeros((channels, round(seconds * SR)), dtype=np.float32)
    for t in times:
        start = round(t * SR)
        wav[:, start : start + BURST.size] += BURST
    return wav


def click_times(wav: np.ndarray) -> np.ndarray:
    """Onset times of the bursts: peaks of a 2 ms moving average of |x|, less the burst's half length."""
    envelope = scipy.signal.fftconvolve(np.abs(wav).mean(axis=0), np.ones(64) / 64, mode="same")
    peaks, _ = scipy.signal.find_peaks(envelope, height=0.3 * envelope.max(), distance=int(0.5 * SR))
    return (peaks - BURST.size // 2) / SR


@pytest.mark.parametrize("engine", ALL_ENGINES)
def test_timemap_stretch_length_dtype_and_channels(engine):
    wav = (np.random.default_rng(0).standard_normal((2, 4 * SR)) * 0.1).astype(np.float32)
    anchors = np.array([[0.0, 0.0], [1.0, 1.2], [3.0, 2.9], [4.0, 4.5]])
    out = timemap_stretch(wav, SR, anchors, engine=engine)
    assert out.shape == (2, round(4.5 * SR)) and out.dtype == np.float32
    mono = timemap_stretch(wav[:1], SR, anchors, engine=engine)
    assert mono.shape == (1, round(4.5 * SR))


@needs_rubberband
def test_rubberband_keeps_the_level_of_audio_beyond_full_scale():
    t = np.arange(2 * SR) / SR
    wav = np.stack([1.8 * np.sin(2 * np.pi * 220 * t)] * 2).astype(np.float32)
    out = timemap_stretch(wav, SR, np.array([[0.0, 0.0], [2.0, 2.2]]), engine="rubberband")
    middle = out[:, SR // 2 : -SR // 2]
    assert np.abs(middle).max() == pytest.approx(1.8, rel=0.05)


def test_default_engine_is_rubberband():
    assert DEFAULT_ENGINE == "rubberband"


# Bar-like anchors: 120 bpm audio mapped 10 % slower with a 0.1 s offset (first region 1.2x).
CLICK_SOURCE = grid(0.5, 2.0, 13)
CLICK_TARGET = 0.6 + 2.2 * np.arange(13)


@needs_rubberband
def test_rubberband_puts_clicks_at_their_targets_within_10_ms():
    wav = click_train(CLICK_SOURCE, 27.0)
    anchors = np.concatenate([[[0, 0]], np.column_stack([CLICK_SOURCE, CLICK_TARGET]), [[27.0, 29.7]]])
    out = timemap_stretch(wav, SR, anchors, engine="rubberband")
    found = click_times(out)
    assert found.size == CLICK_TARGET.size
    assert np.abs(found - CLICK_TARGET).max() <= 0.010


@needs_pytsmod
def test_wsola_puts_clicks_early_by_up_to_its_search_tolerance():
    # pytsmod's WSOLA resolves silent frames to its first lag: clicks in silence land ~16 ms (512 samples)
    # early. Documented in remix.stretch; this pins that behaviour so a change shows up here.
    wav = click_train(CLICK_SOURCE, 27.0)
    anchors = np.concatenate([[[0, 0]], np.column_stack([CLICK_SOURCE, CLICK_TARGET]), [[27.0, 29.7]]])
    found = click_times(timemap_stretch(wav, SR, anchors, engine="wsola"))
    assert found.size == CLICK_TARGET.size
    errors = found - CLICK_TARGET
    assert np.all((errors > -0.025) & (errors < 0.005))


@pytest.mark.parametrize(
    "anchors",
    [
        [[0.0, 0.0]],  # one anchor
        [[0.1, 0.0], [2.0, 2.0]],  # does not start at (0, 0)
        [[0.0, 0.0], [1.0, 1.0], [1.0, 1.5], [2.0, 2.0]],  # not strictly increasing
        [[0.0, 0.0], [1.5, 2.0]],  # does not end at the audio's duration (2 s)
        [[0.0, 0.0], [2.0, float("nan")]],
    ],
)
def test_timemap_stretch_rejects_bad_anchors(anchors):
    with pytest.raises(ValueError, match="^anchors="):
        timemap_stretch(np.zeros((1, 2 * SR), dtype=np.float32), SR, np.array(anchors))


def test_timemap_stretch_rejects_unknown_engine():
    with pytest.raises(ValueError, match="stretch_engine"):
        timemap_stretch(np.zeros((1, SR), dtype=np.float32), SR, np.array([[0, 0], [1, 1]]), engine="sox")


# ----------------------------------------------------------------------------------------------------
# sync_to_reference


def noise(seconds: float) -> Audio:
    wav = torch.from_numpy((np.random.default_rng(3).standard_normal((2, round(seconds * SR))) * 0.1).astype("f4"))
    return Audio(wav, SR)


@pytest.mark.parametrize("target", [3.0, 5.5])
def test_skipped_sync_only_pads_or_trims(target):
    audio = noise(4.0)
    out, result = sync_to_reference(audio, [], [1.0, 2.0], threshold=0.75, target_duration=target)
    assert result.skipped
    assert out.sample_rate == SR and out.wav.shape == (2, round(target * SR))
    kept = min(out.num_frames, audio.num_frames)
    torch.testing.assert_close(out.wav[:, :kept], audio.wav[:, :kept])
    assert torch.count_nonzero(out.wav[:, kept:]) == 0


@needs_rubberband
def test_sync_output_is_exactly_the_target_duration():
    audio = noise(6.0)
    out, result = sync_to_reference(audio, [1.0, 3.0, 5.0], [1.2, 3.1, 5.05], threshold=0.75, target_duration=6.123456)
    assert not result.skipped and len(result.matched) == 3
    assert out.wav.shape == (2, round(6.123456 * SR)) and out.wav.dtype == torch.float32


def chord_song(seconds: float, first_downbeat: float, bar: float, channels: int = 2) -> np.ndarray:
    """Plucked triads on every beat (four per bar), a click on each downbeat, the chord changing every bar."""
    progression = [(0, 4, 7), (9, 0, 4), (5, 9, 0), (7, 11, 2)]
    wav = np.zeros(round(seconds * SR), dtype=np.float64)
    t = np.arange(round(bar / 4 * SR)) / SR
    for index, start in enumerate(np.arange(first_downbeat, seconds - bar / 4, bar / 4)):
        chord = progression[(index // 4) % 4]
        note = sum(np.sin(2 * np.pi * 261.63 * 2 ** (pc / 12) * t) for pc in chord) * np.exp(-t * 6) * 0.1
        begin = round(start * SR)
        wav[begin : begin + note.size] += note[: wav.size - begin]
    for start in np.arange(first_downbeat, seconds, bar):
        begin = round(start * SR)
        wav[begin : begin + BURST.size] += BURST[: wav.size - begin]
    return np.repeat(wav[None].astype(np.float32), channels, axis=0)


@needs_rubberband
@pytest.mark.parametrize(("take_start", "take_bar"), [(1.7, 1.8), (0.2, 2.2)])
def test_sync_cuts_or_pads_the_lead_in_and_lands_every_downbeat(take_start, take_bar):
    # The song's downbeats every 2 s from 0.5 s; the take starts 1.2 s late (and 10 % faster) or 0.3 s early
    # (and 10 % slower): beyond the 0.55 s threshold at the first downbeat either way.
    song_downbeats = grid(0.5, 2.0, 7)
    take_downbeats = grid(take_start, take_bar, 7)
    take = Audio(torch.from_numpy(click_train(take_downbeats, take_start + 7 * take_bar + 0.5)), SR)
    out, result = sync_to_reference(take, take_downbeats, song_downbeats, threshold=0.55, target_duration=14.5)
    assert out.wav.shape == (2, round(14.5 * SR))
    np.testing.assert_allclose(result.matched, np.column_stack([take_downbeats, song_downbeats]))
    found = click_times(out.wav.numpy())
    assert found.size == song_downbeats.size
    assert np.abs(found - song_downbeats).max() <= 0.010


@needs_rubberband
def test_a_stretch_that_measures_worse_than_none_is_not_applied_and_says_why():
    # The take is the song itself, already in place; its downbeats are misreported 0.7 s late, so the plan
    # would move every bar 0.7 s early. Measured against the song, that is worse: the take is kept as it is.
    song = Audio(torch.from_numpy(chord_song(15.0, 0.5, 2.0)), SR)
    downbeats = grid(0.5, 2.0, 7)
    out, result = sync_to_reference(song, downbeats + 0.7, downbeats, threshold=0.55, target_duration=15.0,
                                    reference=song)
    assert result.decision == "unsynced" and "agreed less" in result.skipped_reason
    assert result.agreement_after < result.agreement_before
    torch.testing.assert_close(out.wav, song.wav)
    assert len(result.matched) == 7  # the plan is still reported


@needs_rubberband
def test_with_the_song_given_a_take_one_bar_late_is_aligned_by_harmony():
    # The take has an extra first bar (the progression's last chord) before bar 1; downbeats alone would pair
    # it with the song's bar 1. The chroma agreement finds the right bar and the stretch is measured better.
    song = Audio(torch.from_numpy(chord_song(15.0, 0.5, 2.0)), SR)
    late = np.concatenate([np.zeros((2, round(1.9 * SR)), dtype=np.float32), song.wav.numpy()], axis=1)
    take = Audio(torch.from_numpy(late[:, : round(15.0 * SR)]), SR)
    take_downbeats = np.concatenate([[0.4], grid(2.4, 2.0, 6)])  # a spurious downbeat in the lead-in
    out, result = sync_to_reference(take, take_downbeats, grid(0.5, 2.0, 7), threshold=0.55, target_duration=15.0,
                                    reference=song)
    assert result.decision == "synced" and result.shift == -1
    np.testing.assert_allclose(result.matched[0], [2.4, 0.5], atol=0.01)
    assert result.agreement_after > result.agreement_before


# ----------------------------------------------------------------------------------------------------
# End to end: rendered music, madmom downbeats, stretch, re-detect

needs_beats = pytest.mark.skipif(
    importlib.util.find_spec("musicgen_remix.analysis.beats") is None, reason="musicgen_remix.analysis.beats missing"
)

# Measured on this pair (madmom decodes at 100 frames/s, so errors come in 10 ms steps): re-detected matched
# downbeats were 0-10 ms from the song's; the benchmark's 4 pairs gave median 0 ms, max 10 ms. The bounds
# leave one madmom frame of slack on each.
E2E_MEDIAN_S = 0.010
E2E_MAX_S = 0.020


@pytest.mark.slow
@needs_beats
@needs_rubberband
def test_end_to_end_sync_lands_every_downbeat_on_the_song(tmp_path):
    from fixtures.songs import have_fluidsynth, render_song
    from musicgen_remix.analysis.beats import track_beats
    from musicgen_remix.audio import read_audio

    if not have_fluidsynth():
        pytest.skip("fluidsynth or its General MIDI soundfont is missing")
    progression = ["A:min", "F:maj", "C:maj", "G:maj"]
    render_song(tmp_path / "song.wav", progression=progression, bpm=120.0, sample_rate=SR)
    render_song(tmp_path / "gen.wav", progression=progression, bpm=110.0, offset=0.3, sample_rate=SR)
    song, generated = read_audio(tmp_path / "song.wav"), read_audio(tmp_path / "gen.wav")
    song_downbeats = track_beats(song).downbeats
    generated_downbeats = track_beats(generated).downbeats

    out, result = sync_to_reference(
        generated, generated_downbeats, song_downbeats, threshold=DEFAULT_THRESHOLD_S, target_duration=song.duration
    )
    assert out.num_frames == song.num_frames
    assert not result.skipped and len(result.matched) >= 2, result

    # The 110 bpm take drifts a bar-sized amount against the 120 bpm song: following the tempo, every bar
    # but the first (whose region from 0 s would stretch past MAX_STRETCH) is an anchor.
    assert len(result.matched) >= len(song_downbeats) - 2, result
    found = track_beats(out).downbeats
    errors = np.array([np.abs(found - target).min() for target in song_downbeats if target >= result.matched[0, 1]])
    assert np.median(errors) <= E2E_MEDIAN_S, errors
    assert errors.max() <= E2E_MAX_S, errors
