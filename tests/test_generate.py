"""Tests of the generate-with-continuation pipeline through ``GenerateService.predict`` on tiny weights:
seeds, melody, continuation, long form, MBD, normalisation, output formats, ``replicate_weights`` and
input checks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch

import musicgen_remix.generate.pipeline as generate_module
from fixtures.hostile import shell
from fixtures.peers import FileServer
from musicgen_remix.audio import LOUDNESS_TARGET_LUFS, integrated_loudness, read_audio, resample
from musicgen_remix.engine.decode import MBD_STAGE
from musicgen_remix.errors import InputError
from musicgen_remix.generate import GenerateRequest, GenerateResult
from musicgen_remix.progress import Progress
from musicgen_remix.service import GenerateService

SR = 32000
FRAME = SR // 50  # samples per token frame
INPUT_SR = 44100


def run(service: GenerateService, tmp_path: Path, name: str, **kwargs: Any) -> GenerateResult:
    """One prediction into its own directory (as every request gets its own)."""
    out = tmp_path / name
    out.mkdir()
    kwargs.setdefault("duration", 3)
    return service.predict(GenerateRequest(**kwargs), out)


def digest(result: GenerateResult) -> str:
    """The file's bytes, tags included: two requests that differ in anything differ here by construction."""
    return hashlib.sha256(result.path.read_bytes()).hexdigest()


def same_audio(a: GenerateResult, b: GenerateResult) -> bool:
    """Whether two outputs hold the same samples (what a difference in the music must be measured on)."""
    return torch.equal(read_audio(a.path).wav, read_audio(b.path).wav)


