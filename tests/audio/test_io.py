"""Tests for musicgen_remix.audio.io: decoding, rejection, conversion, trimming and writing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import lameenc
import numpy as np
import pytest
import soundfile
import torch

from musicgen_remix.audio import (
    Audio,
    convert,
    read_audio,
    resample,
    to_channels,
    trim,
    write_audio,
)
from musicgen_remix.errors import AudioError, InputError, MusicgenRemixError

MP3_FRAME = 1152
# lameenc writes no LAME/Xing tag, so decoders keep the encoder delay and the last frame's padding.
MP3_MAX_EXTRA = 3 * MP3_FRAME

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program is missing")


def tone(
    seconds: float = 1.0, sample_rate: int = 44100, channels: int = 2, amplitude: float = 0.5
) -> np.ndarray:
    """``[T, C]`` float64 test signal: one sine per channel at a different frequency and level."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    columns = [amplitude / (c + 1) * np.sin(2 * np.pi * 220.0 * (c + 1) * t) for c in range(channels)]
    return np.stack(columns, axis=1)


def write_wav(path: Path, data: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    soundfile.write(str(path), data, sample_rate, subtype=subtype)
    return path


def write_mp3(path: Path, data: np.ndarray, sample_rate: int) -> Path:
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(320)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(data.shape[1])
    encoder.set_quality(2)
    pcm = np.round(np.clip(data, -1, 1) * 32767).astype(np.int16)
    path.write_bytes(bytes(encoder.encode(pcm.tobytes()) + encoder.flush()))
    return path


def ffmpeg(source: Path, target: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), *args, str(target)],
        check=True,
        capture_output=True,
    )
    return target


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def aligned_correlation(reference: np.ndarray, decoded: np.ndarray, max_lag: int) -> float:
    """Best correlation of ``decoded`` ``[T']`` against ``reference`` ``[T]`` over codec delays."""
    n = reference.shape[0]
    return max(
        correlation(reference, decoded[lag : lag + n])
        for lag in range(max_lag + 1)
        if decoded[lag : lag + n].shape[0] == n
    )


def dominant_frequency(signal: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.shape[0])))
    return float(np.fft.rfftfreq(signal.shape[0], 1 / sample_rate)[np.argmax(spectrum)])


def assert_rejected(error: pytest.ExceptionInfo[AudioError], field: str, name: str) -> None:
    message = str(error.value)
    assert field in message
    assert name in message
    assert error.value.field == field


# ----------------------------------------------------------------------------------------------------
# Audio


def test_audio_properties() -> None:
    audio = Audio(torch.zeros(2, 48000), 32000)
    assert audio.channels == 2
    assert audio.num_frames == 48000
    assert audio.duration == pytest.approx(1.5)


def test_audio_refuses_wrong_shape() -> None:
    with pytest.raises(ValueError, match="wav"):
        Audio(torch.zeros(48000), 32000)


# ----------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("fmt", ["wav", "flac"])
@pytest.mark.parametrize("channels", [1, 2])
def test_lossless_round_trip(tmp_path: Path, fmt: str, channels: int) -> None:
    data = tone(1.0, 44100, channels)
    original = Audio(torch.from_numpy(data.T.astype(np.float32)), 44100)
    path = write_audio(tmp_path / f"out.{fmt}", original, fmt=fmt)  # type: ignore[arg-type]
    assert path.suffix == f".{fmt}"
    back = read_audio(path)
    assert back.sample_rate == 44100
    assert back.channels == channels
    assert back.num_frames == original.num_frames
    assert correlation(back.wav.numpy(), data.T) > 0.99
    assert float((back.wav - original.wav).abs().max()) < 1e-4  # 16-bit quantisation only


@pytest.mark.parametrize("channels", [1, 2])
def test_mp3_round_trip(tmp_path: Path, channels: int) -> None:
    data = tone(1.0, 44100, channels)
    path = write_audio(tmp_path / "out.mp3", torch.from_numpy(data.T), 44100, fmt="mp3")
    back = read_audio(path)
    assert back.sample_rate == 44100
    assert back.channels == channels
    assert data.shape[0] <= back.num_frames <= data.shape[0] + MP3_MAX_EXTRA
    for c in range(channels):
        assert aligned_correlation(data[:, c], back.wav[c].numpy(), 2 * MP3_FRAME) > 0.99


