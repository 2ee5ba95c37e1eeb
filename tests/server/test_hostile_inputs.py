"""Hostile and unusual inputs over HTTP, against the real current servers (coglet) of both entrypoints.

Each input gets either a 422 naming the field (Cog's own range and choice checks), or a failed prediction
whose error names the field and the problem in plain words, and the server stays READY and correct
(each server's last request, when the module is done with it, is a valid prediction). Some unusual inputs are
legal and must work.

| input                                         | entrypoint(s)    | outcome                                        |
|-----------------------------------------------|------------------|------------------------------------------------|
| empty file (0 bytes)                          | generate, remix  | failed: "0 bytes"                              |
| a text file named .wav                        | generate, remix  | failed: "not recognised as audio"              |
| an mp3 cut inside its first frame             | generate, remix  | failed: "not recognised as audio"              |
| an mp3 cut in half                            | generate         | works: the decodable first half is used        |
| a single sample                               | remix            | failed: "a song of at least 5 s"               |
| a single sample, melody or continuation       | generate         | failed: "at least 0.5 s of audio"              |
| 30 s of digital silence                       | remix            | failed: "this file is silent"                  |
| 3 s of digital silence, continuation          | generate         | works (continuing silence is legal)            |
| float32 wav holding NaN and Inf               | generate, remix  | failed: "NaN or Inf"                           |
| 8 channels                                    | generate         | works (downmixed), melody and continuation     |
| 8 kHz and 192 kHz                             | generate         | works (resampled), melody and continuation     |
| a song over the length cap (301 s, 8 kHz)     | remix            | failed: "no longer than 300 s"                 |
| a prompt of 10,000 characters                 | generate, remix  | failed: "at most 2000 characters"              |
| a prompt with control characters              | generate, remix  | failed: "without control characters"          |
| continuation_start past the end of the audio  | generate         | failed, names continuation_start               |
| continuation_end before continuation_start    | generate         | failed, names continuation_end                 |
| top_k, top_p, temperature, classifier_free_guidance, chroma_coefficient, duration out of range |
|                                               | both             | 422 below the schema's bounds; failed (naming  |
|                                               |                  | the field) above the model's limits            |
| a music_input URL that answers 404            | remix            | failed: Cog's download error names 404 and URL |
| a music_input URL that never answers          | remix            | failed after Cog's 10 s read timeout           |

Findings (Cog 0.23, which downloads URL inputs in the server before ``run`` is called, so the entrypoint
cannot guard them): a URL input is fetched with ``requests.get(url, timeout=10)``; a server that never
answers fails the prediction after about 10 s; the download error is Cog's own text ("Input validation
error: 404 Client Error: Not Found for url: ..."), which names the URL but not the input.

A single-sample ``input_audio`` is refused by the generate entrypoint (under 0.5 s there is nothing to
continue or follow), and the remix entrypoint refuses songs under 5 s.

The module also checks request isolation: each request works in its own ``musicgen-remix-*`` directory
under the server's TMPDIR, a failed request's directory is removed at once, Cog's downloaded copies of
inputs are removed, and nothing is written to the repository root (the servers' working directory).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import lameenc
import numpy as np
import pytest
import requests

from fixtures.audio import SAMPLE_RATE, audio_bytes, data_uri, decode_audio_uri, sine
from fixtures.cogserver import REPO
from fixtures.peers import FileServer, SilentPort

if TYPE_CHECKING:
    from fixtures.cogserver import CogServer

    from .conftest import StartServer

pytestmark = [pytest.mark.server, pytest.mark.slow]  # each module starts real servers (8-15 s each)

GENERATE = {"prompt": "calm piano", "duration": 2, "seed": 0}
REMIX = {"prompt": "bossa nova, nylon guitar", "seed": 0, "top_k": 50}
FIELD = {"generate": "input_audio", "remix": "music_input"}
URL_INPUT_BOUND_S = 30.0  # Cog's 10 s read timeout, with room for a slow machine
CACHES = {".cache", ".pytest_cache", ".ruff_cache", ".mypy_cache", "__pycache__"}


def _repo_listing() -> set[str]:
    return {p.name for p in REPO.iterdir() if p.name not in CACHES}


# The module-wide invariants (nothing written to the repository root, at most one request directory left, the
# servers still correct) are checked when the module's fixtures end: after every test that ran, in any order.


@pytest.fixture(scope="module", autouse=True)
def repository_root_untouched() -> Iterator[None]:
    """Nothing is written to the repository root, the servers' working directory: listed before they start
    (autouse: set up first), compared after they stop (torn down last)."""
    before = _repo_listing()
    yield
    new = _repo_listing() - before
    assert not new, f"written to the servers' working directory: {sorted(new)}"


@pytest.fixture(scope="module")
def generate_server(cog_servers: StartServer) -> Iterator[CogServer]:
    server = cog_servers("generate")
    yield server
    # Still correct after everything this module sent it.
    assert_works(server, {**GENERATE, "seed": 7}, GENERATE["duration"])


@pytest.fixture(scope="module")
def remix_server(cog_servers: StartServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CogServer]:
    server = cog_servers("remix")
    yield server
    # After this module's remix requests (successes, failures in predict, failed URL downloads): at most one
    # request directory. Cog leaks one empty temporary file per URL input whose download fails (it creates the
    # file, then the download raises before it records the path it would clean up); the next request removes
    # those older than serving.LEFTOVER_AGE_S. Nothing else may be left.
    assert len(server.request_dirs()) <= 1
    leftovers = [p for p in server.tmpdir.iterdir() if p.name.startswith("tmp")]
    assert all(p.is_file() and p.stat().st_size == 0 for p in leftovers), [
        (p.name, p.stat().st_size) for p in leftovers]
    assert len(leftovers) <= 2, [p.name for p in leftovers]  # the two failed downloads of this module
    # Still correct after all of it: a real remix of a rendered song (when fluidsynth can render one).
    from fixtures.songs import have_fluidsynth, render_song

    if have_fluidsynth():
        song = tmp_path_factory.mktemp("song") / "song.wav"
        render_song(song, progression=["A:min", "F:maj", "C:maj", "G:maj"], bars=4, bpm=120.0)
        body = server.predict(inputs_for("remix", music_input=data_uri(song.read_bytes())), timeout=300).json()
        assert body["status"] == "succeeded", f"{body.get('error')}\n{body.get('logs')}"
        assert decode_audio_uri(body["output"])[0].shape[0] > 0


@pytest.fixture(scope="module")
def servers(generate_server: CogServer, remix_server: CogServer) -> dict[str, CogServer]:
    return {"generate": generate_server, "remix": remix_server}


# ----------------------------------------------------------------------------------------------------
# Payloads


def wav_uri(samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> str:
    return data_uri(audio_bytes(samples, sample_rate, subtype=subtype))


def mp3_bytes(seconds: float = 3.0) -> bytes:
    pcm = np.round(sine(seconds) * 32767).astype(np.int16)
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(320)
    encoder.set_in_sample_rate(SAMPLE_RATE)
    encoder.set_channels(1)
    encoder.set_quality(2)
    return bytes(encoder.encode(pcm.tobytes()) + encoder.flush())


def nan_inf_wav() -> str:
    samples = sine(6.0)
    samples[100] = np.nan
    samples[200] = np.inf
    return wav_uri(samples, SAMPLE_RATE, subtype="FLOAT")


# Name -> a data URI builder; built lazily so that collection stays fast.
BAD_FILES: dict[str, Callable[[], str]] = {
    "empty": lambda: "data:audio/wav;base64,",
    "text_named_wav": lambda: data_uri(b"this is a text file, not audio\n" * 20, "audio/wav"),
    "mp3_cut_in_first_frame": lambda: data_uri(mp3_bytes()[:400], "audio/mpeg"),
    "nan_and_inf": nan_inf_wav,
}
BAD_FILE_ERRORS = {
    "empty": r"0 bytes",
    "text_named_wav": r"not recognised as audio",
    "mp3_cut_in_first_frame": r"not recognised as audio|could not be decoded",
    "nan_and_inf": r"NaN or Inf",
}


def inputs_for(entrypoint: str, **extra: object) -> dict:
    base = GENERATE if entrypoint == "generate" else REMIX
    return {**base, **extra}


def file_inputs(entrypoint: str, uri: str) -> dict:
    if entrypoint == "generate":
        # Longer than any of the files (at most 6 s): the output includes the whole file as its prompt.
        return inputs_for("generate", input_audio=uri, continuation=True, duration=8)
    return inputs_for("remix", music_input=uri)


def assert_failed(server: CogServer, inputs: dict, field: str, problem: str) -> dict:
    """The prediction fails with an error naming ``field`` and matching ``problem``; the server stays READY."""
    response = server.predict(inputs)
    assert response.status_code == 200, response.text[:2000]
    body = response.json()
    assert body["status"] == "failed", f"expected a failure naming {field}, got {body['status']}"
    assert re.search(rf"(InputError|AudioError): {field}=", body["error"]), body["error"]
    assert re.search(problem, body["error"]), body["error"]
    assert server.wait_status("READY") == "READY"
    return body


def assert_422(server: CogServer, inputs: dict, field: str) -> None:
    response = server.predict(inputs)
    assert response.status_code == 422, response.text[:2000]
    locations = [list(error["loc"]) for error in response.json()["detail"]]
    assert ["body", "input", field] in locations, locations
    assert server.wait_status("READY") == "READY"


def assert_works(server: CogServer, inputs: dict, seconds: float) -> None:
    response = server.predict(inputs)
    assert response.status_code == 200, response.text[:2000]
    body = response.json()
    assert body["status"] == "succeeded", f"{body.get('error')}\n{body.get('logs')}"
    samples, sample_rate, _ = decode_audio_uri(body["output"])
    assert samples.shape[0] / sample_rate == pytest.approx(seconds, abs=0.01)
    assert np.abs(samples).max() > 0.1  # music, normalised (a decoded file cannot hold NaN: not checked here)


# ----------------------------------------------------------------------------------------------------
# Files that cannot be audio


@pytest.mark.parametrize("entrypoint", ["generate", "remix"])
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_unreadable_file_fails_naming_the_input(servers: dict[str, CogServer], entrypoint: str, case: str) -> None:
    assert_failed(servers[entrypoint], file_inputs(entrypoint, BAD_FILES[case]()), FIELD[entrypoint],
                  BAD_FILE_ERRORS[case])


def test_mp3_cut_in_half_uses_the_decodable_part(generate_server: CogServer) -> None:
    mp3 = mp3_bytes(3.0)
    uri = data_uri(mp3[: len(mp3) // 2], "audio/mpeg")
    assert_works(generate_server, inputs_for("generate", input_audio=uri, continuation=True, duration=3), 3.0)


def test_single_sample_song_fails(remix_server: CogServer) -> None:
    assert_failed(remix_server, file_inputs("remix", wav_uri(np.array([0.5], np.float32), 44100)),
                  "music_input", r"at least 5 s")


@pytest.mark.parametrize("continuation", [True, False])
def test_single_sample_input_audio_fails(generate_server: CogServer, continuation: bool) -> None:
    """One sample is a broken upload: nothing to continue, no melody to follow."""
    uri = wav_uri(np.array([0.5], np.float32), SAMPLE_RATE)
    assert_failed(generate_server, inputs_for("generate", input_audio=uri, continuation=continuation, duration=2),
                  "input_audio", r"at least 0.5 s")


def test_silent_song_fails(remix_server: CogServer) -> None:
    silence = np.zeros(30 * 16000, np.float32)
    assert_failed(remix_server, file_inputs("remix", wav_uri(silence, 16000)), "music_input", r"silent")


def test_silent_continuation_is_legal(generate_server: CogServer) -> None:
    uri = wav_uri(np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    assert_works(generate_server, inputs_for("generate", input_audio=uri, continuation=True, continuation_end=1,
                                             duration=2), 2.0)


def test_song_over_the_length_cap_fails(remix_server: CogServer) -> None:
    song = 0.3 * np.sin(2 * np.pi * 220 * np.arange(301 * 8000) / 8000).astype(np.float32)
    assert_failed(remix_server, file_inputs("remix", wav_uri(song, 8000)), "music_input", r"no longer than 300 s")


# ----------------------------------------------------------------------------------------------------
# Unusual audio that must work


@pytest.mark.parametrize("continuation", [True, False])
@pytest.mark.parametrize(("sample_rate", "channels"), [(8000, 1), (192000, 1), (SAMPLE_RATE, 8)])
def test_unusual_rates_and_channels_work(generate_server: CogServer, sample_rate: int, channels: int,
                                         continuation: bool) -> None:
    uri = wav_uri(sine(2.0, sample_rate, channels=channels), sample_rate)
    extra = {"continuation": True, "continuation_end": 1, "duration": 3} if continuation else {"duration": 2}
    assert_works(generate_server, inputs_for("generate", input_audio=uri, **extra), extra["duration"])


# ----------------------------------------------------------------------------------------------------
# Text and numbers


@pytest.mark.parametrize("entrypoint", ["generate", "remix"])
@pytest.mark.parametrize(("prompt", "problem"), [
    ("calm piano " * 910, r"at most 2000 characters"),  # 10,010 characters
    ("calm \x1b[31mpiano\x00", r"without control characters"),
])
def test_bad_prompt_fails(servers: dict[str, CogServer], entrypoint: str, prompt: str, problem: str) -> None:
    inputs = inputs_for(entrypoint, prompt=prompt)
    if entrypoint == "remix":
        inputs["music_input"] = wav_uri(sine(6.0, 16000), 16000)
    assert_failed(servers[entrypoint], inputs, "prompt", problem)


@pytest.mark.parametrize(("extra", "field"), [
    ({"continuation_start": 5}, "continuation_start"),  # the audio is 2 s long
    ({"continuation_start": 1, "continuation_end": 1}, "continuation_end"),
    ({"continuation_start": 2, "continuation_end": 1}, "continuation_end"),
])
def test_bad_continuation_window_fails(generate_server: CogServer, extra: dict, field: str) -> None:
    uri = wav_uri(sine(2.0), SAMPLE_RATE)
    inputs = inputs_for("generate", input_audio=uri, continuation=True, duration=3, **extra)
    assert_failed(generate_server, inputs, field, r"continuation")


@pytest.mark.parametrize("entrypoint", ["generate", "remix"])
@pytest.mark.parametrize(("field", "value"), [
    ("top_k", -1), ("top_p", -0.1), ("top_p", 1.5), ("temperature", -0.5), ("classifier_free_guidance", -1),
])
def test_values_below_the_schema_bounds_get_422(servers: dict[str, CogServer], entrypoint: str, field: str,
                                                value: object) -> None:
    assert_422(servers[entrypoint], inputs_for(entrypoint, **{field: value}), field)


@pytest.mark.parametrize(("entrypoint", "field", "value"), [
    ("generate", "duration", 0), ("generate", "duration", 301), ("generate", "duration", 2.5),
    ("remix", "chroma_coefficient", 0.4), ("remix", "chroma_coefficient", 2.5),
])
def test_values_outside_the_schema_ranges_get_422(servers: dict[str, CogServer], entrypoint: str, field: str,
                                                  value: object) -> None:
    assert_422(servers[entrypoint], inputs_for(entrypoint, **{field: value}), field)


@pytest.mark.parametrize("entrypoint", ["generate", "remix"])
@pytest.mark.parametrize(("field", "value"), [
    ("top_k", 100_000), ("temperature", 1e9), ("classifier_free_guidance", 10_000),
])
def test_values_above_the_model_limits_fail_naming_the_field(servers: dict[str, CogServer], entrypoint: str,
                                                            field: str, value: object) -> None:
    inputs = inputs_for(entrypoint, **{field: value})
    if entrypoint == "remix":
        inputs["music_input"] = wav_uri(sine(6.0, 16000), 16000)
    assert_failed(servers[entrypoint], inputs, field, r"from 0 to")


# ----------------------------------------------------------------------------------------------------
# URL inputs


def test_music_input_url_that_answers_404_fails(remix_server: CogServer, files: FileServer) -> None:
    url = f"{files.base}/no-such-song.wav"
    body = remix_server.predict(inputs_for("remix", music_input=url)).json()
    assert body["status"] == "failed", body
    assert "404" in body["error"] and url in body["error"], body["error"]
    assert remix_server.wait_status("READY") == "READY"


def test_music_input_url_that_never_answers_fails_within_a_bound(remix_server: CogServer) -> None:
    silent = SilentPort()
    try:
        started = time.monotonic()
        response = remix_server.predict(inputs_for("remix", music_input=f"{silent.base}/song.wav"),
                                        timeout=URL_INPUT_BOUND_S + 30)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    body = response.json()
    assert body["status"] == "failed", body
    assert re.search(r"timed out", body["error"], re.IGNORECASE), body["error"]
    assert elapsed < URL_INPUT_BOUND_S, f"the prediction failed only after {elapsed:.1f} s"
    assert remix_server.wait_status("READY") == "READY"


# ----------------------------------------------------------------------------------------------------
# Isolation (the module-wide checks are in the fixtures above)


def test_failed_requests_leave_no_directory(generate_server: CogServer) -> None:
    server = generate_server
    baseline = {name for name in server.tmp_entries() if not name.startswith("musicgen-remix-")}
    ok = {**GENERATE, "seed": 5}
    assert_works(server, ok, 2.0)
    first = server.request_dirs()
    assert len(first) == 1  # kept until the next request: Cog reads the output after predict() returns
    # A failure deep in the pipeline (the input is read after the request directory exists).
    assert_failed(server, file_inputs("generate", nan_inf_wav()), "input_audio", r"NaN or Inf")
    assert server.request_dirs() == []  # neither the previous request's nor the failed one's
    assert_works(server, ok, 2.0)
    last = server.request_dirs()
    assert len(last) == 1 and last != first
    # Nothing else was left behind: no copies of downloaded inputs, no stray files.
    leftovers = {name for name in server.tmp_entries() if not name.startswith("musicgen-remix-")} - baseline
    assert not leftovers, leftovers


# ----------------------------------------------------------------------------------------------------
# Round two: numbers, text, error text, and what the server around the entrypoints does


def raw_post(server: CogServer, body: str) -> requests.Response:
    return requests.post(f"{server.url}/predictions", data=body.encode(), timeout=60,
                         headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("entrypoint", ["generate", "remix"])
@pytest.mark.parametrize(("field", "literal"), [
    ("top_p", "NaN"), ("temperature", "Infinity"), ("temperature", "-Infinity"), ("top_p", "1e309"),
])
def test_non_finite_numbers_are_refused_naming_the_field(servers: dict[str, CogServer], entrypoint: str,
                                                          field: str, literal: str) -> None:
    """JSON has no NaN or Infinity; the server refuses the body (400) and names the input, echoing nothing."""
    response = raw_post(servers[entrypoint], f'{{"input": {{"prompt": "calm piano", "{field}": {literal}}}}}')
    assert response.status_code == 400, response.text
    assert f"input.{field}" in response.text
    assert servers[entrypoint].wait_status("READY") == "READY"


@pytest.mark.parametrize("field", ["beat_sync_threshold", "chroma_coefficient"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_non_finite_remix_numbers_are_refused_naming_the_field(remix_server: CogServer, field: str,
                                                               literal: str) -> None:
    """The remix's own floats: refused (400) naming the input, the value not echoed back (the detailed remix's
    are checked in ``test_remix_server``)."""
    response = raw_post(remix_server, f'{{"input": {{"prompt": "calm piano", "{field}": {literal}}}}}')
    assert response.status_code == 400, response.text
    assert f"input.{field}" in response.text
    assert literal.lstrip("-") not in response.text
    assert remix_server.wait_status("READY") == "READY"


@pytest.mark.parametrize("entrypoint", ["generate", "remix"])
@pytest.mark.parametrize(("field", "value"), [("top_p", "inf"), ("temperature", "NaN"), ("beat_sync_threshold", "-inf"),
                                              ("chroma_coefficient", "nan")])
def test_non_finite_numbers_as_strings_get_422(servers: dict[str, CogServer], entrypoint: str, field: str,
                                               value: str) -> None:
    if entrypoint == "generate" and field in ("beat_sync_threshold", "chroma_coefficient"):
        pytest.skip("a remix input")
    assert_422(servers[entrypoint], inputs_for(entrypoint, **{field: value}), field)


@pytest.mark.parametrize(("entrypoint", "field"), [("generate", "prompt"), ("remix", "prompt")])
def test_input_null_or_missing_fails_naming_what_is_needed(servers: dict[str, CogServer], entrypoint: str,
                                                           field: str) -> None:
    for body in ('{"input": null}', "{}"):
        response = raw_post(servers[entrypoint], body)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "failed"
        assert f"InputError: {field}=None is not allowed" in response.json()["error"]
        assert servers[entrypoint].wait_status("READY") == "READY"


@pytest.mark.parametrize("entrypoint", ["generate", "remix"])
def test_a_null_optional_input_gets_422_naming_it(servers: dict[str, CogServer], entrypoint: str) -> None:
    """Documented: omit an optional input instead of sending null."""
    assert_422(servers[entrypoint], inputs_for(entrypoint, seed=None), "seed")


@pytest.mark.parametrize("entrypoint", ["generate", "remix"])
@pytest.mark.parametrize("prompt", ["calm \x85piano", "calm \x9b31mpiano"])
def test_c1_control_characters_are_refused(servers: dict[str, CogServer], entrypoint: str, prompt: str) -> None:
    inputs = inputs_for(entrypoint, prompt=prompt.encode().decode("unicode_escape"))
    if entrypoint == "remix":
        inputs["music_input"] = wav_uri(sine(6.0, 16000), 16000)
    assert_failed(servers[entrypoint], inputs, "prompt", r"without control characters")


def test_a_lone_surrogate_is_refused_naming_the_prompt(generate_server: CogServer) -> None:
    response = raw_post(generate_server, '{"input": {"prompt": "calm \\ud800 piano", "duration": 1}}')
    assert response.status_code == 400, response.text
    assert "input.prompt" in response.text
    assert generate_server.wait_status("READY") == "READY"


def piped_flac() -> bytes:
    return subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=330:duration=2",
                           "-ar", "32000", "-f", "flac", "-"], capture_output=True, check=True).stdout


def test_a_flac_without_length_in_its_header_works(generate_server: CogServer) -> None:
    uri = data_uri(piped_flac(), "audio/flac")
    assert_works(generate_server, inputs_for("generate", input_audio=uri, continuation=True, continuation_end=1,
                                             duration=2), 2.0)


def test_errors_name_the_callers_file_not_a_server_path(generate_server: CogServer, files: FileServer) -> None:
    url = files.add("/uploads/my-song.wav", audio_bytes(np.full(SAMPLE_RATE, np.nan, np.float32), SAMPLE_RATE,
                                                        subtype="FLOAT"))
    body = assert_failed(generate_server, inputs_for("generate", input_audio=url, continuation=True, duration=3),
                         "input_audio", r"NaN or Inf")
    assert "input_audio='my-song.wav'" in body["error"], body["error"]
    assert str(generate_server.tmpdir) not in body["error"] and "/tmp" not in body["error"]


def test_empty_files_of_failed_downloads_are_removed_by_the_next_request(generate_server: CogServer,
                                                                         files: FileServer) -> None:
    from musicgen_remix.serving import LEFTOVER_AGE_S

    before = {p.name for p in generate_server.tmpdir.glob("tmp*")}
    body = generate_server.predict(inputs_for("generate", input_audio=f"{files.base}/missing.wav")).json()
    assert body["status"] == "failed" and "404" in body["error"]
    leaked = [p for p in generate_server.tmpdir.glob("tmp*") if p.name not in before]
    assert leaked and all(p.stat().st_size == 0 for p in leaked)  # Cog's own leftover, as recorded
    time.sleep(LEFTOVER_AGE_S + 0.5)
    assert_works(generate_server, {**GENERATE, "duration": 1}, 1.0)
    assert not [p for p in leaked if p.exists()]