def chirp(seconds: float, sample_rate: int = INPUT_SR, peak: float = 0.3) -> np.ndarray:
    """A distinctive signal: a 200 Hz -> 3 kHz sweep with a 3 Hz tremolo (any time shift decorrelates it)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0, f1 = 200.0, 3000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return peak * np.sin(phase) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))


def tune(seconds: float, sample_rate: int = INPUT_SR) -> np.ndarray:
    freqs = [261.6, 329.6, 392.0, 493.9, 293.7, 370.0]
    t = np.arange(int(0.5 * sample_rate)) / sample_rate
    notes = np.concatenate([0.3 * np.sin(2 * np.pi * f * t) for f in freqs])
    return np.tile(notes, int(seconds / 3) + 1)[: int(seconds * sample_rate)]


@pytest.fixture(scope="module")
def chirp_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "chirp.wav"
    soundfile.write(str(path), chirp(3.0), INPUT_SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def tune_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "tune.wav"
    soundfile.write(str(path), np.stack([tune(3.0), 0.5 * tune(3.0)], axis=1), INPUT_SR, subtype="PCM_16")
    return path


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


# ----------------------------------------------------------------------------------------------------
# text, seeds


def test_text_only(generate_service: GenerateService, tmp_path: Path) -> None:
    result = run(generate_service, tmp_path, "a", prompt="calm piano melody", seed=1)
    assert result.path.parent == tmp_path / "a"
    assert result.path.name == "output.wav"
    assert (result.model, result.sample_rate, result.channels) == ("melody", SR, 1)
    assert result.seed == 1
    audio = read_audio(result.path)
    assert audio.sample_rate == SR
    assert audio.num_frames == 3 * SR
    assert result.seconds == pytest.approx(3.0)
    assert float(audio.wav.abs().max()) > 0.1


def test_same_seed_same_bytes(generate_service: GenerateService, tmp_path: Path) -> None:
    """Seed 0 is a seed (not "random"): the same request gives the same file."""
    first = run(generate_service, tmp_path, "a", prompt="calm piano", seed=0)
    second = run(generate_service, tmp_path, "b", prompt="calm piano", seed=0)
    assert first.seed == second.seed == 0
    assert digest(first) == digest(second)


def test_different_seeds_differ(generate_service: GenerateService, tmp_path: Path) -> None:
    results = [run(generate_service, tmp_path, f"s{seed}", prompt="calm piano", seed=seed) for seed in (0, 1)]
    assert not same_audio(results[0], results[1])


@pytest.mark.parametrize("seed", [None, -1])
def test_random_seed_is_reported_and_reproduces(generate_service: GenerateService, tmp_path: Path,
                                                seed: int | None) -> None:
    first = run(generate_service, tmp_path, "a", prompt="calm piano", seed=seed)
    assert 0 <= first.seed <= 2**32 - 1
    again = run(generate_service, tmp_path, "b", prompt="calm piano", seed=first.seed)
    assert digest(first) == digest(again)


def test_prompt_whitespace_is_normalised(generate_service: GenerateService, tmp_path: Path) -> None:
    a = run(generate_service, tmp_path, "a", prompt="calm   piano\n", seed=4)
    b = run(generate_service, tmp_path, "b", prompt="calm piano", seed=4)
    assert digest(a) == digest(b)


# ----------------------------------------------------------------------------------------------------
# melody


def test_melody_conditioning_on_melody_model(generate_service: GenerateService, tmp_path: Path,
                                             tune_wav: Path) -> None:
    text_only = run(generate_service, tmp_path, "text", prompt="calm piano", seed=2)
    melody = run(generate_service, tmp_path, "melody", prompt="calm piano", input_audio=tune_wav, seed=2)
    assert (melody.model, melody.channels) == ("melody", 1)
    assert read_audio(melody.path).num_frames == 3 * SR
    # The chroma condition changes the music.
    assert not same_audio(melody, text_only)


@pytest.mark.slow
def test_only_the_melody_the_model_uses_is_processed(generate_service: GenerateService, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A 70 s melody for a 3 s output: the chroma conditioner (which separates what it gets) sees the first
    30 s, all a single window's chroma covers; the output is what the first 30 s alone give."""
    long_path = tmp_path / "long.wav"
    soundfile.write(str(long_path), tune(70.0), INPUT_SR, subtype="PCM_16")
    short_path = tmp_path / "short.wav"
    soundfile.write(str(short_path), tune(70.0)[: 30 * INPUT_SR], INPUT_SR, subtype="PCM_16")
    seen: list[float] = []
    real = generate_module.generate_tokens

    def spy(model: Any, **kwargs: Any) -> Any:
        if kwargs.get("melody") is not None:
            seen.append(kwargs["melody"].shape[-1] / SR)
        return real(model, **kwargs)

    monkeypatch.setattr(generate_module, "generate_tokens", spy)
    long = run(generate_service, tmp_path, "long", prompt="calm piano", input_audio=long_path, seed=4)
    short = run(generate_service, tmp_path, "short", prompt="calm piano", input_audio=short_path, seed=4)
    assert seen == [30.0, 30.0]
    assert torch.equal(read_audio(long.path).wav, read_audio(short.path).wav)  # (their tags name their files)


def test_melody_without_prompt(generate_service: GenerateService, tmp_path: Path, tune_wav: Path) -> None:
    result = run(generate_service, tmp_path, "a", input_audio=tune_wav, seed=2)
    assert read_audio(result.path).num_frames == 3 * SR


def test_melody_on_text_only_model_is_refused(generate_service: GenerateService, tmp_path: Path,
                                              tune_wav: Path) -> None:
    with pytest.raises(InputError) as info:
        run(generate_service, tmp_path, "a", prompt="calm piano", input_audio=tune_wav, model_version="small")
    assert info.value.field == "input_audio"
    assert "text-only" in str(info.value)
    assert str(tune_wav.parent) not in str(info.value)  # the file's name, never a path on the server
    assert list((tmp_path / "a").iterdir()) == []


# ----------------------------------------------------------------------------------------------------
# continuation


def expected_prompt(path: Path, start: float, end: float) -> np.ndarray:
    audio = read_audio(path)
    segment = audio.wav[:, round(start * audio.sample_rate): round(end * audio.sample_rate)]
    return resample(segment.mean(dim=0, keepdim=True), audio.sample_rate, SR)[0].numpy()


