"""Reading, resampling, channel conversion, trimming and writing of audio.

This is the one module that touches audio files. Everything it returns follows the package's audio
convention: a float32 tensor ``[C, T]`` nominally in [-1, 1], with its sample rate carried beside it
in an :class:`Audio`. Cleaning and loudness normalisation live in :mod:`musicgen_remix.audio.normalize`.

Decoding goes through soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3, aiff, ...) first because it
is exact and fast, and falls back to PyAV (ffmpeg: m4a/aac and anything else ffmpeg decodes) for files
libsndfile cannot open or cannot finish. Unusable input is reported as :class:`AudioError`, never masked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import av
import julius
import lameenc
import numpy as np
import scipy.signal
import soundfile
import torch

from musicgen_remix.audio.tags import id3v24
from musicgen_remix.errors import AudioError, InputError, MusicgenRemixError, contract_error

logger = logging.getLogger(__name__)

OutputFormat = Literal["wav", "flac", "mp3"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)

MP3_BITRATE_KBPS = 320
# 320 kbps exists only in MPEG-1 Layer III, whose sample rates are these three; LAME silently drops the
# bitrate (to 64 kbps at 8 kHz) for any other rate, so other rates are resampled before encoding.
MP3_SAMPLE_RATES: tuple[int, ...] = (32000, 44100, 48000)

# julius builds one kernel per output phase, so its memory grows with the product of the reduced rates
# (tens of gigabytes for 44099 -> 32000). Past this many kernel taps the polyphase FIR of scipy is used.
_JULIUS_MAX_KERNEL_TAPS = 4_000_000

_PCM16_SCALE = 32767.0
_UNKNOWN_LENGTH = 2**62
_READ_BLOCK_FRAMES = 1 << 20


@dataclass(frozen=True)
class Audio:
    """Audio samples with their sample rate.

    Attributes:
        wav: float32 tensor ``[C, T]``, nominally in [-1, 1].
        sample_rate: samples per second per channel.
    """

    wav: torch.Tensor
    sample_rate: int

    def __post_init__(self) -> None:
        if self.wav.dim() != 2:
            raise contract_error("wav", tuple(self.wav.shape), "a [C, T] tensor")
        if self.sample_rate <= 0:
            raise contract_error("sample_rate", self.sample_rate, "a positive number of samples per second")

    @property
    def channels(self) -> int:
        return int(self.wav.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.wav.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_frames / self.sample_rate


# ----------------------------------------------------------------------------------------------------
# Reading


def check_audio_file(path: Path, field: str) -> None:
    """What can be said of an audio input without decoding it: it exists, is a regular file, is not empty.

    Request checks call this before any model is loaded; :func:`read_audio` calls it again.

    Raises:
        AudioError: naming ``field`` and the file's name.
    """
    name = path.name
    if not path.exists():
        raise AudioError(field, name, "an existing audio file (this file does not exist)")
    if not path.is_file():
        raise AudioError(field, name, "an audio file (this path is not a regular file)")
    if path.stat().st_size == 0:
        raise AudioError(field, name, "a non-empty audio file (this file is 0 bytes)")


def declared_seconds(path: Path) -> float | None:
    """The length an audio file's header declares, read without decoding; None when it declares none.

    Request checks use it to refuse what the file's length already rules out before any model is looked for;
    the pipelines check the decoded audio again (a truncated file decodes shorter than its header says).
    """
    try:
        info = soundfile.info(str(path))
        if 0 < info.frames < _UNDECLARED_FRAMES and info.samplerate > 0:
            return float(info.frames / info.samplerate)
    except soundfile.SoundFileError:
        pass  # not a format libsndfile opens (m4a, ...): ffmpeg's estimate
    try:
        with av.open(str(path)) as container:
            seconds = (container.duration or 0) / av.time_base
    except av.error.FFmpegError:
        return None  # not audio at all: reading it says so, with the reason
    return seconds if math.isfinite(seconds) and seconds > 0 else None


# A stream written to a pipe declares an absurd frame count (libsndfile's "unknown length").
_UNDECLARED_FRAMES = 2**62


def check_declared_length(path: Path, field: str, *, min_s: float, max_s: float, too_short: str) -> float | None:
    """The file's length as its header declares it, refused outside ``[min_s, max_s]``; None when undeclared.

    Args:
        too_short: what is allowed, said when the file is shorter than ``min_s`` (its length is added).

    Raises:
        AudioError: naming ``field`` and the file's name.
    """
    seconds = declared_seconds(path)
    if seconds is None:
        return None  # no length in the header: the pipeline checks the decoded audio
    if seconds < min_s:
        raise AudioError(field, path.name, f"{too_short} (this file has {seconds:.2f} s)")
    if seconds > max_s:
        raise AudioError(field, path.name, f"audio no longer than {max_s:g} s (this file is {seconds:.1f} s)")
    return seconds


def read_audio(path: str | Path, *, field: str = "input_audio", max_seconds: float | None = None) -> Audio:
    """Decode an audio file into an :class:`Audio` at its own sample rate and channel count.

    Integer PCM is scaled to [-1, 1]. Silence is returned as is (callers decide whether it is usable);
    float files with samples beyond full scale are returned unchanged, with a warning.

    Args:
        path: the file to read (wav, flac, ogg, mp3, m4a, or anything ffmpeg decodes).
        field: the input's name, used in error messages.
        max_seconds: reject files longer than this many seconds.

    Raises:
        AudioError: the file is missing, empty, not audio, undecodable, has no samples, contains NaN
            or Inf, or is longer than ``max_seconds``.
    """
    path = Path(path)
    name = path.name
    check_audio_file(path, field)

    check_length = _LengthCap(field, name, max_seconds)
    decoded = _read_with_soundfile(path, check_length)
    if decoded is None:
        decoded = _read_with_pyav(path, field, check_length)
    samples, sample_rate = decoded  # samples: [C, T] float32

    if samples.shape[1] == 0:
        raise AudioError(field, name, "audio with at least one sample (this file decodes to no samples)")
    check_length(samples.shape[1], sample_rate)
    if not np.isfinite(samples).all():
        raise AudioError(field, name, "finite samples (this file contains NaN or Inf samples)")
    peak = float(np.abs(samples).max())
    if peak > 1.0:
        # Float files may hold overs; clipping here would destroy them before normalisation could.
        logger.warning("%s: %s peaks at %.3f, above full scale; left unchanged", field, name, peak)

    audio = Audio(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), int(sample_rate))
    logger.debug("read %s: %d ch, %d Hz, %.3f s", name, audio.channels, audio.sample_rate, audio.duration)
    return audio


class _LengthCap:
    """Raises the "too long" AudioError when called with more frames than ``max_seconds`` allows."""

    def __init__(self, field: str, name: str, max_seconds: float | None) -> None:
        self.field = field
        self.name = name
        self.max_seconds = max_seconds

    def __call__(self, frames: int, sample_rate: int) -> None:
        if self.max_seconds is not None and frames > self.max_seconds * sample_rate:
            raise AudioError(
                self.field,
                self.name,
                f"audio no longer than {self.max_seconds:g} s "
                f"(this file is at least {frames / sample_rate:.1f} s)",
            )


def _read_with_soundfile(path: Path, check_length: _LengthCap) -> tuple[np.ndarray, int] | None:
    """Decode with libsndfile; None when it cannot open or finish the file (PyAV gets a try).

    Read block by block with the length cap checked as it grows: a stream whose header gives no length (a
    FLAC or WAV written to a pipe) declares an absurd frame count, and one read would ask for all of it.
    """
    try:
        with soundfile.SoundFile(str(path)) as handle:
            sample_rate = int(handle.samplerate)
            declared = int(handle.frames)
            # Checked before decoding so an over-long upload is refused without filling memory.
            if declared < _UNKNOWN_LENGTH:
                check_length(declared, sample_rate)
            blocks: list[np.ndarray] = []
            frames = 0
            while block := len(chunk := handle.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)):
                blocks.append(chunk)
                frames += block
                check_length(frames, sample_rate)
            data = np.concatenate(blocks) if blocks else np.zeros((0, handle.channels), np.float32)
    except soundfile.SoundFileError as error:
        logger.debug("soundfile could not read %s (%s); trying PyAV", path.name, error)
        return None
    if data.shape[0] == 0:
        # libsndfile reports 0 frames for some truncated ogg files that ffmpeg still decodes in part.
        return None
    if data.shape[0] < declared < _UNKNOWN_LENGTH:
        logger.warning(
            "%s: decoded %d of %d declared frames (truncated file?)", path.name, data.shape[0], declared
        )
    return data.T, sample_rate


# Divisors that map each integer sample format to [-1, 1].
_INT_SCALES: dict[str, tuple[float, float]] = {  # format name without "p": (offset, scale)
    "u8": (128.0, 128.0),
    "s16": (0.0, 32768.0),
    "s32": (0.0, 2147483648.0),
    "s64": (0.0, 9223372036854775808.0),
}


def _read_with_pyav(path: Path, field: str, check_length: _LengthCap) -> tuple[np.ndarray, int]:
    """Decode with PyAV (ffmpeg). Keeps what decoded before a mid-stream error, with a warning."""
    name = path.name
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise AudioError(
            field, name, "an audio file (this file is not recognised as audio, or is damaged)"
        ) from error
    chunks: list[np.ndarray] = []
    frames = 0
    sample_rate = 0
    rates: set[int] = set()
    with container:
        if not container.streams.audio:
            raise AudioError(field, name, "an audio file (this file has no audio stream)")
        stream = container.streams.audio[0]
        try:
            for frame in container.decode(stream):
                sample_rate = int(frame.sample_rate)
                rates.add(sample_rate)
                chunk = _frame_to_float(frame)
                chunks.append(chunk)
                frames += chunk.shape[1]
                check_length(frames, sample_rate)
        except av.error.FFmpegError as error:
            if frames == 0:
                raise AudioError(
                    field, name, "a decodable audio file (this file could not be decoded)"
                ) from error
            logger.warning("%s: decoding stopped after %d frames: %s", name, frames, error)
    if frames == 0:
        raise AudioError(field, name, "audio with at least one sample (this file decodes to no samples)")
    if len({chunk.shape[0] for chunk in chunks}) != 1 or len(rates) != 1:
        # Chained streams (e.g. concatenated ogg) can switch layout or rate; one tensor cannot hold that.
        raise AudioError(
            field, name, "audio with one channel count and sample rate (this file changes them midway)"
        )
    return np.concatenate(chunks, axis=1), sample_rate


def _frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame as float32 ``[C, n]``, integers scaled to [-1, 1]."""
    array = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        # Packed frames come as [1, n * C] with channels interleaved.
        array = array.reshape(-1, channels).T
    base = frame.format.name.rstrip("p")
    if base in _INT_SCALES:
        offset, scale = _INT_SCALES[base]
        return ((array.astype(np.float64) - offset) / scale).astype(np.float32)
    return array.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------------
