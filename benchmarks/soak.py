"""Soak run of a server (not a test): many sequential predictions, memory and files before and after.

Starts one entrypoint with ``python -m musicgen_remix serve`` (Cog 0.23's coglet, as the server tests do:
127.0.0.1, its own TMPDIR) on tiny weights, warms it up with rounds of one prediction of each kind below
(``--warm-up-rounds``, 4), then runs N sequential predictions cycling through them. ``generate``: text-only,
continuation of a data-URI wav, melody from a data-URI wav, mp3 and flac outputs, and a few bad inputs (a NaN
wav, a prompt with control characters, a top_k above the codebook, an out-of-range top_p that Cog answers with
422). ``remix-detailed``: remixes of a rendered song (every product returned), in wav and mp3, and bad inputs
(a silent song, a prompt with control characters). Bad inputs are expected to fail; every other prediction is
an expected success.

Printed: the resident memory of the server's process tree (server + predictor worker), sampled after every
prediction: after the warm-up and at the end, each process's own, and the growth that the target is set on,
the median of the last ten samples against the median of the first ten (a single sample lands anywhere on
the saw-tooth of memory freed and given back between requests; a leak moves the median), files left in the
server's TMPDIR
(beyond what was there after the warm-up; the last request's own directory is kept by design until the
next request, for Cog to read its output), and failures (expected successes that failed, or bad inputs
that did not fail). Targets: under 5 % RSS growth (medians), no files left, no failures; the exit status is 1 when
a target is missed.

Also printed: what the Cog runtime itself leaves in ``/tmp/coglet`` (its per-prediction directories).

Run from the repository root: ``OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python -m benchmarks.soak
[--entrypoint remix-detailed] [--predictions N]``. Weights: ``$MUSICGEN_REMIX_WEIGHTS`` when set (e.g. to
tiny weights already written), else tiny weights written into a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fixtures.audio import SAMPLE_RATE, audio_bytes, data_uri, sine
from fixtures.cogserver import CogServer, rss_bytes, start_cog_server

RSS_GROWTH_TARGET = 0.05
MEDIAN_WINDOW = 10
WARM_UP_ROUNDS = 4
COGLET_TMP = Path("/tmp/coglet")


@dataclass(frozen=True)
class Case:
    name: str
    inputs: Callable[[int], dict]
    valid: bool = True
    status_code: int = 200


def _wav(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> str:
    return data_uri(audio_bytes(samples, sample_rate, subtype=subtype))


def _nan_wav() -> str:
    samples = sine(2.0)
    samples[10] = np.nan
    return _wav(samples, subtype="FLOAT")


CONTINUATION_INPUT = _wav(sine(2.0, freq=330.0))
MELODY_INPUT = _wav(sine(2.0, 16000, freq=262.0), 16000)
NAN_INPUT = _nan_wav()

GENERATE_CASES = [
    Case("text", lambda i: {"prompt": "calm piano", "duration": 2 + i % 3, "seed": i}),
    Case("continuation", lambda i: {"prompt": "calm piano", "input_audio": CONTINUATION_INPUT, "continuation": True,
                                    "continuation_end": 1, "duration": 3, "seed": i}),
    Case("melody", lambda i: {"prompt": "upbeat synth", "input_audio": MELODY_INPUT, "duration": 2, "seed": i}),
    Case("mp3", lambda i: {"prompt": "jazz", "duration": 2, "seed": i, "output_format": "mp3"}),
    Case("text", lambda i: {"prompt": "rock drums", "duration": 2, "seed": i, "temperature": 0.7}),
    Case("flac", lambda i: {"prompt": "lofi", "duration": 2, "seed": i, "output_format": "flac"}),
    Case("bad:nan-wav", lambda i: {"prompt": "x", "input_audio": NAN_INPUT, "continuation": True, "duration": 3},
         valid=False),
    Case("text", lambda i: {"prompt": "ambient pad", "duration": 2, "seed": i, "top_k": 100}),
    Case("continuation", lambda i: {"prompt": "calm piano", "input_audio": CONTINUATION_INPUT, "continuation": True,
                                    "continuation_start": 1, "duration": 2, "seed": i}),
    Case("bad:control-chars", lambda i: {"prompt": "calm\x00piano", "duration": 2}, valid=False),
    Case("bad:top_k", lambda i: {"prompt": "calm piano", "duration": 2, "top_k": 100_000}, valid=False),
    Case("bad:top_p-422", lambda i: {"prompt": "calm piano", "duration": 2, "top_p": 3}, valid=False,
         status_code=422),
]


def _remix_cases() -> list[Case]:
    from fixtures.songs import render_song

    holder = Path(tempfile.mkdtemp(prefix="soak-song-"))
    render_song(holder / "song.wav", progression=["C:maj", "A:min", "F:maj", "G:maj"], bars=4, bpm=120.0)
    song = data_uri((holder / "song.wav").read_bytes())
    silent = _wav(np.zeros(8 * 16000, np.float32), 16000)
    remix = {"prompt": "bossa nova", "music_input": song, "top_k": 50}
    return [
        Case("remix", lambda i: {**remix, "seed": i}),
        Case("remix-mp3", lambda i: {**remix, "seed": i, "output_format": "mp3"}),
        Case("bad:silent-song", lambda i: {**remix, "music_input": silent}, valid=False),
        Case("bad:control-chars", lambda i: {**remix, "prompt": "bossa\x00nova"}, valid=False),
    ]


def _weights() -> tuple[Path, tempfile.TemporaryDirectory | None]:
    if os.environ.get("MUSICGEN_REMIX_WEIGHTS"):
        return Path(os.environ["MUSICGEN_REMIX_WEIGHTS"]), None
    from fixtures.weights import write_tiny_weights

    holder = tempfile.TemporaryDirectory(prefix="soak-weights-")
    root = Path(holder.name)
    print(f"writing tiny weights to {root} ...", flush=True)
    write_tiny_weights(root)
    return root, holder


def _run(server: CogServer, case: Case, index: int) -> tuple[bool, str]:
    """(as expected?, a note) for one prediction."""
    response = server.predict(case.inputs(index), timeout=300)
    if response.status_code != case.status_code:
        return False, f"HTTP {response.status_code}: {response.text[:300]}"
    if case.status_code != 200:
        return True, f"HTTP {response.status_code}"
    body = response.json()
    if case.valid:
        outputs = body.get("output") if isinstance(body.get("output"), list) else [body.get("output")]
        ok = body["status"] == "succeeded" and all(str(out).startswith("data:") for out in outputs)
        return ok, body["status"] if ok else f"{body['status']}: {body.get('error')}"
    return body["status"] == "failed", f"{body['status']}: {body.get('error')}"


def _per_process(server: CogServer) -> dict[int, tuple[str, int]]:
    """pid -> (command name, RSS bytes) for the server and each process under it."""
    found = {}
    for pid in server.process_tree():
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        found[pid] = (name, rss_bytes(pid))
    return found


def _leftovers(server: CogServer, baseline: set[str]) -> tuple[list[str], list[str]]:
    """(new entries in TMPDIR other than the last request's directory, every request directory)."""
    dirs = [p.name for p in server.request_dirs()]
    entries = set(server.tmp_entries()) - baseline
    last = max(server.request_dirs(), key=lambda p: p.stat().st_mtime, default=None)
    return sorted(e for e in entries if last is None or e != last.name), dirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entrypoint", choices=["generate", "remix-detailed"], default="generate")
    parser.add_argument("--predictions", type=int, default=50)
    parser.add_argument("--warm-up-rounds", type=int, default=WARM_UP_ROUNDS,
                        help="rounds of one prediction of each kind before measuring (default %(default)s)")
    args = parser.parse_args(argv)

    cases = GENERATE_CASES if args.entrypoint == "generate" else _remix_cases()
    weights, holder = _weights()
    workdir = Path(tempfile.mkdtemp(prefix="soak-server-"))
    coglet_before = _coglet_entries()
    started = time.monotonic()
    server = start_cog_server(args.entrypoint, weights=weights, workdir=workdir)
    print(f"server READY in {time.monotonic() - started:.1f} s (TMPDIR {server.tmpdir})", flush=True)
    try:
        # Warm-up: rounds of one prediction of each kind, since each code path loads what it needs on first
        # use (the chroma extractor for melody, the mp3 encoder, ...) and the process's memory settles over the
        # first tens of predictions (generate on tiny weights: about +50 MiB up to the 40th, flat from there
        # to the 300th): that is not growth over time.
        warm_up = cases * max(1, args.warm_up_rounds)
        for index, case in enumerate(warm_up):
            ok, note = _run(server, case, 1000 + index)
            if not ok:
                print(f"warm-up prediction {case.name} failed: {note}\n{server.log_tail()}")
                return 1
            if index == 0:
                print(f"after the first prediction: RSS {server.rss_bytes() / 2**20:.1f} MiB", flush=True)
        rss_start = server.rss_bytes()
        per_process_start = _per_process(server)
        baseline = set(server.tmp_entries()) - {p.name for p in server.request_dirs()}
        print(f"after warm-up ({len(warm_up)} predictions, {len(warm_up) // len(cases)} of each kind): "
              f"RSS {rss_start / 2**20:.1f} MiB over pids {server.process_tree()}", flush=True)

        failures: list[str] = []
        samples: list[int] = []
        expected_successes = 0
        seconds: list[float] = []
        for index in range(args.predictions):
            case = cases[index % len(cases)]
            expected_successes += case.valid
            tick = time.monotonic()
            ok, note = _run(server, case, index + 1)
            seconds.append(time.monotonic() - tick)
            if not ok:
                failures.append(f"#{index + 1} {case.name}: {note}")
            samples.append(server.rss_bytes())
            if (index + 1) % 10 == 0:
                print(f"  {index + 1:3d} predictions, RSS {samples[-1] / 2**20:.1f} MiB", flush=True)

        rss_end = samples[-1]
        left, dirs = _leftovers(server, baseline)
        window = min(MEDIAN_WINDOW, max(1, len(samples) // 2))
        first, last = float(np.median(samples[:window])), float(np.median(samples[-window:]))
        growth = (last - first) / first
        print(f"predictions: {args.predictions} ({expected_successes} valid, "
              f"{args.predictions - expected_successes} bad inputs); mean {np.mean(seconds):.2f} s, "
              f"max {np.max(seconds):.2f} s each")
        print(f"RSS: after warm-up {rss_start / 2**20:.1f} MiB, at the end {rss_end / 2**20:.1f} MiB, highest "
              f"{max(samples) / 2**20:.1f} MiB; median of the first {window} samples {first / 2**20:.1f} MiB, of the "
              f"last {window} {last / 2**20:.1f} MiB: growth {growth:+.2%} (target < {RSS_GROWTH_TARGET:.0%})")
        for pid, (name, end) in _per_process(server).items():
            start = per_process_start.get(pid, (name, 0))[1]
            print(f"  pid {pid} {name}: {start / 2**20:.1f} -> {end / 2**20:.1f} MiB")
        print(f"files left in TMPDIR: {len(left)} {left}; request directories: {len(dirs)} (the last one's is "
              "kept until the next request)")
        coglet_left = sorted(_coglet_entries() - coglet_before)
        print(f"left by the Cog runtime in {COGLET_TMP}: {len(coglet_left)} entries (its own per-prediction "
              "directories, outside the project's control)")
        print(f"failures: {len(failures)}")
        for failure in failures:
            print(f"  {failure}")
        met = growth < RSS_GROWTH_TARGET and not left and not failures and len(dirs) <= 1
        print("targets met" if met else "TARGETS MISSED")
        return 0 if met else 1
    finally:
        server.stop()
        if holder is not None:
            holder.cleanup()


def _coglet_entries() -> set[str]:
    predictions = COGLET_TMP / "predictions"
    return {p.name for p in predictions.iterdir()} if predictions.is_dir() else set()


if __name__ == "__main__":
    raise SystemExit(main())
