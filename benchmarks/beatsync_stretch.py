"""Benchmark of the time-map stretch engines used by beat sync (not a test).

For each pair, the same music is rendered twice (fixtures/songs.py: pretty_midi + fluidsynth, 32 kHz stereo,
30 s): a "generated" take at one tempo and offset, and the "reference" (the song) at 120 bpm and another
offset. The generated take is synced to the reference with each engine, then measured against the reference:

- downbeat error: each matched reference downbeat against the output's downbeat nearest to it, re-detected
  with musicgen_remix.analysis.beats (madmom) when that is importable. madmom decodes at 100 frames/s, so
  this error is quantised at 10 ms; the onset lag below resolves 2 ms.
- onset lag: the lag (within +-100 ms, 2 ms steps) that best aligns the output's onset envelope with the
  reference's over the first 0.5 s of each matched reference bar.
- runtime: seconds to stretch the 30 s clip (best of 3).
- LSD: log-spectral distance in dB (128-band mel, 2048/512 STFT, floor 80 dB under the peak) between the
  output and the reference rendering over the aligned span (first to last anchor), the reference being what
  a perfect stretch would give apart from note release tails. "none" is the unstretched take, for scale.

Run from the repository root: ``OMP_NUM_THREADS=1 python -m benchmarks.beatsync_stretch`` (about a minute).
The wsola engine needs pytsmod (GPL-3.0, not a project dependency); it is left out when pytsmod is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import librosa
import numpy as np
import soundfile

from fixtures.songs import have_fluidsynth, render_song
from musicgen_remix.remix.beatsync import DEFAULT_THRESHOLD_S, MAX_STRETCH, SyncPlan, apply_anchors, plan_sync
from musicgen_remix.remix.stretch import ENGINES, Engine

SAMPLE_RATE = 32000  # MusicGen's
DURATION = 30.0
REFERENCE_BPM = 120.0
PROGRESSION = ["A:min", "F:maj", "C:maj", "G:maj"]
# (generated bpm, generated offset s, reference offset s, GM program of the chords)
PAIRS = [
    (120.0, 0.30, 0.10, 0),  # offset only
    (116.0, 0.10, 0.50, 0),  # 3 % slower, drifting through the whole threshold
    (124.0, 0.20, 0.25, 4),  # 3 % faster, electric piano
    (110.0, 0.30, 0.05, 0),  # the test's pair: 9 % slower, only the first bars are within the threshold
]
LAG_RANGE_S = 0.1
ONSET_HOP = 64  # 2 ms at 32 kHz


@dataclass
class Take:
    wav: np.ndarray  # [C, T] float32
    downbeats: np.ndarray  # seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD_S, help="beat sync threshold (s)")
    parser.add_argument(
        "--max-stretch", type=float, default=MAX_STRETCH, help="plan_sync's region bound (1000: effectively none)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not have_fluidsynth():
        raise SystemExit("needs the fluidsynth program and the fluid-soundfont-gm soundfont")
    track = _downbeat_tracker()
    print(f"downbeats: {'musicgen_remix.analysis.beats' if track else 'ground truth (analysis.beats missing)'}")
    available = [name for name in ENGINES if name != "wsola" or importlib.util.find_spec("pytsmod")]
    print(f"engines: {', '.join(available)}")
    engines: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        name: _stretcher(cast(Engine, name)) for name in available
    }
    engines["none"] = lambda wav, anchors: wav  # the unstretched take, for scale
    results: dict[str, dict[str, list[float]]] = {
        name: {"lag_ms": [], "err_ms": [], "lsd_db": [], "runtime_s": []} for name in engines
    }
    with tempfile.TemporaryDirectory() as tmp:
        for index, (bpm, offset, ref_offset, program) in enumerate(PAIRS):
            generated = _render(Path(tmp) / f"gen{index}.wav", bpm, offset, program, track)
            reference = _render(Path(tmp) / f"ref{index}.wav", REFERENCE_BPM, ref_offset, program, track)
            plan = plan_sync(
                generated.downbeats,
                reference.downbeats,
                threshold=args.threshold,
                duration_generated=DURATION,
                duration_target=DURATION,
                max_stretch=args.max_stretch,
            )
            print(
                f"\npair {index}: {bpm:g} bpm +{offset:g} s -> {REFERENCE_BPM:g} bpm +{ref_offset:g} s, "
                f"{len(plan.matched)}/{len(generated.downbeats)} downbeats matched"
                + (f" (skipped: {plan.skipped_reason})" if plan.skipped else "")
            )
            if plan.skipped:
                continue
            for name, stretch in engines.items():
                seconds = []
                for _ in range(3 if name != "none" else 1):
                    start = time.perf_counter()
                    out = stretch(generated.wav, plan.anchors)
                    seconds.append(time.perf_counter() - start)
                lags, errors, lsd = _measure(out, reference, plan, track)
                row = results[name]
                row["lag_ms"] += lags
                row["err_ms"] += errors
                row["lsd_db"].append(lsd)
                row["runtime_s"].append(min(seconds))
                print(f"  {name:<12} {_stats(lags, errors, [lsd], [min(seconds)])}")
    print(f"\nall pairs ({SAMPLE_RATE} Hz stereo, {DURATION:g} s; errors over all matched downbeats)")
    for name, row in results.items():
        print(f"  {name:<12} {_stats(row['lag_ms'], row['err_ms'], row['lsd_db'], row['runtime_s'])}")


def _stretcher(engine: Engine) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda wav, anchors: apply_anchors(wav, SAMPLE_RATE, anchors, wav.shape[1], engine)


def _stats(lags: list[float], errors: list[float], lsd: list[float], runtime: list[float]) -> str:
    text = f"onset lag median {np.median(lags):5.1f} max {np.max(lags):5.1f} ms"
    if errors:
        text += f" | re-detected error median {np.median(errors):5.1f} max {np.max(errors):5.1f} ms"
    return text + f" | LSD {np.mean(lsd):5.2f} dB | runtime {np.mean(runtime):5.2f} s"


def _downbeat_tracker() -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        from musicgen_remix.analysis.beats import track_beats
    except ImportError:
        return None
    import torch

    from musicgen_remix.audio import Audio

    def track(wav: np.ndarray) -> np.ndarray:
        return np.asarray(track_beats(Audio(torch.from_numpy(wav), SAMPLE_RATE)).downbeats)

    return track


def _render(path: Path, bpm: float, offset: float, program: int, track: Callable | None) -> Take:
    bars = int(np.ceil((DURATION - offset) / (4 * 60.0 / bpm))) + 1
    song = render_song(
        path, progression=PROGRESSION, bpm=bpm, bars=bars, offset=offset, sample_rate=SAMPLE_RATE, program=program
    )
    wav, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE
    wav = wav.T[:, : int(DURATION * SAMPLE_RATE)]
    wav = np.pad(wav, ((0, 0), (0, int(DURATION * SAMPLE_RATE) - wav.shape[1])))
    downbeats = track(wav) if track else np.array([d for d in song.downbeats if d < DURATION])
    return Take(np.ascontiguousarray(wav), downbeats)


def _measure(
    out: np.ndarray, reference: Take, plan: SyncPlan, track: Callable | None
) -> tuple[list[float], list[float], float]:
    """Onset lags and re-detected downbeat errors (ms) at the matched targets, and the LSD (dB)."""
    targets = plan.matched[:, 1]
    lags = (np.abs(_onset_lags(out, reference.wav, targets)) * 1000).tolist()
    errors: list[float] = []
    if track is not None:
        found = track(out)
        errors = [float(np.abs(found - t).min() * 1000) if found.size else float("inf") for t in targets]
    span = slice(int(plan.anchors[1, 1] * SAMPLE_RATE), int(plan.anchors[-2, 1] * SAMPLE_RATE) + SAMPLE_RATE)
    return lags, errors, _lsd(out[:, span], reference.wav[:, span])


def _onset_envelope(wav: np.ndarray) -> np.ndarray:
    return librosa.onset.onset_strength(y=wav.mean(axis=0), sr=SAMPLE_RATE, hop_length=ONSET_HOP)


def _onset_lags(out: np.ndarray, reference: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Per time: lag (s) of ``out`` against ``reference`` over [t - 0.05, t + 0.5) by onset-envelope correlation."""
    env_out, env_ref = _onset_envelope(out), _onset_envelope(reference)
    frame = ONSET_HOP / SAMPLE_RATE
    max_lag = round(LAG_RANGE_S / frame)
    lags = []
    for t in times:
        first, last = round((t - 0.05) / frame), round((t + 0.5) / frame)
        first = max(first, max_lag)
        last = min(last, len(env_ref) - max_lag, len(env_out) - max_lag)
        ref = env_ref[first:last]
        scores = [float(np.dot(ref, env_out[first + lag : last + lag])) for lag in range(-max_lag, max_lag + 1)]
        lags.append((int(np.argmax(scores)) - max_lag) * frame)
    return np.array(lags)


def _lsd(out: np.ndarray, reference: np.ndarray) -> float:
    def log_mel(wav: np.ndarray) -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=wav.mean(axis=0), sr=SAMPLE_RATE, n_fft=2048, hop_length=512)
        return librosa.power_to_db(mel, ref=np.max, top_db=80.0)

    a, b = log_mel(out), log_mel(reference)
    return float(np.mean(np.sqrt(np.mean((a - b) ** 2, axis=0))))


if __name__ == "__main__":
    main()