@pytest.mark.parametrize("fmt", ["mp3", "flac"])
def test_outputs_decode_with_ffmpeg(tmp_path: Path, fmt: str) -> None:
    """The files we write must decode in ffmpeg too, not only in libsndfile."""
    data = tone(1.0, 32000, 2)
    path = write_audio(tmp_path / "out", torch.from_numpy(data.T), 32000, fmt=fmt)  # type: ignore[arg-type]
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = sum(frame.samples for frame in container.decode(stream))
        assert stream.rate == 32000
        assert stream.codec_context.channels == 2
        if fmt == "mp3":
            assert stream.bit_rate == 320_000
    assert data.shape[0] <= frames <= data.shape[0] + MP3_MAX_EXTRA


def test_mp3_is_written_at_an_mpeg1_rate(tmp_path: Path) -> None:
    """320 kbps needs 32/44.1/48 kHz; LAME would silently fall back to 64 kbps at 16 kHz."""
    data = tone(1.0, 16000, 1)
    path = write_audio(tmp_path / "out.mp3", torch.from_numpy(data.T), 16000, fmt="mp3")
    back = read_audio(path)
    assert back.sample_rate == 32000
    assert 32000 <= back.num_frames <= 32000 + MP3_MAX_EXTRA
    assert dominant_frequency(back.wav[0].numpy(), 32000) == pytest.approx(220.0, abs=2.0)


def test_write_appends_suffix(tmp_path: Path) -> None:
    audio = Audio(torch.zeros(1, 1000), 32000)
    assert write_audio(tmp_path / "song", audio, fmt="wav") == tmp_path / "song.wav"
    assert write_audio(tmp_path / "song.wav", audio, fmt="flac") == tmp_path / "song.wav.flac"
    assert write_audio(tmp_path / "SONG.MP3", audio, fmt="mp3") == tmp_path / "SONG.MP3"


def test_write_clips_to_full_scale(tmp_path: Path) -> None:
    wav = torch.tensor([[0.0, 1.5, -2.0, 0.25]])
    path = write_audio(tmp_path / "out.wav", wav, 8000, fmt="wav")
    back, _ = soundfile.read(str(path), dtype="int16")
    assert back.tolist() == [0, 32767, -32767, 8192]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_write_refuses_non_finite(tmp_path: Path, bad: float) -> None:
    wav = torch.zeros(1, 100)
    wav[0, 10] = bad
    with pytest.raises(MusicgenRemixError, match="NaN or Inf"):
        write_audio(tmp_path / "out.wav", wav, 8000, fmt="wav")
    assert not (tmp_path / "out.wav").exists()


def test_write_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        write_audio(tmp_path / "out.wav", torch.zeros(1, 10), fmt="wav")
    with pytest.raises(ValueError, match="output_format"):
        write_audio(tmp_path / "out.ogg", torch.zeros(1, 10), 8000, fmt="ogg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channels"):
        write_audio(tmp_path / "out.mp3", torch.zeros(8, 100), 32000, fmt="mp3")


# ----------------------------------------------------------------------------------------------------
# Reading what other tools wrote


