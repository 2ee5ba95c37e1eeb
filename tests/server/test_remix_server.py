"""The remix entrypoints over HTTP, against the real current server (coglet): health, schema parity with the
seed (sakemin/musicgen-remixer), sync and async remixes of a rendered song with their outputs uploaded
(``--upload-url``), every product of the detailed remix uploaded and its analysis.json, 409 while busy, and a
cancel within a second at each stage of a remix: separation, beat tracking, chord recognition, generation and
the beat-sync stretch (the rubberband program).

The seed's published schema is the contract: every input it lists must exist here with the same type,
default and range, and the remix's output must stay one URI.

Two servers for the module, each with ``--upload-url`` pointing at the module's receiver: ``remix`` and
``remix-detailed``. With an upload URL Cog uploads every output, sync or async; a remix's output as a ``data:``
URI (no upload URL) is covered by ``test_hostile_inputs``, whose remix server runs without one.

Cancels are timed from the server's own log (each worker line reaches it as it is written, with the prediction's
id): Cog throttles webhook "logs" events, which may lag a stage by seconds. A cancel must land inside the stage
it is meant for (the stage's end is not in the final logs), so an inconclusive run fails instead of passing.
Measured on this project's 2-core machines with tiny weights, from the cancel request to the "canceled" webhook:
0.03-0.2 s at every stage for 60 and 120 s rendered songs; injected the same way in-process at 0.4-1 s steps
through a stage, at most 0.25 s (beats, 120 s), 0.34 s (beats, 300 s), 0.14 s (chords, 120 s), 0.37 s (chords,
300 s).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import requests
import soundfile

from fixtures.audio import audio_bytes, data_uri, decode_audio_bytes
from fixtures.peers import FileServer, Receiver
from musicgen_remix.remix.beatsync import MAX_STRETCH
from musicgen_remix.serve import schema_path

from .levels import assert_default_loudness
from .seeds import REMIX_SEED, parse_seed_inputs, schema_problems

if TYPE_CHECKING:
    from fixtures.cogserver import CogServer

    from .conftest import StartServer

pytestmark = [pytest.mark.server, pytest.mark.slow]  # each module starts real servers (8-15 s each)

REPORT_KEYS = {"analysis", "seed", "sync", "generated_downbeats", "mix"}
ANALYSIS_KEYS = {"duration", "sample_rate", "bpm", "beats", "downbeats", "chords", "meter"}
SYNC_KEYS = {"threshold_s", "decision", "skipped_reason", "alignment", "agreement_before", "agreement_after",
             "anchors", "matched", "offsets_s", "residuals_s", "unmatched"}
# top_k well inside the tiny chord models' codebooks; a fixed seed for repeatable runs.
REMIX = {"prompt": "bossa nova, nylon guitar", "seed": 0, "top_k": 50}
DETAILED_FILES = {"remix.wav", "instrumental.wav", "vocals.wav", "analysis.json", "remix.png"}
TERMINAL = ("succeeded", "failed", "canceled")
ENTRYPOINTS = ("remix", "remix-detailed")


@pytest.fixture(scope="module")
def remix_server(cog_servers: StartServer, receiver: Receiver) -> CogServer:
    return cog_servers("remix", upload_url=receiver.upload_url)


@pytest.fixture(scope="module")
def detailed_server(cog_servers: StartServer, receiver: Receiver) -> CogServer:
    return cog_servers("remix-detailed", upload_url=receiver.upload_url)


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A rendered 4-bar song at 120 bpm (8 s of music plus the synth's release), and its length."""
    from fixtures.songs import have_fluidsynth, render_song

    if not have_fluidsynth():
        pytest.skip("fluidsynth and the GM soundfont are needed to render the test song")
    path = tmp_path_factory.mktemp("song") / "song.wav"
    render_song(path, progression=["C:maj", "A:min", "F:maj", "G:maj"], bars=4, bpm=120.0)
    seconds = soundfile.info(str(path)).duration
    assert 8.0 <= seconds <= 12.0, seconds
    return path, seconds


