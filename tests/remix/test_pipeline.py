"""End-to-end tests of the remix pipeline through ``RemixService.predict`` on the tiny weights.

One rendered 12 s song (pad, bass, drums and a choir line standing in for a voice; 120 bpm, 4/4) is remixed
by every chord ``model_version``, with and without MultiBand Diffusion, with each normalisation strategy and
output format. The remixes are run once per module (each takes a few seconds on CPU) and shared by the tests
that check their aspects: length and channels, levels, extras, determinism, the typed chord progression,
the tempo in the description, beat sync edge cases, and separation run once per request. Bad inputs are
checked to fail up front, before any separation, with an error naming the field.

The tiny htdemucs and LM have random weights: the audio is noise-like, so nothing here judges how a remix
sounds, only that the pipeline honours its contracts.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch

from fixtures.songs import have_fluidsynth, render_song
from musicgen_remix.audio import (
    LOUDNESS_CEILING_DBFS,
    LOUDNESS_TARGET_LUFS,
    RMS_TARGET_DBFS,
    integrated_loudness,
    read_audio,
)
from musicgen_remix.errors import AudioError, InputError
from musicgen_remix.remix.beatsync import AUTO_THRESHOLD_BEATS
from musicgen_remix.remix.pipeline import RemixResult
from musicgen_remix.remix.request import CHORD_VERSIONS, SONG_MAX_S, RemixRequest

pytestmark = pytest.mark.skipif(not have_fluidsynth(), reason="fluidsynth or the GM soundfont is missing")

SONG_SECONDS = 12.0
SONG_BPM = 120.0
SONG_RATE = 44100
MUSICGEN_RATE = 32000
PROGRESSION = ["C:maj", "A:min", "F:maj", "G:maj"]
PROMPT = "bossa nova, nylon guitar"
PCM16_STEP = 1 / 32767
MP3_FRAME = 1152
# Onset tolerance of mir_eval's beat metrics: detected downbeats of the rendered song lie within this.
DOWNBEAT_TOLERANCE_S = 0.07
# A beat-sync threshold below madmom's 10 ms frame: only a downbeat on exactly the same frame could match.
TINY_THRESHOLD_S = 1e-3


@dataclass(frozen=True)
class Song:
    path: Path
    frames: int
    bpm: float
    downbeats: list[float]


@dataclass
class Run:
    """One remix and what the spies saw while it ran."""

    request: RemixRequest
    result: RemixResult
    out_dir: Path
    separations: int  # Separator.separate calls
    demucs_calls: int  # outermost demucs.apply.apply_model calls
    descriptions: list[str | None]  # as passed to chord_attributes
    mbd_used: bool  # decode got a MultiBand Diffusion model
    normalized: tuple[torch.Tensor, torch.Tensor]  # the mix before and after normalisation (float, as written)
    cwd_after: list[str]  # what the working directory held afterwards (it starts empty)
    extras: bool


@dataclass
class Spies:
    demucs_calls: int = 0
    descriptions: list[str | None] = field(default_factory=list)
    mbd: list[bool] = field(default_factory=list)
    normalized: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------
# Fixtures: the song, the service, the shared remixes


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Song:
    """The rendered song cut to exactly 12 s (fluidsynth adds the last notes' release)."""
    path = tmp_path_factory.mktemp("song") / "song.wav"
    truth = render_song(path, progression=PROGRESSION, bpm=SONG_BPM, bars=6, vocal_line=True, sample_rate=SONG_RATE)
    wav, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    frames = int(SONG_SECONDS * rate)
    soundfile.write(str(path), wav[:frames], rate, subtype="PCM_16")
    return Song(path=path, frames=frames, bpm=truth.bpm, downbeats=truth.downbeats)


@pytest.fixture(scope="module")
def service(tiny_weights: Path):
    from musicgen_remix.service import RemixService

    return RemixService(root=tiny_weights, device="cpu")


@pytest.fixture(scope="module")
def spies() -> Iterator[Spies]:
    """Count demucs runs, record the descriptions and decoders generation gets and the mix as normalised, for the
    whole module."""
    import demucs.apply

    import musicgen_remix.engine.take as take
    import musicgen_remix.models.chord as chord_module

    spies = Spies()
    apply_model = demucs.apply.apply_model
    chord_attributes = chord_module.chord_attributes
    decode, normalize = take.decode, take.normalize
    depth = 0

    def counting_apply_model(*args: Any, **kwargs: Any) -> Any:
        # demucs calls apply_model again for each chunk (split=True): count the outermost call only.
        nonlocal depth
        spies.demucs_calls += depth == 0
        depth += 1
        try:
            return apply_model(*args, **kwargs)
        finally:
            depth -= 1

    def recording_chord_attributes(description: str | None, *args: Any, **kwargs: Any) -> Any:
        spies.descriptions.append(description)
        return chord_attributes(description, *args, **kwargs)

    def recording_decode(*args: Any, mbd: Any = None, **kwargs: Any) -> Any:
        spies.mbd.append(mbd is not None)
        return decode(*args, mbd=mbd, **kwargs)

    def recording_normalize(wav: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = normalize(wav, *args, **kwargs)
        spies.normalized.append((wav.detach().clone(), out.detach().clone()))
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demucs.apply, "apply_model", counting_apply_model)
        patch.setattr(chord_module, "chord_attributes", recording_chord_attributes)
        patch.setattr(take, "decode", recording_decode)
        patch.setattr(take, "normalize", recording_normalize)
        yield spies


class Remixer:
    """Runs each named remix once per module, in its own request directory, from an empty working directory."""

    def __init__(self, service: Any, spies: Spies, song: Song, base: Path) -> None:
        self.service = service
        self.spies = spies
        self.song = song
        self.base = base
        self.runs: dict[str, Run] = {}

    def __call__(self, name: str, *, extras: bool = False, **inputs: Any) -> Run:
        if name in self.runs:
            return self.runs[name]
        request = RemixRequest(prompt=PROMPT, music_input=self.song.path, **inputs)
        out_dir = self.base / name / "out"
        cwd = self.base / name / "cwd"
        out_dir.mkdir(parents=True)
        cwd.mkdir()
        separations, demucs_calls = self.service.separator.calls, self.spies.demucs_calls
        descriptions, decodes = len(self.spies.descriptions), len(self.spies.mbd)
        normalized = len(self.spies.normalized)
        previous = Path.cwd()
        os.chdir(cwd)
        try:
            result = self.service.predict(request, out_dir, extras=extras)
        finally:
            os.chdir(previous)
        (mix,) = self.spies.normalized[normalized:]  # the mix, and only the mix, is normalised
        run = Run(
            request=request,
            result=result,
            out_dir=out_dir,
            separations=self.service.separator.calls - separations,
            demucs_calls=self.spies.demucs_calls - demucs_calls,
            descriptions=self.spies.descriptions[descriptions:],
            mbd_used=any(self.spies.mbd[decodes:]),
            normalized=mix,
            cwd_after=sorted(os.listdir(cwd)),
            extras=extras,
        )
        self.runs[name] = run
        return run


@pytest.fixture(scope="module")
def remix(service: Any, spies: Spies, song: Song, tmp_path_factory: pytest.TempPathFactory) -> Remixer:
    return Remixer(service, spies, song, tmp_path_factory.mktemp("remixes"))


# The shared remixes: every model version, MBD on one mono and one stereo model, every normalisation
# strategy, every output format, both "automatic" threshold spellings, a threshold nothing meets, the
# typed progression, and a repeat for determinism. Seed 0 is one of the seeds.
RUNS: dict[str, dict[str, Any]] = {
    "chord-loudness-extras": dict(model_version="chord", normalization_strategy="loudness", seed=0,
                                  beat_sync_threshold=None, extras=True),
    "stereo-chord-mbd-peak": dict(model_version="stereo-chord", normalization_strategy="peak", seed=123,
                                  multi_band_diffusion=True, beat_sync_threshold=-1),
    "chord-large-mbd-rms-flac-unsynced": dict(model_version="chord-large", normalization_strategy="rms", seed=5,
                                              multi_band_diffusion=True, output_format="flac",
                                              beat_sync_threshold=TINY_THRESHOLD_S),
    "stereo-chord-large-clip-chords": dict(model_version="stereo-chord-large", normalization_strategy="clip",
                                           seed=7, chords="C G Am F"),
    "stereo-chord-mp3": dict(model_version="stereo-chord", normalization_strategy="loudness", seed=11,
                             output_format="mp3"),
}
REPEAT = "stereo-chord-mbd-peak"


def get(remix: Remixer, name: str) -> Run:
    return remix(name, **RUNS[name])


def decoded(run: Run) -> tuple[np.ndarray, int]:
    audio = read_audio(run.result.mix)
    return audio.wav.numpy(), audio.sample_rate


def mono_rms_dbfs(wav: torch.Tensor) -> float:
    return float(20 * torch.log10(wav.double().mean(dim=0).pow(2).mean().sqrt()))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------
# Every run: length, channels, finite audio, one separation, files only in the request directory


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_every_remix_has_the_songs_length_two_channels_and_finite_audio(remix: Remixer, song: Song,
                                                                        name: str) -> None:
    run = get(remix, name)
    wav, rate = decoded(run)
    assert run.result.mix.parent == run.out_dir
    assert run.result.mix.name == f"remix.{run.request.output_format}"
    assert wav.shape[0] == 2
    written = run.normalized[1]  # float, before 16-bit quantisation could hide NaN or overs
    assert bool(torch.isfinite(written).all()) and float(written.abs().max()) <= 1.0
    assert np.abs(wav).max() > 0.01  # not silence
    expected = song.frames * rate / SONG_RATE
    if run.request.output_format == "mp3":
        # LAME's encoder delay and padding: up to about three frames of extra samples.
        assert expected - 1 <= wav.shape[1] <= expected + 3 * MP3_FRAME
    else:
        assert abs(wav.shape[1] - expected) <= 1


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_every_remix_separates_once_and_writes_only_its_request_directory(remix: Remixer, name: str) -> None:
    run = get(remix, name)
    assert run.separations == 1
    assert run.demucs_calls == 1
    assert run.cwd_after == []
    expected = {f"remix.{run.request.output_format}"}
    if run.extras:
        fmt = run.request.output_format
        expected |= {f"instrumental.{fmt}", f"vocals.{fmt}", "analysis.json", "remix.png"}
    assert set(os.listdir(run.out_dir)) == expected


def test_every_model_version_is_covered_with_and_without_mbd() -> None:
    versions = {inputs["model_version"] for inputs in RUNS.values()}
    assert versions == set(CHORD_VERSIONS)
    with_mbd = {inputs["model_version"] for inputs in RUNS.values() if inputs.get("multi_band_diffusion")}
    assert {v.startswith("stereo") for v in with_mbd} == {True, False}
    assert any(not inputs.get("multi_band_diffusion") for inputs in RUNS.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, inputs in RUNS.items() if inputs.get("multi_band_diffusion")])