# Conversion


def resample(wav: torch.Tensor, from_sr: int, to_sr: int) -> torch.Tensor:
    """Resample ``[..., T]`` audio from ``from_sr`` to ``to_sr`` Hz (no-op when equal).

    Uses julius (as audiocraft does) for the usual rates; unusual rate pairs whose reduced ratio would
    need a huge julius kernel go through scipy's polyphase filter instead.
    """
    if from_sr <= 0 or to_sr <= 0:
        raise contract_error("sample_rate", (from_sr, to_sr), "positive sample rates")
    if from_sr == to_sr:
        return wav
    divisor = math.gcd(from_sr, to_sr)
    old, new = from_sr // divisor, to_sr // divisor
    # Kernel size as julius computes it: one row per output phase, each old + 2 * width taps long.
    width = math.ceil(24 * old / (0.945 * min(old, new)))
    if new * (old + 2 * width) <= _JULIUS_MAX_KERNEL_TAPS:
        output_length = round(wav.shape[-1] * to_sr / from_sr)
        return julius.resample_frac(wav, from_sr, to_sr, output_length=output_length)
    logger.debug("resampling %d -> %d Hz with scipy (ratio %d/%d)", from_sr, to_sr, new, old)
    result = scipy.signal.resample_poly(wav.detach().cpu().numpy(), new, old, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(result, dtype=np.float32)).to(wav.device)