@pytest.fixture(scope="module")
def long_song(tmp_path_factory: pytest.TempPathFactory, files: FileServer) -> str:
    """A rendered 30-bar song at 120 bpm (60 s of music), served by the module's file server: its URL.

    Long enough that beat tracking, chord recognition, generation and the stretch each take seconds on tiny
    weights, so a cancel can be sent in the middle of each."""
    from fixtures.songs import have_fluidsynth, render_song

    if not have_fluidsynth():
        pytest.skip("fluidsynth and the GM soundfont are needed to render the test song")
    path = tmp_path_factory.mktemp("long-song") / "long-song.wav"
    render_song(path, progression=["C:maj", "A:min", "F:maj", "G:maj"], bars=30, bpm=120.0)
    assert 60.0 <= soundfile.info(str(path)).duration <= 64.0
    return files.add("/long-song.wav", path.read_bytes())


def server_for(request: pytest.FixtureRequest, entrypoint: str) -> CogServer:
    return request.getfixturevalue({"remix": "remix_server", "remix-detailed": "detailed_server"}[entrypoint])


def new_id() -> str:
    return f"test-{uuid.uuid4().hex}"


def uploaded(receiver: Receiver, prediction_id: str) -> dict[str, bytes]:
    """The files uploaded for ``prediction_id`` (Cog names it in a header of each upload), by file name."""
    found = {}
    for upload in receiver.uploads:
        headers = {key.lower(): value for key, value in upload.headers.items()}
        if headers.get("x-prediction-id") == prediction_id:
            found[upload.path.rsplit("/", 1)[-1]] = upload.body
    return found


# ----------------------------------------------------------------------------------------------------
# Health and schema


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_health_check_is_ready_after_setup(request: pytest.FixtureRequest, entrypoint: str) -> None:
    health = server_for(request, entrypoint).health()
    assert health["status"] == "READY", health
    assert health["setup"]["status"] == "succeeded", health["setup"].get("logs")
    assert health["version"]["python_sdk"] == "0.23.1", health["version"]
    assert "ready: remix with stereo-chord" in health["setup"]["logs"], health["setup"]["logs"]


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_openapi_inputs_match_the_seed_and_the_committed_schema(request: pytest.FixtureRequest,
                                                                 entrypoint: str) -> None:
    seed_inputs, _ = parse_seed_inputs(REMIX_SEED.read_text(encoding="utf-8"))
    assert len(seed_inputs) == 12, sorted(seed_inputs)
    assert (seed_inputs["chroma_coefficient"].minimum, seed_inputs["chroma_coefficient"].maximum) == ("0.5", "2")

    server = server_for(request, entrypoint)
    openapi = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    problems = schema_problems(openapi, seed_inputs, file_inputs=("music_input",))
    assert not problems, "\n".join(problems)
    chroma = openapi["components"]["schemas"]["Input"]["properties"]["chroma_coefficient"]
    assert (chroma["minimum"], chroma["maximum"]) == (0.5, 2.0)
    committed = json.loads(schema_path(entrypoint).read_text(encoding="utf-8"))["components"]["schemas"]
    assert {k: openapi["components"]["schemas"][k] for k in ("Input", "Output")} == \
        {k: committed[k] for k in ("Input", "Output")}


def test_the_remix_output_is_the_seeds_one_uri(remix_server: CogServer) -> None:
    _, seed_output = parse_seed_inputs(REMIX_SEED.read_text(encoding="utf-8"))
    output = requests.get(f"{remix_server.url}/openapi.json", timeout=10).json()["components"]["schemas"]["Output"]
    assert output == {**output, **seed_output}, f"Output schema {output} does not contain {seed_output}"
    assert {k: output[k] for k in ("format", "type")} == {"format": "uri", "type": "string"}


def test_the_detailed_output_is_a_list_of_uris(detailed_server: CogServer) -> None:
    openapi = requests.get(f"{detailed_server.url}/openapi.json", timeout=10).json()
    assert openapi["components"]["schemas"]["Output"] == {
        "items": {"format": "uri", "type": "string"}, "title": "Output", "type": "array"}


