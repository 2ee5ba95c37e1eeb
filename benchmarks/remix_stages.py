"""Benchmark of the remix pipeline's stages on the tiny weights (not a test).

Renders a 30 s song with a voice-like line (fixtures/songs.py: pretty_midi + fluidsynth, 44.1 kHz stereo), remixes
it through :class:`musicgen_remix.service.RemixService` on CPU with one torch thread, and prints each stage's
wall time: read, separate, beats (the song's), chords, generate, decode, beat sync (re-detecting the
generated downbeats and stretching), mix + write, and what is left over (checks, chroma, logging). The
stages are timed by wrapping the functions :func:`musicgen_remix.remix.pipeline.run_remix` calls, so the
pipeline itself is not duplicated here.

The target (the issue's): stages outside generation under 20 s per 30 s song on a 2-core machine. The first
run also loads the beat and chord networks (once per process, as a server's first request would); later runs
are what a warm server pays. Caveat: the tiny htdemucs (channels 4, one transformer layer) costs a small
fraction of the real one, so "separate" is far below the real cost; ``--full-size-demucs`` swaps in an HTDemucs
of the release architecture (demucs' defaults with the training grid's ``dconv_mode=3`` and the release's 7.8 s
segment) with random weights, which costs what the real model costs. The tiny LM's generate/decode figures say
nothing about the real models.

Run from the repository root: ``OMP_NUM_THREADS=1 python -m benchmarks.remix_stages`` (about a minute).
Weights: ``$MUSICGEN_REMIX_WEIGHTS`` when set (e.g. to tiny weights already written), else tiny weights
written into a temporary directory.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import soundfile

from fixtures.songs import have_fluidsynth, render_song
from musicgen_remix.weights.manifest import WEIGHTS_ENV

DURATION = 30.0
BPM = 120.0
PROGRESSION = ["C:maj", "A:min", "F:maj", "G:maj"]
TARGET_OUTSIDE_GENERATION_S = 20.0
# Pipeline function (as run_remix looks it up in musicgen_remix.remix.pipeline) -> stage, per call in a run.
# track_beats runs twice: on the song, then on the generated instrumental (part of beat sync).
STAGES: dict[str, tuple[str, ...]] = {
    "read_song": ("read",),
    "track_beats": ("beats", "beat sync"),
    "recognize_chords": ("chords",),
    "parse_chord_progression": ("chords",),
    "generate_windows": ("generate",),
    "render": ("decode",),
    "sync_to_reference": ("beat sync",),
    "mix_vocals": ("mix + write",),
    "deliver": ("mix + write",),
    "write_audio": ("mix + write",),
}
ORDER = ("read", "separate", "beats", "chords", "generate", "decode", "beat sync", "mix + write", "other")
GENERATION = ("generate",)


class StageClock:
    """Wall time per stage over one run; calls of one function map to stages by their order in the run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def wrap(self, name: str, stages: tuple[str, ...], fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stage = stages[min(self.calls[name], len(stages) - 1)]
            self.calls[name] += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        return timed


@contextmanager
def timed_pipeline(clock: StageClock, separator: Any) -> Iterator[None]:
    """Wrap the stage functions run_remix calls (and the separator's ``separate``) for the duration."""
    import musicgen_remix.remix.pipeline as pipeline

    originals = {name: getattr(pipeline, name) for name in STAGES}
    separate = separator.separate
    try:
        for name, stages in STAGES.items():
            setattr(pipeline, name, clock.wrap(name, stages, originals[name]))
        separator.separate = clock.wrap("separate", ("separate",), separate)
        yield
    finally:
        for name, fn in originals.items():
            setattr(pipeline, name, fn)
        del separator.separate  # back to the class's method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="remixes of the song (the first one is cold)")
    parser.add_argument("--model-version", default="stereo-chord", help="remix model_version")
    parser.add_argument("--multi-band-diffusion", action="store_true", help="decode with MultiBand Diffusion")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the tests' setting is 1)")
    parser.add_argument("--full-size-demucs", action="store_true",
                        help="separate with a release-size HTDemucs (random weights) instead of the tiny one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny T5 stand-in is in the local cache only
    if not have_fluidsynth():
        raise SystemExit("needs the fluidsynth program and the fluid-soundfont-gm soundfont")

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = _weights_root(work)
        song = _render(work / "song.wav")
        from musicgen_remix.remix.request import RemixRequest
        from musicgen_remix.service import RemixService

        start = time.perf_counter()
        service = RemixService(root=root, device="cpu", default_version=args.model_version)
        if args.full_size_demucs:
            service.separator.model = _full_size_htdemucs(service.separator)
        print(f"weights: {root}")
        print(f"service ready in {time.perf_counter() - start:.1f} s (LM, EnCodec, htdemucs); torch threads: "
              f"{torch.get_num_threads()}, CPU cores: {os.cpu_count()}")
        print(f"song: {DURATION:g} s, {BPM:g} bpm, 44.1 kHz stereo; model {args.model_version}"
              + (", MultiBand Diffusion" if args.multi_band_diffusion else ""))
        request = RemixRequest(prompt="bossa nova, nylon guitar", music_input=song, seed=1,
                               model_version=args.model_version, multi_band_diffusion=args.multi_band_diffusion)
        clock = StageClock()
        rows: list[dict[str, float]] = []
        for index in range(args.runs):
            out = work / f"run{index}"
            out.mkdir()
            clock.reset()
            with timed_pipeline(clock, service.separator):
                start = time.perf_counter()
                service.predict(request, out)
                total = time.perf_counter() - start
            row = dict(clock.seconds)
            row["other"] = total - sum(row.values())
            row["total"] = total
            rows.append(row)
    _report(rows, full_size_demucs=args.full_size_demucs)


def _weights_root(work: Path) -> Path:
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    from fixtures.weights import write_tiny_weights

    root = work / "weights"
    start = time.perf_counter()
    write_tiny_weights(root)
    print(f"wrote tiny weights in {time.perf_counter() - start:.1f} s")
    os.environ[WEIGHTS_ENV] = str(root)  # tells the service not to download anything
    return root


def _full_size_htdemucs(separator: Any) -> Any:
    """An HTDemucs with the release ``htdemucs``'s architecture and random weights: the same compute."""
    from fractions import Fraction

    from demucs.htdemucs import HTDemucs

    model = HTDemucs(sources=separator.sources, samplerate=separator.sample_rate, dconv_mode=3,
                     segment=Fraction(39, 5)).eval()
    print(f"separating with a release-size HTDemucs ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
          "parameters, random weights)")
    return model


def _render(path: Path) -> Path:
    """A 30 s song (pad, bass, drums, a choir line), cut to exactly ``DURATION`` (fluidsynth adds the release)."""
    bars = int(DURATION / (4 * 60.0 / BPM))
    render_song(path, progression=PROGRESSION, bpm=BPM, bars=bars, vocal_line=True)
    wav, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    soundfile.write(str(path), wav[: int(DURATION * rate)], rate, subtype="PCM_16")
    return path


def _report(rows: list[dict[str, float]], *, full_size_demucs: bool) -> None:
    heads = [f"run {i + 1}" + (" (cold)" if i == 0 else "") for i in range(len(rows))]
    print("\nstage          " + "".join(f"{h:>14}" for h in heads))
    for stage in ORDER:
        print(f"{stage:<15}" + "".join(f"{row.get(stage, 0.0):>13.2f}s" for row in rows))
    outside = [row["total"] - sum(row.get(s, 0.0) for s in GENERATION) for row in rows]
    outside_lm = [row["total"] - row.get("generate", 0.0) - row.get("decode", 0.0) for row in rows]
    print(f"{'total':<15}" + "".join(f"{row['total']:>13.2f}s" for row in rows))
    print(f"{'outside generate':<15}" + "".join(f"{v:>13.2f}s" for v in outside))
    print(f"{'  ... and decode':<15}" + "".join(f"{v:>13.2f}s" for v in outside_lm))
    verdict = "meets" if max(outside[1:] or outside) < TARGET_OUTSIDE_GENERATION_S else "MISSES"
    print(f"\ntarget: stages outside generation < {TARGET_OUTSIDE_GENERATION_S:g} s per {DURATION:g} s song; "
          f"the warm run {verdict} it here.")
    if not full_size_demucs:
        print("caveat: the tiny htdemucs is far cheaper than the real one, so 'separate' is a lower bound; "
              "--full-size-demucs measures a release-size HTDemucs.")
    print("caveat: generate and decode reflect the tiny LM and EnCodec only.")


if __name__ == "__main__":
    main()
