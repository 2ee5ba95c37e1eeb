"""Time-map stretching: stretch ``[C, T]`` audio so that chosen source times land on chosen target times.

Two engines; the default was chosen by measurement (``OMP_NUM_THREADS=1 python -m benchmarks.beatsync_stretch``:
four rendered pairs of 30 s, 32 kHz stereo, 3-9 % tempo differences and 0.05-0.5 s offsets, planned by
:func:`musicgen_remix.remix.beatsync.plan_sync` at its defaults; errors over all 48 matched downbeats; onset
lag capped at 100 ms; 2-core machine)::

    engine             onset lag      madmom re-detected   LSD       runtime per 30 s
                       median / max   median / max         (mel)
    rubberband, R3      2 / 14 ms       0 / 10 ms          4.87 dB   1.4 s
    rubberband, R2      7 / 16 ms      10 / 10 ms          4.90 dB   0.8 s   (fallback; measured by forcing it)
    wsola (pytsmod)    10 / 22 ms      10 / 20 ms          6.51 dB   0.6 s
    not stretched      56 / 100 ms    200 / 700 ms        11.90 dB   -

- ``"rubberband"`` (default): the ``rubberband`` program (Debian ``rubberband-cli``), run as pyrubberband
  (ISC) runs it (``--time`` and ``--timemap``), with the R3 engine (``--fine``) where the program has it
  (Rubber Band >= 3.0), else R2 with a warning. The program is started with ``subprocess.Popen`` and waited
  for in steps of ``POLL_S``, so an exception injected into the waiting thread (a Cog cancel under coglet
  arrives that way, and only while Python bytecode runs) stops it within a second: the child is killed and
  reaped and its temporary files are removed. Best alignment and quality; its 1.4 s is small next to
  generating 30 s of music. The program is GPL-2.0+, but it runs as a separate process, so no GPL code is
  linked into this MIT package. Its weak spot is a short region stretched far (the seed's (0, 0) to a first
  downbeat a fraction of a second in): every later anchor then lands off by a constant for the rest of the
  file (R3: 36 ms after 0.3 s -> 0.8 s, 91 ms after 0.1 s -> 0.4 s; at most 14 ms up to 1.5x). Plans
  therefore bound every region's stretch (``beatsync.MAX_STRETCH``) and move the lead-in instead of
  stretching it (the table above predates that and was measured with (0, 0) anchors); without that bound
  R3 scored 14 / 100+ ms onset lag, 20 / 130 ms re-detected and 6.90 dB on the same pairs (``--max-stretch 1000``).
- ``"wsola"``: pytsmod's WSOLA. Not the default: it puts everything up to its search tolerance (512
  samples, 16 ms at 32 kHz) early wherever frames are quiet, because ties in its cross-correlation go to
  the first lag, and it sounds rougher (LSD above). pytsmod is GPL-3.0, a licence problem for this MIT
  project, so it is no runtime dependency: it is imported only when this engine is asked for, which only
  the benchmark does, to re-measure the choice when either library changes.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile

from musicgen_remix.errors import MusicgenRemixError, contract_error

logger = logging.getLogger(__name__)

Engine = Literal["rubberband", "wsola"]
ENGINES: tuple[str, ...] = ("rubberband", "wsola")
DEFAULT_ENGINE: Engine = "rubberband"

_RUBBERBAND = "rubberband"
_RUBBERBAND_PEAK = 0.5
POLL_S = 0.05
"""How often the thread waiting for the rubberband program runs Python bytecode (so a cancel can land)."""


def timemap_stretch(
    wav: np.ndarray, sample_rate: int, anchors: np.ndarray, *, engine: Engine = DEFAULT_ENGINE
) -> np.ndarray:
    """Stretch ``wav`` piecewise so that each anchor's source time lands on its target time.

    Args:
        wav: float32 ``[C, T]`` audio.
        sample_rate: samples per second of ``wav``.
        anchors: ``[N, 2]`` (source s, target s) pairs, N >= 2, strictly increasing in both columns, starting
            at (0, 0) and ending at (duration of ``wav``, duration of the result).
        engine: ``"rubberband"`` or ``"wsola"`` (see the module docstring).

    Returns:
        float32 ``[C, round(anchors[-1, 1] * sample_rate)]``.

    Raises:
        ValueError: malformed ``wav``, ``anchors`` or ``engine``.
        MusicgenRemixError: the engine's program or package is missing, or it failed.
    """
    if engine not in ENGINES:
        raise contract_error("stretch_engine", engine, "one of " + ", ".join(ENGINES))
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 2 or wav.shape[1] == 0:
        raise contract_error("wav", wav.shape, "a non-empty [C, T] array")
    if sample_rate <= 0:
        raise contract_error("sample_rate", sample_rate, "a positive number of samples per second")
    frames = _anchor_frames(anchors, sample_rate, wav.shape[1])
    stretched = _rubberband(wav, sample_rate, frames) if engine == "rubberband" else _wsola(wav, frames)
    return _fit(stretched, int(frames[-1, 1]))


def _anchor_frames(anchors: np.ndarray, sample_rate: int, num_frames: int) -> np.ndarray:
    """Check ``anchors`` (seconds) and convert them to an int64 ``[N, 2]`` map of sample frames."""
    anchors = np.asarray(anchors, dtype=np.float64)
    duration = num_frames / sample_rate
    allowed = (
        "an [N >= 2, 2] array of (source s, target s), strictly increasing in both columns, from (0, 0) "
        f"to ({duration:.6f} s, the audio's duration; target duration > 0)"
    )
    if anchors.ndim != 2 or anchors.shape[0] < 2 or anchors.shape[1] != 2 or not np.isfinite(anchors).all():
        raise contract_error("anchors", anchors.shape, allowed)
    steps = np.diff(anchors, axis=0)
    if (
        anchors[0, 0] != 0.0
        or anchors[0, 1] != 0.0
        or (steps <= 0).any()
        or abs(anchors[-1, 0] - duration) > 1.0 / sample_rate
    ):
        raise contract_error("anchors", anchors.tolist() if anchors.size <= 8 else anchors.shape, allowed)
    frames = np.round(anchors * sample_rate).astype(np.int64)
    frames[-1, 0] = num_frames
    if frames[-1, 1] < 1:
        raise contract_error("anchors", float(anchors[-1, 1]), "a target duration of at least one sample")
    # Anchors closer than one sample collapse when rounded; keep the first of each run so both columns
    # stay strictly increasing, as both engines require (pytsmod counts the end one sample earlier).
    keep = [0]
    for index in range(1, len(frames) - 1):
        if (frames[index] > frames[keep[-1]]).all() and (frames[index] < frames[-1] - 1).all():
            keep.append(index)
    keep.append(len(frames) - 1)
    return frames[keep]


def _fit(stretched: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad ``[C, T']`` to exactly ``length`` frames, as float32."""
    stretched = stretched[:, :length]
    if stretched.shape[1] < length:
        stretched = np.pad(stretched, ((0, 0), (0, length - stretched.shape[1])))
    return np.ascontiguousarray(stretched, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------
# Rubber Band (the rubberband program, run the way pyrubberband runs it)


@functools.cache
def _rubberband_has_r3() -> bool:
    """Whether the installed rubberband program offers the R3 ("--fine") engine (Rubber Band >= 3.0).

    Raises:
        MusicgenRemixError: the rubberband program is not installed.
    """
    if shutil.which(_RUBBERBAND) is None:
        raise MusicgenRemixError("the rubberband program is missing (Debian/Ubuntu package rubberband-cli)")
    probe = subprocess.run([_RUBBERBAND, "--help"], capture_output=True, text=True, check=False)
    return "--fine" in probe.stdout + probe.stderr


def _rubberband(wav: np.ndarray, sample_rate: int, frames: np.ndarray) -> np.ndarray:
    fine = _rubberband_has_r3()
    if not fine:
        logger.warning("rubberband has no R3 engine (needs Rubber Band >= 3.0); using the R2 engine")
    # Rubber Band restarts with a lower gain when its output clips: give it 6 dB of headroom and restore the
    # level after (the files are 32-bit float, so nothing is lost).
    peak = float(np.abs(wav).max())
    scale = peak / _RUBBERBAND_PEAK if peak > 0 else 1.0
    # (0, 0) is implied. Given explicitly, Rubber Band 3.1.2's R3 engine derives a NaN ratio from it and
    # ignores the whole map (breakfastquay/rubberband#124); R2 gives the same result either way.
    time_map = "".join(f"{int(source)} {int(target)}\n" for source, target in frames[1:])
    with tempfile.TemporaryDirectory(prefix="musicgen-remix-stretch-") as tmp:
        folder = Path(tmp)
        source, target, mapping, log = (folder / name for name in ("in.wav", "out.wav", "map.txt", "log.txt"))
        soundfile.write(source, (wav / scale).T, sample_rate, subtype="FLOAT")
        mapping.write_text(time_map)
        ratio = float(frames[-1, 1]) / float(frames[-1, 0])
        command = [_RUBBERBAND, "-q", "--fine" if fine else "--fast", "--time", repr(ratio), "--timemap",
                   str(mapping), str(source), str(target)]
        returncode = run_interruptibly(command, log)
        if returncode != 0:
            detail = log.read_text(errors="replace").strip()[-500:]
            raise MusicgenRemixError(f"rubberband failed to stretch the audio (exit {returncode}): {detail}")
        stretched, _ = soundfile.read(target, dtype="float32", always_2d=True)
    return stretched.T * scale


def run_interruptibly(command: list[str], log: Path) -> int:
    """Run ``command`` with stdout discarded and stderr to ``log``; return its exit status.

    The wait is a loop of ``POLL_S`` timeouts, so Python bytecode runs at least that often and an exception
    raised into this thread (``PyThreadState_SetAsyncExc``, which is how coglet delivers a cancel) lands
    within a poll; on any exception, including KeyboardInterrupt and other BaseExceptions, the child is
    killed and reaped before the exception propagates.
    """
    with open(log, "wb") as errors:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            while True:
                try:
                    return process.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    continue
        except BaseException:
            process.kill()
            process.wait()
            raise


# ----------------------------------------------------------------------------------------------------
# WSOLA (pytsmod, GPL-3.0)


def _wsola(wav: np.ndarray, frames: np.ndarray) -> np.ndarray:
    try:
        import pytsmod
    except ImportError as error:
        raise MusicgenRemixError("the wsola stretch engine needs the pytsmod package (GPL-3.0)") from error
    # pytsmod's anchors are sample indices and its output ends at the last target index.
    anchor_map = frames.T.astype(np.float64)
    anchor_map[:, -1] -= 1
    stretched = pytsmod.wsola(wav.astype(np.float64), anchor_map)
    return np.atleast_2d(stretched)