def test_continuation_starts_with_the_trimmed_prompt(generate_service: GenerateService, tmp_path: Path,
                                                     chirp_wav: Path) -> None:
    result = run(generate_service, tmp_path, "a", prompt="calm piano", input_audio=chirp_wav, continuation=True,
                 continuation_start=1, continuation_end=3, duration=5, normalization_strategy="clip", seed=3)
    out = read_audio(result.path).wav[0].numpy()
    assert out.size == 5 * SR
    head = int(1.9 * SR)
    prompt = expected_prompt(chirp_wav, 1.0, 3.0)
    assert correlation(out[:head], prompt[:head]) > 0.99
    assert np.abs(out[:head] - prompt[:head]).max() < 0.01  # quiet input: "clip" left it as it was
    # The check is sensitive to which part of the file was kept: the file's first 2 s do not match.
    assert abs(correlation(out[:head], expected_prompt(chirp_wav, 0.0, 2.0)[:head])) < 0.5
    # After the prompt comes generated audio, not more of the input.
    assert np.abs(out[2 * SR + 2 * FRAME:]).max() > 0.1


def test_continuation_end_of_file(generate_service: GenerateService, tmp_path: Path, chirp_wav: Path) -> None:
    common = dict(prompt="calm piano", input_audio=chirp_wav, continuation=True, continuation_start=1,
                  duration=5, normalization_strategy="clip", seed=3)
    explicit = run(generate_service, tmp_path, "explicit", continuation_end=3, **common)
    minus_one = run(generate_service, tmp_path, "minus_one", continuation_end=-1, **common)
    none = run(generate_service, tmp_path, "none", continuation_end=None, **common)
    # The same audio (the files differ only in their tags, which record what each request said).
    assert torch.equal(read_audio(minus_one.path).wav, read_audio(explicit.path).wav)
    assert torch.equal(read_audio(none.path).wav, read_audio(explicit.path).wav)


def test_continuation_of_whole_file(generate_service: GenerateService, tmp_path: Path, chirp_wav: Path) -> None:
    result = run(generate_service, tmp_path, "a", prompt="calm piano", input_audio=chirp_wav, continuation=True,
                 duration=5, normalization_strategy="clip", seed=3)
    out = read_audio(result.path).wav[0].numpy()
    head = int(2.9 * SR)
    assert correlation(out[:head], expected_prompt(chirp_wav, 0.0, 3.0)[:head]) > 0.99


@pytest.mark.parametrize(("start", "end", "field"), [
    (5, None, "continuation_start"),  # past the end of the 3 s file
    (3, -1, "continuation_start"),  # exactly at the end
    (2, 1, "continuation_end"),  # end before start
    (2, 2, "continuation_end"),
    (1, 10, "continuation_end"),  # end past the file
    (-1, None, "continuation_start"),
])
def test_continuation_bounds_are_checked(generate_service: GenerateService, tmp_path: Path, chirp_wav: Path,
                                         start: int, end: int | None, field: str) -> None:
    with pytest.raises(InputError) as info:
        run(generate_service, tmp_path, "a", prompt="calm piano", input_audio=chirp_wav, continuation=True,
            continuation_start=start, continuation_end=end, duration=8)
    assert info.value.field == field


def test_input_audio_shorter_than_half_a_second_is_refused(generate_service: GenerateService, tmp_path: Path) -> None:
    short = tmp_path / "short.wav"
    soundfile.write(short, chirp(0.2), INPUT_SR)
    with pytest.raises(InputError) as info:
        run(generate_service, tmp_path, "a", prompt="calm piano", input_audio=short, continuation=True, duration=2)
    assert info.value.field == "input_audio" and "0.5 s" in str(info.value)


def test_trimmed_part_shorter_than_half_a_second_is_refused(generate_service: GenerateService,
                                                            tmp_path: Path) -> None:
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, chirp(2.3), INPUT_SR)  # from 2 s to the end leaves 0.3 s
    with pytest.raises(InputError) as info:
        run(generate_service, tmp_path, "a", prompt="calm piano", input_audio=clip, continuation=True,
            continuation_start=2, continuation_end=-1, duration=4)
    assert info.value.field == "continuation_end" and "0.300 s" in str(info.value)