def test_multi_band_diffusion_decodes_when_asked(remix: Remixer, name: str) -> None:
    assert get(remix, name).mbd_used
    assert not get(remix, "chord-loudness-extras").mbd_used


# ----------------------------------------------------------------------------------------------------
# Normalisation, measured on the files


@pytest.mark.slow
def test_loudness_normalisation_reaches_the_target_under_the_ceiling(remix: Remixer) -> None:
    wav, rate = decoded(get(remix, "chord-loudness-extras"))
    import torch

    loudness = integrated_loudness(torch.from_numpy(wav), rate)
    assert abs(loudness - LOUDNESS_TARGET_LUFS) <= 0.5
    assert np.abs(wav).max() <= 10 ** (LOUDNESS_CEILING_DBFS / 20) + PCM16_STEP


@pytest.mark.slow
def test_peak_normalisation_reaches_full_scale(remix: Remixer) -> None:
    wav, _ = decoded(get(remix, "stereo-chord-mbd-peak"))
    assert abs(float(np.abs(wav).max()) - 1.0) <= PCM16_STEP


@pytest.mark.slow
def test_clip_clamps_the_mix_and_leaves_the_rest(remix: Remixer) -> None:
    before, after = get(remix, "stereo-chord-large-clip-chords").normalized
    assert float(before.abs().max()) > 1.0  # the tiny model's mix is hot: there are overs to clamp
    assert torch.equal(after, before.clamp(-1.0, 1.0))


