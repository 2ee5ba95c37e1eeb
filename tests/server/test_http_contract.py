"""The Cog HTTP contract of the generate entrypoint, over HTTP only, against the real current server (coglet).

One server for the module, started with ``--upload-url`` pointing at a local receiver. Covered: the health
document (READY, BUSY), ``Prefer: respond-async`` with webhooks, idempotent ``PUT /predictions/{id}``, 409
while busy, output upload, file inputs as ``data:`` and ``http:`` URLs (and a server-side path refused),
and cancellation (``canceled`` within 1 s, the request's directory removed, the server READY and correct
afterwards).

Long predictions are ``duration=300`` on the tiny model (about 30 s of CPU): every test that starts one
cancels it as soon as it has seen what it needs.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import numpy as np
import pytest

from fixtures.audio import SAMPLE_RATE, audio_bytes, decode_audio_bytes, sine, wav_data_uri
from fixtures.peers import FileServer, Receiver

if TYPE_CHECKING:
    from fixtures.cogserver import CogServer

    from .conftest import StartServer

pytestmark = [pytest.mark.server, pytest.mark.slow]  # each module starts real servers (8-15 s each)

LONG = {"prompt": "calm piano", "duration": 300, "seed": 0}
SHORT = {"prompt": "calm piano", "duration": 2, "seed": 0}
TERMINAL = ("succeeded", "failed", "canceled")


@pytest.fixture(scope="module")
def server(cog_servers: StartServer, receiver: Receiver) -> CogServer:
    return cog_servers("generate", upload_url=receiver.upload_url)


def new_id() -> str:
    return f"test-{uuid.uuid4().hex}"


def has_steps(body: dict) -> bool:
    return body.get("status") == "processing" and "steps" in (body.get("logs") or "")


def start_long(server: CogServer, receiver: Receiver, *, idempotent: bool = False) -> str:
    """Start a long async prediction and return its id once its logs show generation steps."""
    prediction_id = new_id()
    response = server.predict_async(LONG, prediction_id=prediction_id, webhook=receiver.webhook_url,
                                    idempotent=idempotent)
    assert response.status_code == 202, response.text
    receiver.wait_for(prediction_id, has_steps, timeout=30)
    return prediction_id


def cancel_and_settle(server: CogServer, receiver: Receiver, prediction_id: str) -> None:
    server.cancel(prediction_id)
    receiver.wait_terminal(prediction_id, timeout=10)
    assert server.wait_status("READY", timeout=10) == "READY"


def test_health_check_is_ready_after_setup(server: CogServer) -> None:
    health = server.health()
    assert health["status"] == "READY", health
    assert health["setup"]["status"] == "succeeded", health["setup"].get("logs")


def test_busy_while_predicting_and_409_for_a_second_prediction(server: CogServer, receiver: Receiver) -> None:
    prediction_id = start_long(server, receiver)
    try:
        assert server.health()["status"] == "BUSY"
        second = server.predict(SHORT, timeout=30, retry_busy=False)
        assert second.status_code == 409, second.text
        assert "busy" in second.json()["error"]
        also_async = server.predict_async(SHORT, prediction_id=new_id(), webhook=receiver.webhook_url,
                                          retry_busy=False)
        assert also_async.status_code == 409, also_async.text
    finally:
        cancel_and_settle(server, receiver, prediction_id)


def test_idempotent_put_returns_the_running_prediction(server: CogServer, receiver: Receiver) -> None:
    prediction_id = start_long(server, receiver, idempotent=True)
    try:
        again = server.predict_async(LONG, prediction_id=prediction_id, webhook=receiver.webhook_url,
                                     idempotent=True)
        assert again.status_code == 202, again.text
        body = again.json()
        assert body["id"] == prediction_id
        assert body["status"] == "processing"
        assert body["input"] == LONG  # the same prediction, not a second one
        assert "steps" in (body.get("logs") or "")
    finally:
        cancel_and_settle(server, receiver, prediction_id)
    hooks = receiver.hooks_for(prediction_id)
    assert [hook.body["status"] for hook in hooks if hook.body["status"] in TERMINAL] == ["canceled"]


def test_async_prediction_sends_start_logs_and_completed_webhooks(server: CogServer, receiver: Receiver) -> None:
    prediction_id = new_id()
    inputs = {"prompt": "calm piano", "duration": 20, "seed": 3}  # a second or two: long enough for log events
    response = server.predict_async(inputs, prediction_id=prediction_id, webhook=receiver.webhook_url)
    assert response.status_code == 202, response.text
    assert response.json()["status"] in ("starting", "processing")
    final = receiver.wait_terminal(prediction_id, timeout=60).body
    assert final["status"] == "succeeded", final.get("error")
    hooks = [hook.body for hook in receiver.hooks_for(prediction_id)]
    # Events are sent from several tasks, so they may arrive out of order: no order is asserted.
    assert any(h["status"] == "processing" and h.get("output") is None for h in hooks)  # "start"
    assert any(h["status"] == "processing" and "steps" in (h.get("logs") or "") for h in hooks), (
        [h["status"] for h in hooks])  # "logs" events
    assert [h["status"] for h in hooks if h["status"] in TERMINAL] == ["succeeded"]  # one "completed" event
    assert all(final["logs"].startswith(h.get("logs") or "") for h in hooks)
    assert final["output"] == f"{receiver.base}/upload/output.wav"
    assert "seed=3" in final["logs"]
    assert server.wait_status("READY") == "READY"


def test_async_outputs_are_uploaded_to_the_upload_url(server: CogServer, receiver: Receiver) -> None:
    before = len(receiver.uploads)
    prediction_id = new_id()
    response = server.predict_async({**SHORT, "seed": 4}, prediction_id=prediction_id, webhook=receiver.webhook_url)
    assert response.status_code == 202, response.text
    final = receiver.wait_terminal(prediction_id, timeout=60).body
    assert final["status"] == "succeeded", final.get("error")
    uploads = receiver.uploads[before:]
    assert [upload.path for upload in uploads] == ["/upload/output.wav"]
    headers = {key.lower(): value for key, value in uploads[0].headers.items()}
    assert headers.get("x-prediction-id") == prediction_id
    assert headers.get("content-type") in ("audio/x-wav", "audio/wav")
    samples, sample_rate, container = decode_audio_bytes(uploads[0].body)
    assert (container, sample_rate) == ("WAV", SAMPLE_RATE)
    assert samples.shape[0] / sample_rate == pytest.approx(2.0, abs=0.005)
    assert final["output"] == receiver.base + "/upload/output.wav"


@pytest.mark.parametrize("kind", ["data", "http"])
def test_file_input_as_data_uri_or_http_url(server: CogServer, receiver: Receiver, files: FileServer,
                                            kind: str) -> None:
    source = sine(2.0, freq=330.0)
    if kind == "data":
        audio_input = wav_data_uri(source, SAMPLE_RATE)
    else:
        audio_input = files.add("/song.wav", audio_bytes(source, SAMPLE_RATE))
    prediction_id = new_id()
    response = server.predict_async({"prompt": "calm piano", "input_audio": audio_input, "continuation": True,
                                     "continuation_end": 1, "duration": 3, "seed": 0}, prediction_id=prediction_id,
                                    webhook=receiver.webhook_url)
    assert response.status_code == 202, response.text
    body = receiver.wait_terminal(prediction_id, timeout=60).body
    assert body["status"] == "succeeded", body.get("error")
    upload = next(u for u in reversed(receiver.uploads) if body["output"].endswith(u.path))
    samples, sample_rate, _ = decode_audio_bytes(upload.body)
    assert samples.shape[0] / sample_rate == pytest.approx(3.0, abs=0.005)
    head = slice(0, int(0.9 * SAMPLE_RATE))
    assert np.corrcoef(samples[head], source[head])[0, 1] > 0.99
    if kind == "http":
        assert files.gets("/song.wav") == (1, 0)
    # Cog removes its downloaded copy of the input once the prediction is done.
    assert not [name for name in server.tmp_entries() if name.endswith(("song.wav", "file.wav", ".wav", "file"))]


@pytest.mark.parametrize("path", ["/etc/passwd", "predict.py", "file:///etc/hostname"])
def test_a_server_side_path_is_never_read(server: CogServer, path: str) -> None:
    """Cog 0.23 hands a plain string for a file input to run() as it is: the entrypoint refuses it."""
    response = server.predict({"prompt": "calm piano", "input_audio": path, "duration": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert f"InputError: input_audio='{path}' is not allowed: a URL of the file" in body["error"], body["error"]


def test_cancel_stops_the_prediction_within_a_second(server: CogServer, receiver: Receiver) -> None:
    prediction_id = start_long(server, receiver)
    running_dirs = server.request_dirs()
    assert len(running_dirs) == 1
    canceled_at = time.monotonic()
    response = server.cancel(prediction_id)
    assert response.status_code == 200, response.text
    final = receiver.wait_terminal(prediction_id, timeout=10)
    assert final.body["status"] == "canceled", final.body
    assert final.at - canceled_at < 1.0, f"canceled after {final.at - canceled_at:.2f} s"
    assert final.body.get("output") is None
    assert server.wait_status("READY", timeout=5) == "READY"
    # The canceled request's directory is removed at once, not left for the next request.
    assert server.request_dirs() == []
    # The server is correct afterwards: a new prediction succeeds, identical to a fresh one.
    outputs = []
    for _ in range(2):
        fresh = new_id()
        assert server.predict_async(SHORT, prediction_id=fresh, webhook=receiver.webhook_url).status_code == 202
        body = receiver.wait_terminal(fresh, timeout=60).body
        assert body["status"] == "succeeded", body.get("error")
        assert "canceled" not in (body.get("logs") or "").lower()
        outputs.append(next(u.body for u in reversed(receiver.uploads) if body["output"].endswith(u.path)))
    assert outputs[0] == outputs[1]


def test_cancel_of_an_unknown_prediction_is_404(server: CogServer) -> None:
    assert server.cancel(new_id()).status_code == 404


def test_webhook_events_filter_sends_only_completed(server: CogServer, receiver: Receiver) -> None:
    prediction_id = new_id()
    response = server.predict_async(SHORT, prediction_id=prediction_id, webhook=receiver.webhook_url,
                                    events=["completed"])
    assert response.status_code == 202, response.text
    final = receiver.wait_terminal(prediction_id, timeout=60).body
    assert final["id"] == prediction_id and final["output"].endswith("/upload/output.wav")
    time.sleep(0.3)  # a late "processing" event would arrive now
    assert [hook.body["status"] for hook in receiver.hooks_for(prediction_id)] == ["succeeded"]