def test_continuation_prompt_must_be_shorter_than_duration(generate_service: GenerateService, tmp_path: Path,
                                                           chirp_wav: Path) -> None:
    with pytest.raises(InputError) as info:
        run(generate_service, tmp_path, "a", prompt="calm piano", input_audio=chirp_wav, continuation=True,
            duration=2)
    assert info.value.field == "duration"


# ----------------------------------------------------------------------------------------------------
# long form, MBD, stereo


def test_duration_35_seconds(generate_service: GenerateService, tmp_path: Path,
                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="musicgen_remix.engine.tokens"):
        result = run(generate_service, tmp_path, "a", prompt="calm piano", duration=35, seed=5, top_k=1,
                     temperature=0.0)
    assert "generating 35.0 s in 2 windows of 30 s" in caplog.text  # a windowed generation says how many
    audio = read_audio(result.path)
    assert abs(audio.num_frames - 35 * SR) <= FRAME
    assert result.seconds == pytest.approx(35.0, abs=1 / 50)
    # The second window produced audio too (not silence or a copy of the start).
    tail = audio.wav[0, 31 * SR:].numpy()
    assert np.abs(tail).max() > 0.1


@pytest.mark.parametrize(("version", "channels"), [("default", 1), ("stereo-melody", 2)])
def test_multi_band_diffusion(generate_service: GenerateService, tmp_path: Path, version: str,
                              channels: int) -> None:
    seen: list[tuple[str, int, int]] = []
    (tmp_path / "mbd").mkdir()
    mbd = generate_service.predict(GenerateRequest(prompt="calm piano", seed=6, model_version=version, duration=3,
                                                   multi_band_diffusion=True, normalization_strategy="peak"),
                                   tmp_path / "mbd", Progress(report=lambda *step: seen.append(step)))
    # MultiBand Diffusion, the slow decoder, reports each channel it decodes.
    assert [step for step in seen if step[0] == MBD_STAGE] == [(MBD_STAGE, i, channels) for i in range(channels + 1)]
    encodec = run(generate_service, tmp_path, "encodec", prompt="calm piano", seed=6, model_version=version,
                  normalization_strategy="peak")
    assert mbd.channels == channels
    audio = read_audio(mbd.path)
    assert audio.channels == channels
    assert audio.num_frames == 3 * SR
    assert torch.isfinite(audio.wav).all()
    assert float(audio.wav.abs().max()) == pytest.approx(1.0, abs=1e-3)
    assert not same_audio(mbd, encodec)


def test_stereo_model(generate_service: GenerateService, tmp_path: Path) -> None:
    result = run(generate_service, tmp_path, "a", prompt="calm piano", seed=6, model_version="stereo-melody")
    assert (result.model, result.channels) == ("stereo-melody", 2)
    wav = read_audio(result.path).wav
    assert wav.shape == (2, 3 * SR)
    assert not torch.equal(wav[0], wav[1])


# ----------------------------------------------------------------------------------------------------
# normalisation


@dataclass
class Delivered:
    """What the shared tail normalised (the decoded audio) and what it handed to write_audio (float, before
    16-bit quantisation hides any overs), one entry per request."""

    raw: list[torch.Tensor]
    written: list[torch.Tensor]