@pytest.mark.slow
def test_rms_brings_the_mix_to_the_target_level(remix: Remixer) -> None:
    run = get(remix, "chord-large-mbd-rms-flac-unsynced")
    before, after = run.normalized
    assert abs(mono_rms_dbfs(before) - RMS_TARGET_DBFS) > 6.0  # far from the target before
    assert float(after.abs().max()) < 1.0  # the limiter had nothing to do, so the level is exact
    assert mono_rms_dbfs(after) == pytest.approx(RMS_TARGET_DBFS, abs=0.01)
    wav, _ = decoded(run)
    assert mono_rms_dbfs(torch.from_numpy(wav)) == pytest.approx(RMS_TARGET_DBFS, abs=0.05)  # and in the file


@pytest.mark.slow
def test_mp3_decodes_at_the_mix_rate(remix: Remixer) -> None:
    run = get(remix, "stereo-chord-mp3")
    head = run.result.mix.read_bytes()[:3]
    assert head == b"ID3" or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0)  # a tag or an MPEG frame sync
    info = soundfile.info(str(run.result.mix))
    assert info.samplerate == SONG_RATE
    assert info.channels == 2


# ----------------------------------------------------------------------------------------------------
# Extras


@pytest.mark.slow
def test_extras_write_stems_analysis_and_plot(remix: Remixer, song: Song) -> None:
    run = get(remix, "chord-loudness-extras")
    result = run.result
    for path in (result.instrumental, result.vocals, result.analysis_json, result.plot):
        assert path is not None and path.parent == run.out_dir and path.stat().st_size > 0
    assert result.instrumental is not None and result.vocals is not None
    # Both stems exactly as they went into the mix: stereo at the song's rate, the instrumental gain-matched.
    for stem in (result.instrumental, result.vocals):
        audio = read_audio(stem)
        assert (audio.channels, audio.sample_rate) == (2, SONG_RATE)
        assert audio.num_frames == song.frames
        assert np.isfinite(audio.wav.numpy()).all() and np.abs(audio.wav.numpy()).max() > 0
    gain = 10 ** (result.mixing.instrumental_gain_db / 20)
    assert gain != 1.0  # the tiny model's instrumental is much louder than the song's accompaniment

    assert result.analysis_json is not None
    report = json.loads(result.analysis_json.read_text())
    analysis = report["analysis"]
    assert {"duration", "sample_rate", "bpm", "beats", "downbeats", "chords"} <= set(analysis)
    assert isinstance(analysis["duration"], float) and abs(analysis["duration"] - SONG_SECONDS) < 1e-3
    assert isinstance(analysis["sample_rate"], int) and analysis["sample_rate"] == SONG_RATE
    assert isinstance(analysis["bpm"], float)
    for key in ("beats", "downbeats"):
        assert analysis[key] and all(isinstance(t, float) for t in analysis[key])
    assert analysis["chords"]
    for chord in analysis["chords"]:
        assert set(chord) >= {"start", "end", "label"}
        assert isinstance(chord["start"], float | int) and isinstance(chord["end"], float | int)
        assert isinstance(chord["label"], str) and chord["start"] < chord["end"]
    assert report["seed"] == 0
    # beat_sync_threshold=None: the automatic threshold, 1.1 beats of the song.
    assert report["sync"]["threshold_s"] == pytest.approx(AUTO_THRESHOLD_BEATS * 60 / result.analysis.bpm)

    assert result.plot is not None
    png = result.plot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert width >= 400 and height >= 200
    assert 10_000 < len(png) < 5_000_000


