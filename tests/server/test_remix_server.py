"""RemixPredictor and RemixDetailedPredictor over HTTP: schema parity with the seed (sakemin/musicgen-remixer)
and real remixes of a rendered song given as a data URI.

The seed's published schema is the contract: every input it lists must exist here with the same type,
default and range, and ``RemixPredictor``'s output must stay a URI. ``RemixDetailedPredictor`` returns
every product as named outputs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import requests
import soundfile

from .helpers import (
    REPO,
    data_uri,
    decode_audio_bytes,
    decode_audio_uri,
    decode_data_uri,
    parse_seed_inputs,
    schema_problems,
)

if TYPE_CHECKING:
    from .conftest import CogServer, StartServer

pytestmark = pytest.mark.server

SEED_SCHEMA = REPO.parent / "shared" / "seeds" / "000_c2f572efc04d5f42.txt"
REPORT_KEYS = {"analysis", "seed", "sync", "generated_downbeats", "mix"}
ANALYSIS_KEYS = {"duration", "sample_rate", "bpm", "beats", "downbeats", "chords", "meter"}
# top_k well inside the tiny chord models' codebooks; a fixed seed for repeatable runs.
REMIX = {"prompt": "bossa nova, nylon guitar", "seed": 0, "top_k": 50}


@pytest.fixture(scope="module")
def remix_server(cog_servers: StartServer) -> CogServer:
    return cog_servers("RemixPredictor")


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, float]:
    """A rendered 4-bar song at 120 bpm (8 s of music plus the synth's release), as a data URI, and its length."""
    from fixtures.songs import have_fluidsynth, render_song

    if not have_fluidsynth():
        pytest.skip("fluidsynth and the GM soundfont are needed to render the test song")
    path = tmp_path_factory.mktemp("song") / "song.wav"
    render_song(path, progression=["C:maj", "A:min", "F:maj", "G:maj"], bars=4, bpm=120.0)
    seconds = soundfile.info(str(path)).duration
    assert 8.0 <= seconds <= 12.0, seconds
    return data_uri(path.read_bytes()), seconds


def test_openapi_matches_the_seed_schema(remix_server: CogServer) -> None:
    assert SEED_SCHEMA.is_file(), f"seed schema missing: {SEED_SCHEMA}"
    seed_inputs, seed_output = parse_seed_inputs(SEED_SCHEMA.read_text(encoding="utf-8"))
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


def test_sync_remix_returns_audio_of_the_song_length(remix_server: CogServer, song: tuple[str, float]) -> None:
    uri, seconds = song
    response = remix_server.predict({**REMIX, "music_input": uri}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", f"{body.get('error')}\n{body.get('logs')}"
    samples, sample_rate, container = decode_audio_uri(body["output"])
    assert container == "WAV"
    assert samples.shape[0] / sample_rate == pytest.approx(seconds, abs=0.02)
    assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
    assert "seed: 0" in body["logs"] or "seed=0" in body["logs"], body["logs"]
    assert remix_server.health()["status"] == "READY"


def test_detailed_remix_returns_every_product(cog_servers: StartServer, song: tuple[str, float]) -> None:
    server = cog_servers("RemixDetailedPredictor")
    openapi = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    schemas = openapi["components"]["schemas"]
    output_schema = schemas["Output"]
    if "$ref" in output_schema:  # a BaseModel output is a reference to its own schema
        output_schema = schemas[output_schema["$ref"].rsplit("/", 1)[-1]]
    assert set(output_schema["properties"]) == {"mix", "instrumental", "vocals", "analysis", "plot"}
    assert all(prop.get("format") == "uri" for prop in output_schema["properties"].values()), output_schema

    uri, seconds = song
    response = server.predict({**REMIX, "music_input": uri}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", f"{body.get('error')}\n{body.get('logs')}"
    output = body["output"]
    assert set(output) == {"mix", "instrumental", "vocals", "analysis", "plot"}
    for name in ("mix", "instrumental", "vocals"):
        mime, payload = decode_data_uri(output[name])
        assert mime.startswith("audio/"), (name, mime)
        samples, sample_rate, _ = decode_audio_bytes(payload)
        assert samples.shape[0] / sample_rate == pytest.approx(seconds, abs=0.02), name
    mime, payload = decode_data_uri(output["plot"])
    assert mime == "image/png" and payload.startswith(b"\x89PNG\r\n\x1a\n")
    mime, payload = decode_data_uri(output["analysis"])
    assert mime == "application/json"
    report = json.loads(payload)
    assert set(report) >= REPORT_KEYS, sorted(report)
    assert set(report["analysis"]) >= ANALYSIS_KEYS, sorted(report["analysis"])
    assert report["seed"] == 0
    assert report["analysis"]["duration"] == pytest.approx(seconds, abs=0.01)
