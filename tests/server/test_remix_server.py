"""The remix entrypoints over HTTP, against the real current server (coglet): schema parity with the seed
(sakemin/musicgen-remixer), real remixes of a rendered song, every product of the detailed remix uploaded,
and a cancel during separation.

The seed's published schema is the contract: every input it lists must exist here with the same type,
default and range, and the remix's output must stay one URI.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import requests
import soundfile

from fixtures.audio import audio_bytes, data_uri, decode_audio_bytes, decode_audio_uri
from fixtures.peers import FileServer, Receiver
from musicgen_remix.serve import schema_path

from .levels import assert_default_loudness
from .seeds import REMIX_SEED, parse_seed_inputs, schema_problems

if TYPE_CHECKING:
    from fixtures.cogserver import CogServer

    from .conftest import StartServer

pytestmark = [pytest.mark.server, pytest.mark.slow]  # each module starts real servers (8-15 s each)

REPORT_KEYS = {"analysis", "seed", "sync", "generated_downbeats", "mix"}
ANALYSIS_KEYS = {"duration", "sample_rate", "bpm", "beats", "downbeats", "chords", "meter"}
# top_k well inside the tiny chord models' codebooks; a fixed seed for repeatable runs.
REMIX = {"prompt": "bossa nova, nylon guitar", "seed": 0, "top_k": 50}
DETAILED_FILES = {"remix.wav", "instrumental.wav", "vocals.wav", "analysis.json", "remix.png"}


@pytest.fixture(scope="module")
def remix_server(cog_servers: StartServer) -> CogServer:
    return cog_servers("remix")


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


def test_openapi_matches_the_seed_and_the_committed_schema(remix_server: CogServer) -> None:
    seed_inputs, seed_output = parse_seed_inputs(REMIX_SEED.read_text(encoding="utf-8"))
    assert len(seed_inputs) == 12, sorted(seed_inputs)
    assert (seed_inputs["chroma_coefficient"].minimum, seed_inputs["chroma_coefficient"].maximum) == ("0.5", "2")

    openapi = requests.get(f"{remix_server.url}/openapi.json", timeout=10).json()
    problems = schema_problems(openapi, seed_inputs, file_inputs=("music_input",))
    assert not problems, "\n".join(problems)
    chroma = openapi["components"]["schemas"]["Input"]["properties"]["chroma_coefficient"]
    assert (chroma["minimum"], chroma["maximum"]) == (0.5, 2.0)
    output = openapi["components"]["schemas"]["Output"]
    assert output == {**output, **seed_output}, f"Output schema {output} does not contain {seed_output}"
    assert {k: output[k] for k in ("format", "type")} == {"format": "uri", "type": "string"}
    committed = json.loads(schema_path("remix").read_text(encoding="utf-8"))["components"]["schemas"]
    assert {k: openapi["components"]["schemas"][k] for k in ("Input", "Output")} == \
        {k: committed[k] for k in ("Input", "Output")}


def test_sync_remix_returns_audio_of_the_song_length(remix_server: CogServer, song: tuple[Path, float]) -> None:
    path, seconds = song
    response = remix_server.predict({**REMIX, "music_input": data_uri(path.read_bytes())}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", f"{body.get('error')}\n{body.get('logs')}"
    samples, sample_rate, container = decode_audio_uri(body["output"])
    assert container == "WAV"
    assert samples.shape[0] / sample_rate == pytest.approx(seconds, abs=0.02)
    assert_default_loudness(samples, sample_rate)
    assert "seed: 0" in body["logs"] or "seed=0" in body["logs"], body["logs"]
    for stage in ("separation: ", "beats and tempo: 1/1", "chords: 1/1", "generate: ", "beat sync: 1/1"):
        assert stage in body["logs"], stage  # progress of every long stage reaches the logs
    assert remix_server.wait_status("READY") == "READY"


def test_a_server_side_path_is_refused_for_music_input(remix_server: CogServer) -> None:
    body = remix_server.predict({**REMIX, "music_input": "/etc/hostname"}).json()
    assert body["status"] == "failed"
    assert "InputError: music_input='/etc/hostname' is not allowed: a URL of the file" in body["error"]


def test_detailed_remix_uploads_every_product(cog_servers: StartServer, receiver: Receiver,
                                              song: tuple[Path, float]) -> None:
    server = cog_servers("remix-detailed", upload_url=receiver.upload_url)
    openapi = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    assert openapi["components"]["schemas"]["Output"] == {
        "items": {"format": "uri", "type": "string"}, "title": "Output", "type": "array"}

    path, seconds = song
    prediction_id = f"test-{uuid.uuid4().hex}"
    response = server.predict_async({**REMIX, "music_input": data_uri(path.read_bytes())},
                                    prediction_id=prediction_id, webhook=receiver.webhook_url)
    assert response.status_code == 202, response.text
    final = receiver.wait_terminal(prediction_id, timeout=300).body
    assert final["status"] == "succeeded", f"{final.get('error')}\n{final.get('logs')}"
    # Every product is uploaded (none inlined): a list of URLs, in upload-completion order, named by content.
    output = final["output"]
    assert isinstance(output, list) and all(url.startswith(receiver.base) for url in output), output
    names = {url.rsplit("/", 1)[-1] for url in output}
    assert names == DETAILED_FILES
    uploads = {upload.path.rsplit("/", 1)[-1]: upload.body for upload in receiver.uploads
               if upload.path.rsplit("/", 1)[-1] in DETAILED_FILES}
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


def test_cancel_during_separation_within_a_second(remix_server: CogServer, receiver: Receiver,
                                                  files: FileServer) -> None:
    """A 2-minute song takes the tiny separator several seconds: the cancel lands in the middle of it."""
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal((44100 * 120, 2))).astype(np.float32)
    url = files.add("/long-song.wav", audio_bytes(noise, 44100))
    prediction_id = f"test-{uuid.uuid4().hex}"
    response = remix_server.predict_async({**REMIX, "music_input": url}, prediction_id=prediction_id,
                                          webhook=receiver.webhook_url)
    assert response.status_code == 202, response.text
    receiver.wait_for(prediction_id, lambda body: "separation: 1/" in (body.get("logs") or ""), timeout=60)
    canceled_at = time.monotonic()
    assert remix_server.cancel(prediction_id).status_code == 200
    final = receiver.wait_terminal(prediction_id, timeout=10)
    assert final.body["status"] == "canceled", final.body
    assert final.at - canceled_at < 1.0, f"canceled after {final.at - canceled_at:.2f} s"
    assert "separated" not in (final.body.get("logs") or "")  # it stopped inside the separation
    assert remix_server.wait_status("READY", timeout=5) == "READY"
    assert remix_server.request_dirs() == []