# ----------------------------------------------------------------------------------------------------
# Seeds and determinism


@pytest.mark.slow
def test_same_seed_and_inputs_give_the_same_mix(remix: Remixer) -> None:
    first = get(remix, REPEAT)
    again = remix(f"{REPEAT}-again", **RUNS[REPEAT])
    assert again.result.seed == first.result.seed == RUNS[REPEAT]["seed"]
    assert digest(again.result.mix) == digest(first.result.mix)


@pytest.mark.slow
def test_seed_zero_is_a_seed_and_is_reported(remix: Remixer) -> None:
    run = get(remix, "chord-loudness-extras")
    assert run.result.seed == 0
    for name, inputs in RUNS.items():
        assert get(remix, name).result.seed == inputs["seed"]


# ----------------------------------------------------------------------------------------------------
# Analysis: typed chords, tempo in the description


@pytest.mark.slow
def test_typed_chords_replace_the_detected_ones_one_per_bar(remix: Remixer, song: Song) -> None:
    analysis = get(remix, "stereo-chord-large-clip-chords").result.analysis
    downbeats = analysis.downbeats
    # The song's own downbeats were found (so the bars below are the song's bars).
    assert len(downbeats) == len(song.downbeats)
    np.testing.assert_allclose(downbeats, song.downbeats, atol=DOWNBEAT_TOLERANCE_S)
    chords = list(analysis.chords)
    if chords[0].label == "N":  # a pickup before the first detected downbeat
        assert chords[0].start == 0.0 and chords[0].end == pytest.approx(downbeats[0])
        chords = chords[1:]
    expected = ["C:maj", "G:maj", "A:min", "F:maj"]
    assert len(chords) >= len(downbeats)
    for index, chord in enumerate(chords):
        assert chord.label == expected[index % len(expected)]
        if index < len(downbeats):
            assert chord.start == pytest.approx(downbeats[index])
    for before, after in zip(chords, chords[1:], strict=False):
        assert before.end == pytest.approx(after.start)
    assert chords[-1].end == pytest.approx(SONG_SECONDS)