@pytest.fixture()
def delivered(monkeypatch: pytest.MonkeyPatch) -> Delivered:
    import musicgen_remix.engine.take as take

    seen = Delivered([], [])
    normalize, write_audio = take.normalize, take.write_audio

    def spy_normalize(wav: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        seen.raw.append(wav.detach().clone())
        return normalize(wav, *args, **kwargs)

    def spy_write(path: Any, wav: torch.Tensor, *args: Any, **kwargs: Any) -> Path:
        seen.written.append(wav.detach().clone())
        return write_audio(path, wav, *args, **kwargs)

    monkeypatch.setattr(take, "normalize", spy_normalize)
    monkeypatch.setattr(take, "write_audio", spy_write)
    return seen


@pytest.mark.parametrize("strategy", ["loudness", "clip", "peak", "rms"])
def test_normalization_strategies(generate_service: GenerateService, tmp_path: Path, delivered: Delivered,
                                  strategy: str) -> None:
    result = run(generate_service, tmp_path, "a", prompt="calm piano", seed=7, normalization_strategy=strategy)
    (raw,), (written,) = delivered.raw, delivered.written
    assert float(raw.abs().max()) > 1.0  # the tiny model's output is hot: every strategy has overs to deal with
    assert float(written.abs().max()) <= 1.0
    audio = read_audio(result.path)
    peak = float(audio.wav.abs().max())
    if strategy == "loudness":
        assert integrated_loudness(audio.wav, SR) == pytest.approx(LOUDNESS_TARGET_LUFS, abs=0.5)
        assert peak <= 10 ** (-1 / 20) + 1e-3  # the limiter's -1 dBFS ceiling
    elif strategy == "peak":
        assert peak == pytest.approx(1.0, abs=1e-3)
    elif strategy == "rms":
        rms_db = 20 * np.log10(float(audio.wav.double().mean(dim=0).pow(2).mean().sqrt()))
        assert rms_db == pytest.approx(-18.0, abs=0.5)
    else:  # clip: the overs clamped at full scale, everything else as the model made it
        assert torch.equal(written, raw.clamp(-1.0, 1.0))


# ----------------------------------------------------------------------------------------------------
# output formats


@pytest.mark.parametrize(("fmt", "tolerance_s"), [("flac", 0.0), ("mp3", 0.1)])
def test_output_formats_decode(generate_service: GenerateService, tmp_path: Path, fmt: str,
                               tolerance_s: float) -> None:
    result = run(generate_service, tmp_path, "a", prompt="calm piano", seed=8, output_format=fmt)
    assert result.path.suffix == f".{fmt}"
    audio = read_audio(result.path)
    assert audio.sample_rate == SR
    assert abs(audio.duration - 3.0) <= tolerance_s + 1e-9
    assert float(audio.wav.abs().max()) > 0.1


def test_flac_matches_wav_samples(generate_service: GenerateService, tmp_path: Path) -> None:
    wav = run(generate_service, tmp_path, "wav", prompt="calm piano", seed=8, output_format="wav")
    flac = run(generate_service, tmp_path, "flac", prompt="calm piano", seed=8, output_format="flac")
    assert torch.equal(read_audio(wav.path).wav, read_audio(flac.path).wav)


# ----------------------------------------------------------------------------------------------------
# replicate_weights


@dataclass
class WeightsServer:
    """The module's file server (127.0.0.1, allow-listed for replicate_weights while the module runs)."""

    files: FileServer

    def serve(self, path: Path) -> str:
        return self.files.add(f"/{len(self.files.files)}/{path.name}", path.read_bytes())


@pytest.fixture(scope="module")
def weights_server() -> Iterator[WeightsServer]:
    with FileServer() as files, pytest.MonkeyPatch.context() as patch:
        patch.setenv("MUSICGEN_REMIX_ALLOWED_HOSTS", "127.0.0.1")
        yield WeightsServer(files)


def finetune(tiny_weights: Path, name: str) -> Path:
    return tiny_weights / "finetunes" / f"{name}.th"


def test_replicate_weights_served_then_default_again(generate_service: GenerateService, tmp_path: Path,
                                                     tiny_weights: Path, weights_server: WeightsServer) -> None:
    default = run(generate_service, tmp_path, "default", prompt="calm piano", seed=9)
    source = finetune(tiny_weights, "melody-b")
    tuned = run(generate_service, tmp_path, "tuned", prompt="calm piano", seed=9,
                replicate_weights=weights_server.serve(source))
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    assert tuned.model == f"fine-tune {sha[:12]}"
    assert default.model == "melody"
    assert not same_audio(tuned, default)
    for blank in ("", "   "):
        back = run(generate_service, tmp_path, f"back{len(blank)}", prompt="calm piano", seed=9,
                   replicate_weights=blank)
        assert back.model == "melody"
        assert digest(back) == digest(default)
    back = run(generate_service, tmp_path, "back_none", prompt="calm piano", seed=9, replicate_weights=None)
    assert digest(back) == digest(default)


def test_a_finetune_take_is_made_again_from_its_record(generate_service: GenerateService, tmp_path: Path,
                                                     tiny_weights: Path, weights_server: WeightsServer) -> None:
    import json

    import av

    url = weights_server.serve(finetune(tiny_weights, "melody-a"))
    take = run(generate_service, tmp_path, "take", prompt="calm piano", seed=12, replicate_weights=url)
    with av.open(str(take.path)) as container:
        record = json.loads(container.metadata["comment"])
    assert record["inputs"]["replicate_weights"] == url
    again = run(generate_service, tmp_path, "again", prompt=record["prompt"], seed=record["seed"],
                **{k: v for k, v in record["inputs"].items() if k != "input_audio"})
    assert again.model == take.model and digest(again) == digest(take)


def test_two_finetunes_one_after_the_other(generate_service: GenerateService, tmp_path: Path,
                                           tiny_weights: Path, weights_server: WeightsServer) -> None:
    url_a = weights_server.serve(finetune(tiny_weights, "melody-a"))
    url_b = weights_server.serve(finetune(tiny_weights, "melody-b"))
    a = run(generate_service, tmp_path, "a", prompt="calm piano", seed=10, replicate_weights=url_a)
    b = run(generate_service, tmp_path, "b", prompt="calm piano", seed=10, replicate_weights=url_b)
    assert a.model != b.model
    assert not same_audio(a, b)
    # Back to the first: the same content gives the same output (keyed by content, nothing left over from b).
    a_again = run(generate_service, tmp_path, "a_again", prompt="calm piano", seed=10, replicate_weights=url_a)
    assert digest(a_again) == digest(a)


def test_malicious_replicate_weights_is_refused(generate_service: GenerateService, tmp_path: Path,
                                                weights_server: WeightsServer) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.th"
    torch.save({"xp.cfg": "{}", "model": shell(marker)}, evil)
    url = weights_server.serve(evil)
    with pytest.raises(InputError, match="refused to load") as info:
        run(generate_service, tmp_path, "a", prompt="calm piano", seed=1, replicate_weights=url)
    assert not marker.exists()
    # Named as the caller sent it, not by the server's cache file (<sha256>.th).
    assert info.value.field == "replicate_weights" and url in str(info.value)
    assert hashlib.sha256(evil.read_bytes()).hexdigest() not in str(info.value)
    assert "the downloaded file" in str(info.value)
    # The service still serves its default model afterwards.
    assert run(generate_service, tmp_path, "b", prompt="calm piano", seed=1).model == "melody"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "/tmp/weights.th", "ftp://127.0.0.1/w.th"])