def to_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert ``[C, T]`` audio to 1 or 2 channels.

    To mono: the mean of all channels. To stereo: mono is duplicated; from more than two channels the
    first two are kept (left and right in the WAV, FLAC and ffmpeg channel orders), because folding
    surrounds into both sides would collapse the stereo image of a music mix.
    """
    if channels not in (1, 2):
        raise contract_error("channels", channels, "1 (mono) or 2 (stereo)")
    current = wav.shape[0]
    if current == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=0, keepdim=True)
    if current == 1:
        return wav.expand(2, -1).clone()
    return wav[:2].clone()


def convert(audio: Audio, sample_rate: int, channels: int) -> Audio:
    """Return ``audio`` at ``sample_rate`` Hz with ``channels`` channels."""
    # Channels first: downmixing before resampling means fewer channels to resample.
    wav = to_channels(audio.wav, channels)
    wav = resample(wav, audio.sample_rate, sample_rate)
    return Audio(wav, sample_rate)


def trim(
    audio: Audio,
    start: float,
    end: float | None = None,
    *,
    start_field: str = "continuation_start",
    end_field: str = "continuation_end",
) -> Audio:
    """Cut ``audio`` to ``[start, end)`` seconds (``end=None``: to the end).

    Raises:
        InputError: naming ``start_field`` or ``end_field`` unless ``0 <= start < end <= duration``.
    """
    duration = audio.duration
    allowed = f"0 <= {start_field} < {end_field} <= {duration:.3f} (the audio's duration in seconds)"
    if end is None:
        end = duration
    if not (math.isfinite(start) and 0 <= start < duration):
        raise InputError(start_field, start, allowed)
    if not (math.isfinite(end) and start < end <= duration):
        raise InputError(end_field, end, allowed)
    first = round(start * audio.sample_rate)
    last = min(round(end * audio.sample_rate), audio.num_frames)
    if last <= first:
        # start and end closer than one sample.
        raise InputError(end_field, end, allowed + f", at least one sample after {start_field}")
    return Audio(audio.wav[:, first:last], audio.sample_rate)


# ----------------------------------------------------------------------------------------------------
# Writing


def write_audio(
    path: str | Path,
    audio: Audio | torch.Tensor,
    sample_rate: int | None = None,
    *,
    fmt: OutputFormat,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write audio as 16-bit WAV, 16-bit FLAC or 320 kbps MP3 and return the path written.

    Samples are clipped to [-1, 1] before integer conversion: normalisation is expected to have
    happened already (see :mod:`musicgen_remix.audio.normalize`). The file suffix is made to match
    ``fmt`` (appended when it does not). MP3 holds mono or stereo only and is written at an MPEG-1
    rate (32, 44.1 or 48 kHz), resampling other rates, so that 320 kbps is really used.

    Args:
        path: destination; the parent directory must exist.
        audio: an :class:`Audio`, or a ``[C, T]`` / ``[T]`` tensor with ``sample_rate``.
        sample_rate: required with a tensor; must match when given with an :class:`Audio`.
        fmt: ``"wav"``, ``"flac"`` or ``"mp3"``.
        tags: ``title``, ``software`` and ``comment`` to write into the file (WAV INFO chunk, FLAC Vorbis
            comments, MP3 ID3v2.4; see :mod:`musicgen_remix.audio.tags`).

    Raises:
        ValueError: unknown format, missing sample rate, bad shape, or more than 2 channels for mp3.
        MusicgenRemixError: the samples contain NaN or Inf (a bug upstream, never written).
    """
    if fmt not in OUTPUT_FORMATS:
        raise contract_error("output_format", fmt, "one of " + ", ".join(OUTPUT_FORMATS))
    audio = _as_audio(audio, sample_rate)
    if not bool(torch.isfinite(audio.wav).all()):
        raise MusicgenRemixError("refusing to write audio that contains NaN or Inf samples")

    path = Path(path)
    if path.suffix.lower() != f".{fmt}":
        path = path.with_name(f"{path.name}.{fmt}")

    if fmt == "mp3":
        _write_mp3(path, audio, tags or {})
    else:
        pcm = _to_pcm16(audio.wav)
        with soundfile.SoundFile(str(path), "w", samplerate=audio.sample_rate, channels=audio.channels,
                                 subtype="PCM_16", format=fmt.upper()) as handle:
            for key, value in (tags or {}).items():
                setattr(handle, key, value)  # libsndfile's string fields: title, software, comment, ...
            handle.write(pcm.T)
    logger.debug("wrote %s: %d ch, %d Hz, %.3f s", path, audio.channels, audio.sample_rate, audio.duration)
    return path