@pytest.mark.slow
def test_detected_chords_cover_the_song(remix: Remixer) -> None:
    chords = get(remix, "chord-loudness-extras").result.analysis.chords
    assert chords and chords[0].start == 0.0 and chords[-1].end == pytest.approx(SONG_SECONDS)


@pytest.mark.slow
def test_description_carries_the_songs_tempo(remix: Remixer, song: Song) -> None:
    run = get(remix, "chord-loudness-extras")
    assert run.result.analysis.bpm is not None and round(run.result.analysis.bpm) == round(song.bpm)
    assert run.descriptions  # at least one window, plus the null condition's copy
    for description in run.descriptions:
        assert description == f"{PROMPT}, bpm : {round(song.bpm)}"


# ----------------------------------------------------------------------------------------------------
# Beat sync through the pipeline


@pytest.mark.slow
def test_a_threshold_nothing_meets_skips_beat_sync(remix: Remixer) -> None:
    run = get(remix, "chord-large-mbd-rms-flac-unsynced")
    generated = np.asarray(run.result.generated_downbeats)
    reference = np.asarray(run.result.analysis.downbeats)
    # Precondition of this seed: no generated downbeat on the very frame of a song downbeat.
    if generated.size and reference.size:
        assert np.abs(generated[:, None] - reference[None, :]).min() > TINY_THRESHOLD_S
    assert run.result.sync.skipped_reason is not None
    assert run.result.sync.matched.size == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["chord-loudness-extras", "stereo-chord-mbd-peak"])
def test_automatic_threshold_spellings_work(remix: Remixer, name: str) -> None:
    run = get(remix, name)
    assert run.request.beat_sync_threshold in (None, -1)
    sync = run.result.sync
    assert sync.skipped_reason is not None or len(sync.anchors) >= 3
    threshold = AUTO_THRESHOLD_BEATS * 60 / run.result.analysis.bpm
    assert np.all(np.abs(sync.residuals) <= threshold + 1e-9)