def test_replicate_weights_must_be_http(generate_service: GenerateService, tmp_path: Path, url: str) -> None:
    with pytest.raises(InputError) as info:
        run(generate_service, tmp_path, "a", prompt="calm piano", replicate_weights=url)
    assert info.value.field == "replicate_weights"


# ----------------------------------------------------------------------------------------------------
# input checks


@pytest.mark.parametrize(("kwargs", "field"), [
    ({}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "calm piano", "continuation": True}, "input_audio"),
    ({"prompt": "calm piano", "duration": 0}, "duration"),
    ({"prompt": "calm piano", "duration": 301}, "duration"),
    ({"prompt": "x" * 10_000}, "prompt"),
    ({"prompt": "calm\x00piano"}, "prompt"),
    ({"prompt": "calm\x1bpiano"}, "prompt"),
    ({"prompt": "calm\x85piano"}, "prompt"),  # C1 control (NEL)
    ({"prompt": "calm\x9bpiano"}, "prompt"),  # C1 control (CSI)
    ({"prompt": "calm \ud800 piano"}, "prompt"),  # a lone surrogate: not text, crashes tokenizers
    ({"prompt": "calm piano", "top_p": float("nan")}, "top_p"),
    ({"prompt": "calm piano", "top_p": float("inf")}, "top_p"),
    ({"prompt": "calm piano", "temperature": float("nan")}, "temperature"),
    ({"prompt": "calm piano", "temperature": float("inf")}, "temperature"),
    ({"prompt": "calm piano", "classifier_free_guidance": float("nan")}, "classifier_free_guidance"),
    ({"prompt": "calm piano", "normalization_strategy": "loud"}, "normalization_strategy"),
    ({"prompt": "calm piano", "output_format": "ogg"}, "output_format"),
    ({"prompt": "calm piano", "model_version": "huge"}, "model_version"),
    ({"prompt": "calm piano", "top_k": 1000}, "top_k"),
    ({"prompt": "calm piano", "top_p": 1.5}, "top_p"),
    ({"prompt": "calm piano", "temperature": -1.0}, "temperature"),
    ({"prompt": "calm piano", "classifier_free_guidance": 31}, "classifier_free_guidance"),
    ({"prompt": "calm piano", "seed": 2**32}, "seed"),
])
def test_bad_inputs_name_the_field(generate_service: GenerateService, tmp_path: Path, kwargs: dict[str, Any],
                                   field: str) -> None:
    with pytest.raises(InputError) as info:
        run(generate_service, tmp_path, "a", **kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}=")
    assert list((tmp_path / "a").iterdir()) == []


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"model_version": "small"}, "input_audio"),  # melody conditioning on a text-only model
    ({"continuation": True, "duration": 3}, "duration"),  # the 3 s prompt is the whole output
    ({"continuation": True, "continuation_start": 3}, "continuation_start"),
    ({"continuation": True, "continuation_end": 4}, "continuation_end"),
])
def test_what_the_input_file_rules_out_is_found_by_the_request_check(chirp_wav: Path, kwargs: dict[str, Any],
                                                                      field: str) -> None:
    """From the file's header, before any model is looked for (the server's check and the CLI's)."""
    from musicgen_remix.generate import check_request

    with pytest.raises(InputError) as info:
        check_request(GenerateRequest(prompt="calm piano", input_audio=chirp_wav, **kwargs))
    assert info.value.field == field