def _as_audio(audio: Audio | torch.Tensor, sample_rate: int | None) -> Audio:
    if isinstance(audio, Audio):
        if sample_rate is not None and sample_rate != audio.sample_rate:
            raise contract_error(
                "sample_rate", sample_rate, f"None or the Audio's own rate ({audio.sample_rate})"
            )
        return audio
    if sample_rate is None:
        raise contract_error("sample_rate", None, "a sample rate in Hz when writing a bare tensor")
    wav = audio.detach().to("cpu", torch.float32)
    if wav.dim() == 1:
        wav = wav.unsqueeze(0)
    return Audio(wav, sample_rate)


def _to_pcm16(wav: torch.Tensor) -> np.ndarray:
    """``[C, T]`` float -> int16 ``[C, T]``, clipped to full scale."""
    samples = wav.detach().to("cpu", torch.float64).clamp(-1.0, 1.0).numpy()
    return np.round(samples * _PCM16_SCALE).astype(np.int16)


def _write_mp3(path: Path, audio: Audio, tags: Mapping[str, str]) -> None:
    if audio.channels > 2:
        raise contract_error("channels", audio.channels, "1 or 2 for mp3 output (convert with to_channels first)")
    sample_rate = audio.sample_rate
    wav = audio.wav
    if sample_rate not in MP3_SAMPLE_RATES:
        target = next((rate for rate in MP3_SAMPLE_RATES if rate >= sample_rate), MP3_SAMPLE_RATES[-1])
        logger.info(
            "mp3: resampling %d Hz to %d Hz so that %d kbps applies", sample_rate, target, MP3_BITRATE_KBPS
        )
        wav = resample(wav.to(torch.float32), sample_rate, target)
        sample_rate = target
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(MP3_BITRATE_KBPS)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(audio.channels)
    encoder.set_quality(2)  # LAME's "high quality" preset; 0 is far slower for no audible gain.
    interleaved = np.ascontiguousarray(_to_pcm16(wav).T)
    data = encoder.encode(interleaved.tobytes()) + encoder.flush()
    path.write_bytes((id3v24(tags) if tags else b"") + bytes(data))