# ----------------------------------------------------------------------------------------------------
# Bad inputs: an error naming the field, before any separation


def _wav(path: Path, seconds: float, rate: int = SONG_RATE, *, channels: int = 2, silent: bool = False) -> Path:
    frames = int(seconds * rate)
    t = np.arange(frames) / rate
    tone = np.zeros(frames) if silent else 0.3 * np.sin(2 * np.pi * 220.0 * t)
    soundfile.write(str(path), np.repeat(tone[:, None], channels, axis=1), rate, subtype="PCM_16")
    return path


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


AUDIO_CASES: dict[str, Callable[[Path], Path]] = {
    "empty file": lambda d: _text(d / "empty.wav", ""),
    "text named .wav": lambda d: _text(d / "notes.wav", "not audio at all\n" * 20),
    "too short": lambda d: _wav(d / "short.wav", 3.0),
    "silent": lambda d: _wav(d / "silence.wav", 12.0, silent=True),
    "too long": lambda d: _wav(d / "long.wav", SONG_MAX_S + 1, 8000, channels=1),
    "missing": lambda d: d / "missing.wav",
}


@pytest.mark.parametrize(
    ("field_name", "inputs"),
    [
        ("prompt", dict(prompt=None)),
        ("prompt", dict(prompt="   ")),
        ("music_input", dict(music_input=None)),
        ("chroma_coefficient", dict(chroma_coefficient=0.4)),
        ("chroma_coefficient", dict(chroma_coefficient=2.1)),
        ("beat_sync_threshold", dict(beat_sync_threshold=0)),
        ("beat_sync_threshold", dict(beat_sync_threshold=-2)),
        ("beat_sync_threshold", dict(beat_sync_threshold=math.nan)),
        ("model_version", dict(model_version="melody")),
        ("output_format", dict(output_format="ogg")),
        ("normalization_strategy", dict(normalization_strategy="loud")),
        ("top_k", dict(top_k=1000)),
        ("chords", dict(chords="C H7 Am")),
        ("chords", dict(chords="C G\x85Am F")),
        ("prompt", dict(prompt="bossa\x9bnova")),
        ("prompt", dict(prompt="bossa \udc80 nova")),
        ("chroma_coefficient", dict(chroma_coefficient=math.inf)),
        ("top_p", dict(top_p=math.nan)),
        ("temperature", dict(temperature=math.inf)),
        ("seed", dict(seed=-5)),
    ],
    ids=lambda value: str(value) if not isinstance(value, dict) else ",".join(f"{k}={v!r}" for k, v in value.items()),
)
def test_bad_inputs_name_the_field_before_separating(service: Any, song: Song, tmp_path: Path, field_name: str,
                                                    inputs: dict[str, Any]) -> None:
    request = RemixRequest(**{"prompt": PROMPT, "music_input": song.path, "seed": 1, **inputs})
    calls = service.separator.calls
    with pytest.raises(InputError, match=field_name) as caught:
        service.predict(request, tmp_path)
    assert caught.value.field == field_name
    assert service.separator.calls == calls
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("case", list(AUDIO_CASES))
def test_unusable_music_input_is_an_audio_error(service: Any, tmp_path: Path, case: str) -> None:
    inputs = tmp_path / "inputs"
    out = tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    path = AUDIO_CASES[case](inputs)
    calls = service.separator.calls
    with pytest.raises(AudioError, match="music_input") as caught:
        service.predict(RemixRequest(prompt=PROMPT, music_input=path, seed=1), out)
    assert caught.value.field == "music_input"
    assert service.separator.calls == calls
    assert os.listdir(out) == []


@pytest.mark.parametrize(("bpm", "expected"), [(None, "bossa nova"), (119.6, "bossa nova, bpm : 120"),
                                               (72.0, "bossa nova, bpm : 72")])
def test_the_prompt_carries_the_tempo_as_sakemins_remixer_wrote_it(bpm: float | None, expected: str) -> None:
    from musicgen_remix.remix.pipeline import prompt_with_tempo

    assert prompt_with_tempo("bossa nova", bpm) == expected