def test_a_finetune_may_take_a_melody_whatever_model_version_says(chirp_wav: Path) -> None:
    """replicate_weights serves the request, not model_version: whether it has a chroma conditioner is known
    only once it is loaded."""
    from musicgen_remix.generate import check_request

    job = check_request(GenerateRequest(prompt="calm piano", input_audio=chirp_wav, model_version="small",
                                        replicate_weights="https://example.com/melody-finetune.th"))
    assert job.replicate_weights == "https://example.com/melody-finetune.th"


def test_missing_input_audio_file(generate_service: GenerateService, tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        run(generate_service, tmp_path, "a", prompt="calm piano", input_audio=tmp_path / "nope.wav")
    assert info.value.field == "input_audio"


def test_prompt_with_tab_and_newline_is_accepted(generate_service: GenerateService, tmp_path: Path) -> None:
    result = run(generate_service, tmp_path, "a", prompt="calm\tpiano\nmelody", seed=1)
    assert result.seconds == pytest.approx(3.0)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_the_output_file_carries_what_made_it(generate_service: GenerateService, tmp_path: Path, fmt: str) -> None:
    import json

    import av

    result = run(generate_service, tmp_path, "a", prompt="calm   piano", seed=77, output_format=fmt, top_k=200)
    with av.open(str(result.path)) as container:
        record = json.loads(container.metadata["comment"])
    assert (record["prompt"], record["seed"], record["model"], record["entrypoint"]) == ("calm piano", 77, "melody",
                                                                                      "generate")
    assert record["inputs"]["top_k"] == 200 and record["software"].startswith("musicgen-remix ")
    # Made again from its own record: the same audio.
    again = run(generate_service, tmp_path, "b", prompt=record["prompt"], seed=record["seed"], output_format=fmt,
                **{k: v for k, v in record["inputs"].items() if k in ("top_k", "duration")})
    assert digest(again) == digest(result)