@pytest.mark.parametrize(
    ("subtype", "tolerance"),
    [("PCM_U8", 1e-2), ("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-6), ("FLOAT", 1e-7)],
)
def test_wav_sample_formats_are_scaled(tmp_path: Path, subtype: str, tolerance: float) -> None:
    data = tone(0.5, 22050, 2, amplitude=0.9)
    audio = read_audio(write_wav(tmp_path / "in.wav", data, 22050, subtype))
    assert audio.wav.dtype == torch.float32
    assert float((audio.wav.double() - torch.from_numpy(data.T)).abs().max()) < tolerance


def test_reads_eight_channels_in_order(tmp_path: Path) -> None:
    data = tone(1.0, 48000, 8)
    audio = read_audio(write_wav(tmp_path / "in.wav", data, 48000))
    assert audio.channels == 8
    peaks = audio.wav.abs().amax(dim=1).numpy()
    np.testing.assert_allclose(peaks, np.abs(data).max(axis=0), atol=1e-3)


@pytest.mark.parametrize("sample_rate", [8000, 192000])
def test_reads_extreme_sample_rates(tmp_path: Path, sample_rate: int) -> None:
    data = tone(0.5, sample_rate, 1)
    audio = read_audio(write_wav(tmp_path / "in.wav", data, sample_rate))
    assert audio.sample_rate == sample_rate
    assert audio.num_frames == data.shape[0]


def test_reads_mp3(tmp_path: Path) -> None:
    data = tone(2.0, 44100, 2)
    audio = read_audio(write_mp3(tmp_path / "in.mp3", data, 44100))
    assert (audio.sample_rate, audio.channels) == (44100, 2)
    assert data.shape[0] <= audio.num_frames <= data.shape[0] + MP3_MAX_EXTRA
    assert float(audio.wav[0].abs().max()) == pytest.approx(0.5, abs=0.02)


@needs_ffmpeg
@pytest.mark.parametrize(("suffix", "codec"), [("ogg", "libvorbis"), ("m4a", "aac"), ("opus", "libopus")])
def test_reads_compressed_formats(tmp_path: Path, suffix: str, codec: str) -> None:
    data = tone(2.0, 48000, 2)
    source = write_wav(tmp_path / "src.wav", data, 48000)
    audio = read_audio(ffmpeg(source, tmp_path / f"in.{suffix}", "-c:a", codec))
    assert (audio.sample_rate, audio.channels) == (48000, 2)
    assert audio.duration == pytest.approx(2.0, abs=0.05)
    # Skip the codec's priming at the start, then compare levels per channel.
    steady = audio.wav[:, 4096:-4096].abs().amax(dim=1).numpy()
    np.testing.assert_allclose(steady, [0.5, 0.25], atol=0.05)
    assert dominant_frequency(audio.wav[0].numpy(), 48000) == pytest.approx(220.0, abs=1.0)


@needs_ffmpeg
@pytest.mark.parametrize("codec", ["pcm_s16le", "pcm_u8", "pcm_s32le"])
def test_pyav_integer_formats_are_scaled(tmp_path: Path, codec: str) -> None:
    """Matroska PCM is something only PyAV reads: exercises packed integer frames with 8 channels."""
    data = tone(0.5, 8000, 8, amplitude=0.8)
    source = write_wav(tmp_path / "src.wav", data, 8000, "FLOAT")
    audio = read_audio(ffmpeg(source, tmp_path / "in.mka", "-c:a", codec))
    assert (audio.sample_rate, audio.channels, audio.num_frames) == (8000, 8, data.shape[0])
    tolerance = 1e-2 if codec == "pcm_u8" else 1e-4
    assert float((audio.wav.double() - torch.from_numpy(data.T)).abs().max()) < tolerance


def test_float_overs_are_kept(tmp_path: Path) -> None:
    """Reading never clips: normalisation decides what to do with overs."""
    data = tone(0.5, 8000, 1, amplitude=1.5)
    audio = read_audio(write_wav(tmp_path / "hot.wav", data, 8000, "FLOAT"))
    assert float(audio.wav.abs().max()) == pytest.approx(1.5, abs=1e-3)


def test_silence_is_not_rejected(tmp_path: Path) -> None:
    audio = read_audio(write_wav(tmp_path / "quiet.wav", np.zeros((8000, 1)), 8000))
    assert audio.num_frames == 8000
    assert float(audio.wav.abs().max()) == 0.0


# ----------------------------------------------------------------------------------------------------
# Rejections


def test_rejects_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as error:
        read_audio(tmp_path / "nowhere.wav")
    assert_rejected(error, "input_audio", "nowhere.wav")


def test_rejects_directory(tmp_path: Path) -> None:
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(AudioError, match="not a regular file") as error:
        read_audio(tmp_path / "folder.wav")
    assert_rejected(error, "input_audio", "folder.wav")


def test_rejects_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="0 bytes") as error:
        read_audio(tmp_path / "empty.wav", field="melody_audio")
    assert_rejected(error, "melody_audio", "empty.wav")


def test_rejects_text_named_wav(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("this is not audio\n" * 50)
    with pytest.raises(AudioError, match="not recognised") as error:
        read_audio(tmp_path / "notes.wav")
    assert_rejected(error, "input_audio", "notes.wav")


def test_rejects_header_only_wav(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", tone(0.5, 8000, 1), 8000).read_bytes()
    (tmp_path / "header.wav").write_bytes(full[:44])
    with pytest.raises(AudioError, match="no samples") as error:
        read_audio(tmp_path / "header.wav")
    assert_rejected(error, "input_audio", "header.wav")


def test_rejects_truncated_undecodable_mp3(tmp_path: Path) -> None:
    full = write_mp3(tmp_path / "full.mp3", tone(1.0, 44100, 2), 44100).read_bytes()
    (tmp_path / "stub.mp3").write_bytes(full[:50])
    with pytest.raises(AudioError) as error:
        read_audio(tmp_path / "stub.mp3")
    assert_rejected(error, "input_audio", "stub.mp3")


@needs_ffmpeg
def test_rejects_truncated_m4a(tmp_path: Path) -> None:
    """ffmpeg writes the m4a index at the end, so half a file cannot be decoded at all."""
    source = write_wav(tmp_path / "src.wav", tone(1.0, 44100, 2), 44100)
    full = ffmpeg(source, tmp_path / "full.m4a", "-c:a", "aac").read_bytes()
    (tmp_path / "half.m4a").write_bytes(full[: len(full) // 2])
    with pytest.raises(AudioError) as error:
        read_audio(tmp_path / "half.m4a")
    assert_rejected(error, "input_audio", "half.m4a")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_rejects_non_finite_samples(tmp_path: Path, bad: float) -> None:
    data = tone(0.5, 8000, 2)
    data[100, 1] = bad
    path = write_wav(tmp_path / "broken.wav", data, 8000, "FLOAT")
    with pytest.raises(AudioError, match="NaN or Inf") as error:
        read_audio(path)
    assert_rejected(error, "input_audio", "broken.wav")


def test_rejects_longer_than_cap(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "long.wav", tone(2.0, 8000, 1), 8000)
    with pytest.raises(AudioError, match="no longer than 1.5 s") as error:
        read_audio(path, max_seconds=1.5)
    assert_rejected(error, "input_audio", "long.wav")
    assert read_audio(path, max_seconds=2.0).num_frames == 16000


@needs_ffmpeg
def test_rejects_longer_than_cap_through_pyav(tmp_path: Path) -> None:
    source = write_wav(tmp_path / "src.wav", tone(2.0, 44100, 2), 44100)
    path = ffmpeg(source, tmp_path / "long.m4a", "-c:a", "aac")
    with pytest.raises(AudioError, match="no longer than 1 s") as error:
        read_audio(path, max_seconds=1.0)
    assert_rejected(error, "input_audio", "long.m4a")


# ----------------------------------------------------------------------------------------------------
# Truncated files that still decode in part


def test_truncated_mp3_returns_what_decoded(tmp_path: Path) -> None:
    data = tone(2.0, 44100, 2)
    full = write_mp3(tmp_path / "full.mp3", data, 44100).read_bytes()
    (tmp_path / "half.mp3").write_bytes(full[: len(full) // 2])
    audio = read_audio(tmp_path / "half.mp3")
    assert audio.channels == 2
    assert 0.8 <= audio.duration <= 1.2


def test_truncated_wav_returns_what_is_there(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", tone(2.0, 8000, 1), 8000).read_bytes()
    (tmp_path / "half.wav").write_bytes(full[: len(full) // 2])
    audio = read_audio(tmp_path / "half.wav")
    assert 0.9 <= audio.duration <= 1.1


def test_truncated_flac_falls_back_to_pyav(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.flac", tone(2.0, 44100, 2), 44100).read_bytes()
    (tmp_path / "half.flac").write_bytes(full[: len(full) // 2])
    audio = read_audio(tmp_path / "half.flac")
    assert audio.channels == 2
    assert 0.5 <= audio.duration < 2.0


# ----------------------------------------------------------------------------------------------------
# Conversion


@pytest.mark.parametrize(
    ("from_sr", "to_sr"), [(44100, 32000), (8000, 32000), (192000, 32000), (44099, 32000)]
)
def test_resample_keeps_pitch_and_length(from_sr: int, to_sr: int) -> None:
    """44099 -> 32000 reduces to no smaller ratio, which julius cannot hold in memory."""
    data = torch.from_numpy(tone(1.0, from_sr, 2).T.astype(np.float32))
    out = resample(data, from_sr, to_sr)
    assert out.shape == (2, round(data.shape[1] * to_sr / from_sr))
    assert out.dtype == torch.float32
    assert dominant_frequency(out[0].numpy(), to_sr) == pytest.approx(220.0, abs=1.5)
    assert float(out[0, 1000:-1000].abs().max()) == pytest.approx(0.5, abs=0.01)


def test_resample_is_a_no_op_at_the_same_rate() -> None:
    data = torch.randn(2, 1000)
    assert resample(data, 32000, 32000) is data


def test_to_channels() -> None:
    stereo = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert to_channels(stereo, 1).tolist() == [[0.5, 0.5]]
    assert to_channels(stereo[:1], 2).tolist() == [[1.0, 0.0], [1.0, 0.0]]
    eight = torch.arange(8.0).unsqueeze(1).repeat(1, 3)
    assert to_channels(eight, 2).tolist() == [[0.0] * 3, [1.0] * 3]
    assert to_channels(eight, 1).tolist() == [[3.5] * 3]
    assert to_channels(stereo, 2) is stereo
    with pytest.raises(ValueError, match="channels"):
        to_channels(stereo, 3)


def test_convert() -> None:
    audio = Audio(torch.from_numpy(tone(1.0, 48000, 8).T.astype(np.float32)), 48000)
    out = convert(audio, 32000, 1)
    assert (out.sample_rate, out.channels, out.num_frames) == (32000, 1, 32000)


# ----------------------------------------------------------------------------------------------------
# Trimming


def test_trim_slices_by_seconds() -> None:
    audio = Audio(torch.arange(10.0).unsqueeze(0), 10)
    assert trim(audio, 0.2, 0.5).wav.tolist() == [[2.0, 3.0, 4.0]]
    assert trim(audio, 0.7).wav.tolist() == [[7.0, 8.0, 9.0]]
    assert trim(audio, 0.0, 1.0).num_frames == 10


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (-0.1, 0.5, "continuation_start"),
        (1.0, None, "continuation_start"),
        (0.5, 0.5, "continuation_end"),
        (0.5, 0.3, "continuation_end"),
        (0.0, 1.2, "continuation_end"),
        (float("nan"), 0.5, "continuation_start"),
    ],
)
def test_trim_rejects_bad_ranges(start: float, end: float | None, field: str) -> None:
    audio = Audio(torch.zeros(1, 10), 10)
    with pytest.raises(InputError) as error:
        trim(audio, start, end)
    assert error.value.field == field
    assert "<= 1.000" in str(error.value)


def test_trim_names_the_callers_fields() -> None:
    audio = Audio(torch.zeros(1, 10), 10)
    with pytest.raises(InputError) as error:
        trim(audio, 0.0, 2.0, start_field="melody_start", end_field="melody_end")
    assert error.value.field == "melody_end"
    assert "0 <= melody_start < melody_end" in str(error.value)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program writes the stream")
@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_a_stream_with_no_length_in_its_header_is_read_within_the_cap(tmp_path: Path, fmt: str) -> None:
    """What any streaming encoder writes (ffmpeg to a pipe): the header says nothing of the length."""
    path = tmp_path / f"piped.{fmt}"
    with path.open("wb") as out:
        subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
                        "-ar", "32000", "-f", fmt, "-"], stdout=out, check=True)
    audio = read_audio(path, max_seconds=600)
    assert audio.duration == pytest.approx(3.0, abs=0.01) and audio.sample_rate == 32000
    with pytest.raises(AudioError, match=r"input_audio='piped\.\w+' is not allowed: audio no longer than 2 s"):
        read_audio(path, max_seconds=2)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_provenance_tags_are_written_and_read_back(tmp_path: Path, fmt: str) -> None:
    import json

    from musicgen_remix.audio.tags import SOFTWARE, Provenance

    provenance = Provenance("generate", "calm piano, ☃", 1234, "melody", {"duration": 8, "top_k": 250})
    path = write_audio(tmp_path / f"take.{fmt}", torch.zeros(2, 32000), 32000, fmt=fmt, tags=provenance.tags())
    with av.open(str(path)) as container:  # what players and ffmpeg see
        metadata = dict(container.metadata)
    assert metadata["title"] == "calm piano, ☃"
    record = json.loads(metadata["comment"])
    assert record == {"software": SOFTWARE, "entrypoint": "generate", "prompt": "calm piano, ☃", "seed": 1234,
                      "model": "melody", "inputs": {"duration": 8, "top_k": 250}}
    assert SOFTWARE in (metadata.get("encoder") or metadata.get("software") or "")
    assert read_audio(path).num_frames >= 32000  # the tag does not disturb decoding
