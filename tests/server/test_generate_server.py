"""GeneratePredictor over HTTP: schema parity with the seed (fofr/musicgen-mario), predictions, errors.

The seed's published schema is the contract: every input it lists must exist here with the same
type and default, and the output must stay a URI.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import requests

from .helpers import SAMPLE_RATE, SEED_TYPES, decode_audio_uri, parse_seed_schema, seed_default, sine, wav_data_uri

if TYPE_CHECKING:
    from .conftest import CogServer

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[2]
# The seeds live beside the checkout (../shared/seeds), locally and in CI.
SEED_SCHEMA = REPO.parent / "shared" / "seeds" / "001_f6ab1c917d75fb64.txt"


def succeeded(server: CogServer, inputs: dict) -> dict:
    response = server.predict(inputs)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", (
        f"prediction failed: {body.get('error')}\nlogs:\n{body.get('logs')}\nserver:\n{server.log_tail()}")
    return body


def test_coglet_is_not_installed() -> None:
    assert importlib.util.find_spec("coglet") is None, (
        "coglet is importable: cog 0.16.12 would silently hand the server over to it")


def test_health_check_is_ready_after_setup(cog_server: CogServer) -> None:
    health = cog_server.health()
    assert health["status"] == "READY"
    assert health["setup"]["status"] == "succeeded", health["setup"].get("logs")


def test_openapi_matches_the_seed_schema(cog_server: CogServer) -> None:
    assert SEED_SCHEMA.is_file(), f"seed schema missing: {SEED_SCHEMA}"
    seed_inputs, seed_output = parse_seed_schema(SEED_SCHEMA.read_text(encoding="utf-8"))
    assert len(seed_inputs) == 15, sorted(seed_inputs)

    openapi = requests.get(f"{cog_server.url}/openapi.json", timeout=10).json()
    schemas = openapi["components"]["schemas"]
    properties = schemas["Input"]["properties"]
    problems: list[str] = []
    for name, (seed_type, default_text) in seed_inputs.items():
        prop = properties.get(name)
        if prop is None:
            problems.append(f"{name}: missing from the Input schema")
            continue
        kind = SEED_TYPES[seed_type]
        if kind == "enum":
            ref = prop["allOf"][0]["$ref"].rsplit("/", 1)[-1] if "allOf" in prop else None
            enum = schemas.get(ref, {}) if ref else prop
            if enum.get("type") != "string" or "enum" not in enum:
                problems.append(f"{name}: expected a string enum (choices), got {prop}")
            elif default_text is not None and default_text not in enum["enum"]:
                problems.append(f"{name}: default {default_text!r} is not one of {enum['enum']}")
        elif prop.get("type") != kind:
            problems.append(f"{name}: type {prop.get('type')!r}, seed has {kind!r}")
        if name == "input_audio" and prop.get("format") != "uri":
            problems.append(f"{name}: expected format 'uri' (a file input), got {prop}")
        expected = None if default_text is None else seed_default(kind, default_text)
        if prop.get("default") != expected:
            problems.append(f"{name}: default {prop.get('default')!r}, seed has {expected!r}")
    assert not problems, "\n".join(problems)

    output = schemas["Output"]
    assert output == {**output, **seed_output}, f"Output schema {output} does not contain {seed_output}"
    assert output["type"] == "string" and output["format"] == "uri"


def test_sync_prediction_returns_a_wav_data_uri(cog_server: CogServer) -> None:
    body = succeeded(cog_server, {"prompt": "calm piano", "duration": 2, "seed": 0})
    samples, sample_rate, container = decode_audio_uri(body["output"])
    assert container == "WAV"
    assert sample_rate == SAMPLE_RATE
    assert samples.shape[0] / sample_rate == pytest.approx(2.0, abs=0.005)
    assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
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
    assert body["error"].startswith(f"{field}="), body["error"]
    # The server survives the error and serves the next request.
    assert cog_server.health()["status"] == "READY"
    follow_up = succeeded(cog_server, {"prompt": "calm piano", "duration": 1, "seed": 0})
    assert decode_audio_uri(follow_up["output"])[1] == SAMPLE_RATE

