"""The generate entrypoint over HTTP: schema parity with the seed (fofr/musicgen-mario), predictions, errors.

The seed's published schema is the contract: every input it lists must exist here with the same
type and default, and the output must stay a URI.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import requests

from fixtures.audio import SAMPLE_RATE, decode_audio_uri, sine, wav_data_uri
from musicgen_remix.serve import schema_path

from .levels import assert_default_loudness
from .seeds import GENERATE_SEED, parse_seed_inputs, schema_problems

if TYPE_CHECKING:
    from fixtures.cogserver import CogServer

pytestmark = [pytest.mark.server, pytest.mark.slow]  # each module starts real servers (8-15 s each)


def succeeded(server: CogServer, inputs: dict) -> dict:
    response = server.predict(inputs)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", (
        f"prediction failed: {body.get('error')}\nlogs:\n{body.get('logs')}\nserver:\n{server.log_tail()}")
    return body


def test_health_check_is_ready_after_setup(cog_server: CogServer) -> None:
    health = cog_server.health()
    assert health["status"] == "READY"
    assert health["setup"]["status"] == "succeeded", health["setup"].get("logs")
    assert health["version"]["python_sdk"] == "0.23.1", health["version"]
    assert "ready: default model melody" in health["setup"]["logs"]


def test_the_server_validates_with_the_committed_schema(cog_server: CogServer) -> None:
    served = requests.get(f"{cog_server.url}/openapi.json", timeout=10).json()
    committed = json.loads(schema_path("generate").read_text(encoding="utf-8"))
    for name in ("Input", "Output"):
        assert served["components"]["schemas"][name] == committed["components"]["schemas"][name], name


def test_openapi_matches_the_seed_schema(cog_server: CogServer) -> None:
    seed_inputs, seed_output = parse_seed_inputs(GENERATE_SEED.read_text(encoding="utf-8"))
    assert len(seed_inputs) == 15, sorted(seed_inputs)
    openapi = requests.get(f"{cog_server.url}/openapi.json", timeout=10).json()
    problems = schema_problems(openapi, seed_inputs, file_inputs=("input_audio",))
    assert not problems, "\n".join(problems)
    output = openapi["components"]["schemas"]["Output"]
    assert output == {**output, **seed_output}, f"Output schema {output} does not contain {seed_output}"
    assert output["type"] == "string" and output["format"] == "uri"


def test_sync_prediction_returns_a_wav_data_uri(cog_server: CogServer) -> None:
    body = succeeded(cog_server, {"prompt": "calm piano", "duration": 2, "seed": 0})
    samples, sample_rate, container = decode_audio_uri(body["output"])
    assert container == "WAV"
    assert sample_rate == SAMPLE_RATE
    assert samples.shape[0] / sample_rate == pytest.approx(2.0, abs=0.005)
    assert_default_loudness(samples, sample_rate)
    assert "seed=0" in body["logs"], body["logs"]  # 0 is a seed, not "random"


def test_same_seed_gives_the_same_audio(cog_server: CogServer) -> None:
    inputs = {"prompt": "calm piano", "duration": 1, "seed": 1234}
    first = succeeded(cog_server, inputs)["output"]
    second = succeeded(cog_server, inputs)["output"]
    assert first == second


def test_continuation_of_a_data_uri_input(cog_server: CogServer) -> None:
    source = sine(2.0)
    body = succeeded(cog_server, {
        "prompt": "calm piano", "input_audio": wav_data_uri(source, SAMPLE_RATE), "continuation": True,
        "continuation_end": 1, "duration": 3, "seed": 0})
    samples, sample_rate, _ = decode_audio_uri(body["output"])
    assert sample_rate == SAMPLE_RATE
    assert samples.shape[0] / sample_rate == pytest.approx(3.0, abs=0.005)
    # The output starts with the caller's own first second (up to normalisation gain).
    head = slice(0, int(0.9 * SAMPLE_RATE))
    correlation = np.corrcoef(samples[head], source[head])[0, 1]
    assert correlation > 0.99, correlation


@pytest.mark.parametrize(("field", "value"), [
    ("top_p", 2),
    ("duration", 0),
    ("duration", 301),
    ("normalization_strategy", "loud"),
    ("output_format", "ogg"),
    ("model_version", "huge"),
    ("seed", "seven"),
    ("continuation", "yes"),
])
def test_out_of_contract_inputs_get_422(cog_server: CogServer, field: str, value: object) -> None:
    response = cog_server.predict({"prompt": "calm piano", "duration": 1, field: value})
    assert response.status_code == 422, response.text
    locations = [error["loc"] for error in response.json()["detail"]]
    assert ["body", "input", field] in [list(loc) for loc in locations], locations


@pytest.mark.parametrize(("inputs", "field"), [
    ({"prompt": "calm piano", "top_k": 1000}, "top_k"),  # the tiny models' codebooks hold 256 tokens
    ({"prompt": "calm piano", "model_version": "small", "input_audio": "melody"}, "input_audio"),
    ({"prompt": "calm piano", "continuation": True}, "input_audio"),
])
def test_model_level_input_error_fails_the_prediction_only(
        cog_server: CogServer, inputs: dict, field: str) -> None:
    if inputs.get("input_audio") == "melody":
        inputs = {**inputs, "input_audio": wav_data_uri(sine(1.0), SAMPLE_RATE)}
    response = cog_server.predict({"duration": 1, "seed": 0, **inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed", body
    # The current Cog runtime prefixes every error with "Prediction failed: " twice, then the type.
    assert f"InputError: {field}=" in body["error"], body["error"]
    # The server survives the error and serves the next request.
    assert cog_server.wait_status("READY") == "READY"
    follow_up = succeeded(cog_server, {"prompt": "calm piano", "duration": 1, "seed": 0})
    assert decode_audio_uri(follow_up["output"])[1] == SAMPLE_RATE