# ----------------------------------------------------------------------------------------------------
# Remixes


def test_sync_remix_uploads_audio_of_the_song_length(remix_server: CogServer, receiver: Receiver,
                                                      song: tuple[Path, float]) -> None:
    path, seconds = song
    response = remix_server.predict({**REMIX, "music_input": data_uri(path.read_bytes())}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", f"{body.get('error')}\n{body.get('logs')}"
    assert body["output"] == f"{receiver.base}/upload/remix.wav"
    samples, sample_rate, container = decode_audio_bytes(uploaded(receiver, body["id"])["remix.wav"])
    assert container == "WAV"
    assert samples.shape[0] / sample_rate == pytest.approx(seconds, abs=0.02)
    assert_default_loudness(samples, sample_rate)
    assert "seed: 0" in body["logs"] or "seed=0" in body["logs"], body["logs"]
    for stage in ("separation: ", "beats and tempo: 1/1", "chords: 1/1", "generate: ", "beat sync: 1/1"):
        assert stage in body["logs"], stage  # progress of every long stage reaches the logs
    assert remix_server.wait_status("READY") == "READY"


def test_async_remix_sends_webhooks_and_uploads_the_mix(remix_server: CogServer, receiver: Receiver,
                                                        song: tuple[Path, float]) -> None:
    path, seconds = song
    prediction_id = new_id()
    response = remix_server.predict_async({**REMIX, "seed": 1, "music_input": data_uri(path.read_bytes())},
                                          prediction_id=prediction_id, webhook=receiver.webhook_url)
    assert response.status_code == 202, response.text
    assert response.json()["status"] in ("starting", "processing")
    final = receiver.wait_terminal(prediction_id, timeout=300).body
    assert final["status"] == "succeeded", f"{final.get('error')}\n{final.get('logs')}"
    hooks = [hook.body for hook in receiver.hooks_for(prediction_id)]
    # Events are sent from several tasks, so they may arrive out of order: no order is asserted.
    assert any(h["status"] == "processing" and h.get("output") is None for h in hooks)  # "start"
    assert any(h["status"] == "processing" and "separation: " in (h.get("logs") or "") for h in hooks)  # "logs"
    assert [h["status"] for h in hooks if h["status"] in TERMINAL] == ["succeeded"]  # one "completed" event
    assert final["output"] == f"{receiver.base}/upload/remix.wav"
    files = uploaded(receiver, prediction_id)
    assert set(files) == {"remix.wav"}
    samples, sample_rate, container = decode_audio_bytes(files["remix.wav"])
    assert container == "WAV"
    assert samples.shape[0] / sample_rate == pytest.approx(seconds, abs=0.02)
    assert_default_loudness(samples, sample_rate)
    assert "seed: 1" in final["logs"], final["logs"]
    assert remix_server.wait_status("READY") == "READY"


def test_a_server_side_path_is_refused_for_music_input(remix_server: CogServer) -> None:
    body = remix_server.predict({**REMIX, "music_input": "/etc/hostname"}).json()
    assert body["status"] == "failed"
    assert "InputError: music_input='/etc/hostname' is not allowed: a URL of the file" in body["error"]


@pytest.fixture(scope="module")
def detailed_remix(detailed_server: CogServer, receiver: Receiver, song: tuple[Path, float]) -> dict[str, Any]:
    """One async detailed remix of the song: its final webhook body and its uploaded files by name."""
    path, _ = song
    prediction_id = new_id()
    response = detailed_server.predict_async({**REMIX, "music_input": data_uri(path.read_bytes())},
                                             prediction_id=prediction_id, webhook=receiver.webhook_url)
    assert response.status_code == 202, response.text
    final = receiver.wait_terminal(prediction_id, timeout=300).body
    assert final["status"] == "succeeded", f"{final.get('error')}\n{final.get('logs')}"
    return {"final": final, "files": uploaded(receiver, prediction_id)}


def test_detailed_remix_uploads_every_product(detailed_remix: dict[str, Any], receiver: Receiver,
                                              song: tuple[Path, float]) -> None:
    _, seconds = song
    # Every product is uploaded (none inlined): a list of URLs, in upload-completion order, named by content.
    output = detailed_remix["final"]["output"]
    assert isinstance(output, list) and all(url.startswith(receiver.base) for url in output), output
    assert {url.rsplit("/", 1)[-1] for url in output} == DETAILED_FILES
    uploads = detailed_remix["files"]
    assert set(uploads) == DETAILED_FILES
    for name in ("remix.wav", "instrumental.wav", "vocals.wav"):
        samples, sample_rate, _ = decode_audio_bytes(uploads[name])
        assert samples.shape[0] / sample_rate == pytest.approx(seconds, abs=0.02), name
    assert uploads["remix.png"].startswith(b"\x89PNG\r\n\x1a\n")
    report = json.loads(uploads["analysis.json"])
    assert set(report) >= REPORT_KEYS, sorted(report)
    assert set(report["analysis"]) >= ANALYSIS_KEYS, sorted(report["analysis"])
    assert report["seed"] == 0
    assert report["analysis"]["duration"] == pytest.approx(seconds, abs=0.01)


def test_analysis_json_records_the_sync_decision(detailed_remix: dict[str, Any], song: tuple[Path, float]) -> None:
    """What beat sync decided and why, consistent with itself and with the song (remix.pipeline._write_extras)."""
    _, seconds = song
    report = json.loads(detailed_remix["files"]["analysis.json"])
    sync = report["sync"]
    assert set(sync) >= SYNC_KEYS, sorted(sync)
    assert sync["threshold_s"] == 0.75  # the seed's default beat_sync_threshold, in seconds
    assert sync["decision"] in ("synced", "unsynced")
    assert (sync["decision"] == "synced") == (sync["skipped_reason"] is None), sync["skipped_reason"]
    generated = report["generated_downbeats"]
    assert all(t >= 0 for t in generated) and generated == sorted(generated)
    matched = np.array(sync["matched"]).reshape(-1, 2)
    assert set(sync["unmatched"]) <= set(generated)
    assert set(matched[:, 0]) <= set(generated)  # pairs start from the take's own downbeats
    assert len(matched) + len(sync["unmatched"]) == len(generated)
    if len(matched):
        song_downbeats = report["analysis"]["downbeats"]
        assert np.all(np.diff(matched, axis=0) > 0)  # monotonic in both timelines
        np.testing.assert_allclose(sync["offsets_s"], matched[:, 1] - matched[:, 0])
        assert all(abs(r) <= sync["threshold_s"] for r in sync["residuals_s"])
        # Song downbeats, moved by at most REFINE_S (30 ms) onto the song's onsets.
        assert all(min(abs(t - d) for d in song_downbeats) < 0.05 for t in matched[:, 1])
        anchors = np.array(sync["anchors"])
        assert anchors.shape[0] >= 2 and np.all(np.diff(anchors, axis=0) > 0)
        assert 0.0 in anchors[0] and anchors[-1, 1] <= seconds + 0.01
        ratios = np.diff(anchors[:, 1]) / np.diff(anchors[:, 0])
        assert np.all((ratios >= 1 / MAX_STRETCH - 1e-6) & (ratios <= MAX_STRETCH + 1e-6)), ratios
        alignment = sync["alignment"]
        assert isinstance(alignment["bar_shift"], int)
        assert 1 / MAX_STRETCH <= alignment["tempo_ratio"] <= MAX_STRETCH
        # Both takes were measured against the song, and the one kept is the one that agreed more.
        before, after = sync["agreement_before"], sync["agreement_after"]
        assert isinstance(before, float) and isinstance(after, float)
        if sync["decision"] == "synced":
            assert after >= before
        else:
            assert after < before and "agreed less" in sync["skipped_reason"]
    else:
        assert sync["decision"] == "unsynced" and sync["anchors"] == []


def test_a_prompt_with_dollar_signs_is_plain_text_in_the_plot(detailed_server: CogServer, receiver: Receiver,
                                                              song: tuple[Path, float]) -> None:
    """matplotlib reads ``$...$`` in a title as mathtext, on which ``$^$`` fails: the whole remix failed at its
    last step. The prompt is text."""
    path, _ = song
    response = detailed_server.predict({**REMIX, "prompt": "money $$ and $^$", "music_input":
                                        data_uri(path.read_bytes())}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", f"{body.get('error')}\n{body.get('logs')}"
    files = uploaded(receiver, body["id"])
    assert set(files) == DETAILED_FILES
    assert files["remix.png"].startswith(b"\x89PNG\r\n\x1a\n")


# ----------------------------------------------------------------------------------------------------
# Hostile numbers (issue 11): JSON's non-finite literals for the remix's own float inputs


@pytest.mark.parametrize("field", ["beat_sync_threshold", "chroma_coefficient"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_non_finite_numbers_are_refused_naming_the_field(detailed_server: CogServer, field: str,
                                                          literal: str) -> None:
    """JSON has no NaN or Infinity (and 1e309 overflows a double): the server refuses the body (400) naming the
    input, without echoing the value back. ``test_hostile_inputs`` checks the same on the remix entrypoint."""
    response = requests.post(f"{detailed_server.url}/predictions", timeout=60,
                             data=f'{{"input": {{"prompt": "calm piano", "{field}": {literal}}}}}'.encode(),
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert f"input.{field}" in response.text
    assert literal.lstrip("-") not in response.text
    assert detailed_server.wait_status("READY") == "READY"


# ----------------------------------------------------------------------------------------------------
# Busy and cancel


def test_busy_while_remixing_and_409_for_a_second_prediction(detailed_server: CogServer, receiver: Receiver,
                                                             long_song: str) -> None:
    prediction_id = new_id()
    response = detailed_server.predict_async({**REMIX, "music_input": long_song}, prediction_id=prediction_id,
                                             webhook=receiver.webhook_url)
    assert response.status_code == 202, response.text
    try:
        detailed_server.wait_log("separation: 1/", prediction_id=prediction_id, timeout=60)
        assert detailed_server.health()["status"] == "BUSY"
        second = detailed_server.predict({**REMIX, "music_input": long_song}, timeout=30, retry_busy=False)
        assert second.status_code == 409, second.text
        assert "busy" in second.json()["error"]
        also_async = detailed_server.predict_async({**REMIX, "music_input": long_song}, prediction_id=new_id(),
                                                   webhook=receiver.webhook_url, retry_busy=False)
        assert also_async.status_code == 409, also_async.text
    except BaseException:
        detailed_server.cancel(prediction_id)
        receiver.wait_terminal(prediction_id, timeout=30)
        raise
    # The detailed remix is canceled as promptly as the remix (whose stages are each checked below).
    cancel_within_a_second(detailed_server, receiver, prediction_id)


def cancel_within_a_second(server: CogServer, receiver: Receiver, prediction_id: str) -> dict:
    """Cancel ``prediction_id`` now; it must be ``canceled`` within a second, leaving no request directory, no
    stretch directory and no rubberband process, and the server READY. Returns the final webhook body."""
    canceled_at = time.monotonic()
    assert server.cancel(prediction_id).status_code == 200
    final = receiver.wait_terminal(prediction_id, timeout=30)
    assert final.body["status"] == "canceled", final.body
    assert final.at - canceled_at < 1.0, f"canceled after {final.at - canceled_at:.2f} s"
    assert final.body.get("output") is None
    assert server.wait_status("READY", timeout=5) == "READY"
    assert server.request_dirs() == []  # musicgen-remix-*: the request's and the stretch's directories
    assert server.children_running("rubberband") == []
    return final.body


def test_cancel_during_separation_within_a_second(remix_server: CogServer, receiver: Receiver,
                                                  files: FileServer) -> None:
    """A 2-minute song takes the tiny separator several seconds: the cancel lands in the middle of it."""
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal((44100 * 120, 2))).astype(np.float32)
    url = files.add("/long-noise.wav", audio_bytes(noise, 44100))
    prediction_id = new_id()
    response = remix_server.predict_async({**REMIX, "music_input": url}, prediction_id=prediction_id,
                                          webhook=receiver.webhook_url)
    assert response.status_code == 202, response.text
    remix_server.wait_log("separation: 1/", prediction_id=prediction_id, timeout=60)
    final = cancel_within_a_second(remix_server, receiver, prediction_id)
    assert "separated" not in (final.get("logs") or "")  # it stopped inside the separation


Wait = Callable[["CogServer", Receiver, str], None]


def _stage_started(name: str) -> Wait:
    def wait(server: CogServer, receiver: Receiver, prediction_id: str) -> None:
        server.wait_log(f"{name}: 0/1 steps", prediction_id=prediction_id, timeout=120)
        time.sleep(0.5)  # well inside the stage (seconds long for this song)
    return wait


def _generating(server: CogServer, receiver: Receiver, prediction_id: str) -> None:
    server.wait_log("generate: 1/", prediction_id=prediction_id, timeout=120)


def _stretch_running(server: CogServer) -> bool:
    """Whether the rubberband program is stretching (``--timemap``; not the ``--help`` probe of its engines)."""
    for pid in server.children_running("rubberband"):
        try:
            if b"--timemap" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return True
        except OSError:
            continue
    return False


def _stretching(server: CogServer, receiver: Receiver, prediction_id: str) -> None:
    deadline = time.monotonic() + 180
    while not _stretch_running(server):
        assert time.monotonic() < deadline, "the rubberband program never ran"
        ended = [hook.body for hook in receiver.hooks_for(prediction_id) if hook.body["status"] in TERMINAL]
        assert not ended, f"the remix ended before its stretch: {ended[0].get('logs')}"
        time.sleep(0.01)
    time.sleep(0.2)


def _generation_not_finished(logs: str) -> bool:
    total = re.search(r"generate: 1/(\d+) steps", logs)
    return total is not None and f"generate: {total[1]}/{total[1]}" not in logs


# (stage, extra inputs, wait until the stage runs, the stage did not finish judged from the final logs)
CANCEL_STAGES: dict[str, tuple[dict, Wait, Callable[[str], bool]]] = {
    "beat tracking": ({}, _stage_started("beats and tempo"), lambda logs: "beats and tempo: 1/1" not in logs),
    "chord recognition": ({}, _stage_started("chords"), lambda logs: "chords: 1/1" not in logs),
    # Given chords skip recognition: the later stages are reached sooner.
    "generation": ({"chords": "C Am F G"}, _generating, _generation_not_finished),
    # A generous threshold pairs the tiny model's downbeats with the song's, so the take is stretched.
    "beat-sync stretch": ({"chords": "C Am F G", "beat_sync_threshold": 2.0}, _stretching,
                          lambda logs: "beat sync: 1/1" not in logs and "beat sync: 0/1" in logs),
}


@pytest.mark.parametrize("stage", list(CANCEL_STAGES))
def test_cancel_during_a_stage_of_a_remix_within_a_second(remix_server: CogServer, receiver: Receiver,
                                                          long_song: str, stage: str) -> None:
    """Cog cancels by raising an exception into the prediction's thread, which lands only while Python bytecode
    runs: every stage returns to Python often enough (madmom's Viterbi and the rubberband program run in child
    processes that are killed)."""
    extra, wait_for_stage, unfinished = CANCEL_STAGES[stage]
    prediction_id = new_id()
    response = remix_server.predict_async({**REMIX, "music_input": long_song, **extra},
                                          prediction_id=prediction_id, webhook=receiver.webhook_url)
    assert response.status_code == 202, response.text
    try:
        wait_for_stage(remix_server, receiver, prediction_id)
    except BaseException:
        remix_server.cancel(prediction_id)
        receiver.wait_terminal(prediction_id, timeout=60)
        raise
    final = cancel_within_a_second(remix_server, receiver, prediction_id)
    logs = final.get("logs") or ""
    assert unfinished(logs), f"the cancel did not land inside the {stage}:\n{logs[-3000:]}"
