"""The command line, run as users run it (``python -m musicgen_remix ...`` in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, weights: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if weights is not None:
        env["MUSICGEN_REMIX_WEIGHTS"] = str(weights)
    return subprocess.run([sys.executable, "-m", "musicgen_remix", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.songs import have_fluidsynth, render_song

    if not have_fluidsynth():
        pytest.skip("fluidsynth or its General MIDI soundfont is missing")
    path = tmp_path_factory.mktemp("cli") / "song.wav"
    render_song(path, progression=["C:maj", "G:maj", "A:min", "F:maj"], bpm=120, bars=6, offset=0.5,
                vocal_line=True)
    return path


@pytest.mark.slow
def test_generate_writes_the_requested_file(tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen.flac"
    done = run_cli("generate", "--prompt", "lofi beat", "--duration", "3", "--seed", "0", "-o", str(out),
                   weights=tiny_weights)
    assert done.returncode == 0, done.stderr
    info = sf.info(out)
    assert info.format == "FLAC" and info.samplerate == 32000 and abs(info.duration - 3.0) < 0.01
    assert "seed 0" in done.stderr


@pytest.mark.slow
def test_generate_prints_the_seed_and_stays_quiet(tiny_weights: Path, tmp_path: Path) -> None:
    done = run_cli("generate", "--prompt", "lofi beat", "--duration", "1", "-o", str(tmp_path / "a.wav"),
                   weights=tiny_weights)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("seed: ") and int(done.stdout.split()[1]) >= 0
    # Library noise that reads like a broken install is not shown without --verbose.
    for noise in ("xFormers", "FutureWarning", "weight_norm", "Loading weights"):
        assert noise not in done.stderr, noise


@pytest.mark.slow
def test_verbose_shows_what_the_libraries_say(tiny_weights: Path, tmp_path: Path) -> None:
    done = run_cli("-v", "generate", "--prompt", "lofi beat", "--duration", "1", "-o", str(tmp_path / "a.wav"),
                   weights=tiny_weights)
    assert done.returncode == 0, done.stderr
    assert "xFormers" in done.stderr and "DEBUG" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--top-p", "2"], "--top-p=2.0 is not allowed"),
    (["--duration", "0"], "--duration=0 is not allowed: seconds from 1 to 300"),
    (["--continuation"], "--input-audio=None is not allowed"),
    (["--seed", "-5"], "--seed=-5 is not allowed"),
])
def test_bad_input_is_refused_naming_the_flag_before_any_weights(tmp_path: Path, args: list[str],
                                                                 message: str) -> None:
    """An empty weights root: nothing to load, and nothing is looked for before the request is checked."""
    empty = tmp_path / "no-weights"
    empty.mkdir()
    done = run_cli("generate", "--prompt", "x", *args, "-o", str(tmp_path / "x.wav"), weights=empty)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert "weights" not in done.stderr.split(message, 1)[1].splitlines()[0]
    assert not (tmp_path / "x.wav").exists()


@pytest.fixture()
def three_seconds(tmp_path: Path) -> Path:
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros((3 * 32000, 1), np.float32), 32000)
    return path


@pytest.mark.parametrize(("args", "message"), [
    # input_audio without continuation is melody conditioning, which a text-only model cannot take.
    (["--model-version", "small", "--input-audio", "{wav}"],
     "--input-audio='a.wav' is not allowed: melody conditioning needs a melody model, and --model-version small is "
     "text-only: choose a melody --model-version, or set --continuation to continue the audio"),
    # The file's header says 3 s: a 3 s prompt leaves nothing to generate in 3 s.
    (["--input-audio", "{wav}", "--continuation", "--duration", "3"],
     "--duration=3 is not allowed: a duration longer than the continuation prompt (3.00 s from --continuation-start to "
     "--continuation-end)"),
    (["--input-audio", "{wav}", "--continuation", "--continuation-start", "4"],
     "--continuation-start=4 is not allowed: seconds before the end of --input-audio (3.000 s)"),
    (["--input-audio", "{wav}", "--continuation", "--continuation-end", "9"],
     "--continuation-end=9 is not allowed: seconds up to the end of --input-audio (3.000 s)"),
    (["--input-audio", "{wav}", "--continuation-start", "2", "--continuation-end", "1"],
     "--continuation-end=1 is not allowed: greater than --continuation-start (2)"),
    (["--continuation"], "--input-audio=None is not allowed: an audio file when --continuation is given"),
    (["--weights", "{tmp}/missing.th"], "--weights='{tmp}/missing.th' is not allowed: a fine-tuned checkpoint file"),
])
def test_what_the_input_file_rules_out_is_refused_before_any_weights(tmp_path: Path, three_seconds: Path,
                                                                     args: list[str], message: str) -> None:
    """An empty weights root: each of these was found only after the model was looked for (or loaded)."""
    empty = tmp_path / "no-weights"
    empty.mkdir()
    args = [a.format(wav=three_seconds, tmp=tmp_path) for a in args]
    done = run_cli("generate", "--prompt", "x", *args, "-o", str(tmp_path / "x.wav"), weights=empty)
    assert done.returncode == 2, done.stderr
    assert message.format(tmp=tmp_path) in done.stderr, done.stderr
    assert "are not under" not in done.stderr and "loading" not in done.stderr


def test_a_song_too_short_to_remix_is_refused_before_any_weights(tmp_path: Path, three_seconds: Path) -> None:
    empty = tmp_path / "no-weights"
    empty.mkdir()
    done = run_cli("remix", "--music-input", str(three_seconds), "--prompt", "x", "-o", str(tmp_path / "x.wav"),
                   weights=empty)
    assert done.returncode == 2, done.stderr
    assert "--music-input='a.wav' is not allowed: a song of at least 5 s (this file has 3.00 s)" in done.stderr
    assert "are not under" not in done.stderr


def test_sync_refuses_a_bad_threshold_by_its_flag_before_reading_audio(tmp_path: Path) -> None:
    not_audio = tmp_path / "ref.wav"
    not_audio.write_text("not audio\n")  # reading it would be refused: the threshold is checked first
    done = run_cli("sync", "--reference", str(not_audio), "--audio", str(not_audio), "--threshold", "-5", "-o",
                   str(tmp_path / "s.wav"))
    assert done.returncode == 2, done.stderr
    assert "--threshold=-5.0 is not allowed: a positive number of seconds" in done.stderr, done.stderr
    assert "beat_sync_threshold" not in done.stderr and "reference" not in done.stderr


@pytest.mark.parametrize(("command", "flag"), [
    (["generate", "--prompt", "x", "--input-audio"], "--input-audio"),
    (["remix", "--prompt", "x", "--music-input"], "--music-input"),
])
@pytest.mark.parametrize(("name", "what"), [
    ("missing.wav", "an existing audio file (this file does not exist)"),
    ("empty.wav", "a non-empty audio file (this file is 0 bytes)"),
])
def test_an_unusable_input_file_is_refused_before_any_weights(tmp_path: Path, command: list[str], flag: str,
                                                              name: str, what: str) -> None:
    """A typo in a file name is found before anything is looked for or loaded (an empty weights root)."""
    empty = tmp_path / "no-weights"
    empty.mkdir()
    (tmp_path / "empty.wav").touch()
    done = run_cli(*command, str(tmp_path / name), "-o", str(tmp_path / "x.wav"), weights=empty)
    assert done.returncode == 2, done.stderr
    assert f"{flag}={name!r} is not allowed: {what}" in done.stderr, done.stderr
    assert "loading" not in done.stderr and "are not under" not in done.stderr


def test_every_missing_asset_is_named_at_once(tmp_path: Path) -> None:
    empty = tmp_path / "no-weights"
    empty.mkdir()
    done = run_cli("generate", "--prompt", "x", "--multi-band-diffusion", "-o", str(tmp_path / "x.wav"),
                   weights=empty)
    assert done.returncode == 2
    error = [line for line in done.stderr.splitlines() if "are not under" in line]
    assert len(error) == 1, done.stderr
    for asset in ("musicgen-melody", "t5-base", "htdemucs", "encodec-32khz", "mbd"):
        assert asset in error[0]
    assert "weights fetch musicgen-melody t5-base htdemucs encodec-32khz mbd" in error[0]


@pytest.mark.slow
def test_another_model_version_never_loads_melody(tiny_weights: Path, tmp_path: Path) -> None:
    root = tmp_path / "weights"
    root.mkdir()
    for entry in tiny_weights.iterdir():
        if entry.name != "facebook":
            (root / entry.name).symlink_to(entry)
    (root / "facebook").mkdir()
    (root / "facebook" / "musicgen-small").symlink_to(tiny_weights / "facebook" / "musicgen-small")
    done = run_cli("generate", "--prompt", "x", "--duration", "1", "--model-version", "small", "-o",
                   str(tmp_path / "x.wav"), weights=root)
    assert done.returncode == 0, done.stderr
    assert "loading melody" not in done.stderr and "model small" in done.stderr


@pytest.mark.parametrize(("command", "message"), [
    (["generate", "--prompt", "x", "-o", "x.ogg"], "--output='{tmp}/x.ogg' is not allowed: a file name ending in .wav"),
    (["generate", "--prompt", "x", "--output-format", "mp3", "-o", "x.wav"],
     "--output-format='mp3' is not allowed: the format --output x.wav names (wav)"),
    (["sync", "--reference", "r.wav", "--audio", "a.wav", "-o", "s.ogg"], "--output='{tmp}/s.ogg' is not allowed"),
    (["remix", "--music-input", "song.wav", "--prompt", "x", "-o", "m.wav", "--plot", "r.gif"],
     "--plot='{tmp}/r.gif' is not allowed: a file name ending in .png .pdf .jpg"),
    (["remix", "--music-input", "song.wav", "--prompt", "x", "-o", "m.wav", "--vocals", "v.ogg"],
     "--vocals='{tmp}/v.ogg' is not allowed"),
])
def test_output_names_and_formats_must_agree(tmp_path: Path, command: list[str], message: str) -> None:
    command = [str(tmp_path / c) if c.endswith((".ogg", ".wav", ".gif", ".mp3")) else c for c in command]
    done = run_cli(*command, weights=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message.format(tmp=tmp_path) in done.stderr, done.stderr
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".ogg", ".wav", ".gif")]


@pytest.mark.slow
def test_analyze_json_prints_one_object_with_the_contract(song: Path) -> None:
    done = run_cli("analyze", str(song), "--json")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert isinstance(data["duration"], float) and isinstance(data["sample_rate"], int)
    assert data["bpm"] == pytest.approx(120, abs=1.5)
    assert all(isinstance(t, float) for t in data["beats"] + data["downbeats"])
    assert data["downbeats"][0] == pytest.approx(0.5, abs=0.07)
    assert {"start", "end", "label"} <= set(data["chords"][0])
    labels = [c["label"] for c in data["chords"] if c["end"] - c["start"] > 1.0]
    assert labels[:4] == ["C:maj", "G:maj", "A:min", "F:maj"]


@pytest.mark.slow
def test_analyze_without_json_prints_a_summary(song: Path) -> None:
    done = run_cli("analyze", str(song))
    assert done.returncode == 0, done.stderr
    assert "tempo: 120" in done.stdout and "C:maj" in done.stdout


@pytest.mark.slow
def test_sync_aligns_a_take_to_the_reference(tmp_path: Path) -> None:
    from fixtures.songs import have_fluidsynth, render_song

    if not have_fluidsynth():
        pytest.skip("fluidsynth or its General MIDI soundfont is missing")
    progression = ["A:min", "F:maj", "C:maj", "G:maj"]
    ref = render_song(tmp_path / "ref.wav", progression=progression, bpm=120, bars=6)
    render_song(tmp_path / "take.wav", progression=progression, bpm=114, bars=6, offset=0.3)
    out = tmp_path / "synced.wav"
    done = run_cli("sync", "--reference", str(tmp_path / "ref.wav"), "--audio", str(tmp_path / "take.wav"),
                   "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert sf.info(out).frames == sf.info(tmp_path / "ref.wav").frames
    found = json.loads(run_cli("analyze", str(out), "--json").stdout)["downbeats"]
    # Every bar after the first (whose region from 0 s is beyond the stretch bound) lands on the reference.
    errors = [min(abs(f - d) for f in found) for d in ref.downbeats[1:]]
    assert max(errors) <= 0.02, errors


@pytest.mark.slow
def test_remix_writes_the_mix_and_the_extras(tiny_weights: Path, song: Path, tmp_path: Path) -> None:
    outs = {name: tmp_path / name for name in ("mix.mp3", "inst.flac", "voc.wav", "analysis.json", "plot.jpg")}
    done = run_cli("remix", "--music-input", str(song), "--prompt", "reggae", "--seed", "1", "--model-version",
                   "chord", "-o", str(outs["mix.mp3"]), "--instrumental", str(outs["inst.flac"]), "--vocals",
                   str(outs["voc.wav"]), "--analysis", str(outs["analysis.json"]), "--plot", str(outs["plot.jpg"]),
                   weights=tiny_weights)
    assert done.returncode == 0, done.stderr
    assert all(path.exists() for path in outs.values())
    assert sf.info(outs["inst.flac"]).duration == pytest.approx(sf.info(song).duration, abs=0.01)
    assert json.loads(outs["analysis.json"].read_text())["analysis"]["bpm"] == pytest.approx(120, abs=1.5)
    assert outs["plot.jpg"].read_bytes()[:3] == b"\xff\xd8\xff"  # the suffix decides: a JPEG
    assert sf.info(outs["mix.mp3"]).format == "MP3"
    # Every audio file says what made it, the stem re-encoded to FLAC on delivery included.
    from musicgen_remix.audio.tags import SOFTWARE, read_tags

    for name in ("mix.mp3", "inst.flac", "voc.wav"):
        tags = read_tags(outs[name])
        assert (tags["title"], tags["software"]) == ("reggae", SOFTWARE), name
        record = json.loads(tags["comment"])
        assert (record["entrypoint"], record["prompt"], record["seed"]) == ("remix", "reggae", 1), name
        assert record["inputs"]["model_version"] == "chord" and record["inputs"]["music_input"] == "song.wav"


def test_weights_list_names_every_asset() -> None:
    done = run_cli("weights", "list")
    assert done.returncode == 0, done.stderr
    for name in ("musicgen-melody", "musicgen-stereo-chord", "htdemucs", "t5-base", "mbd", "encodec-32khz"):
        assert name in done.stdout
