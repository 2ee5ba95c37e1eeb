"""What the server around the entrypoints (coglet 0.23.1) does with hostile peers, recorded on the real thing.

These are Cog's behaviours, not the project's: each test pins down what happens today, so that the README's
deployment advice stays true and a Cog upgrade that changes any of it is noticed. Where the project can
mitigate, the test checks the mitigation.

- A URL input is downloaded before ``run()``: a host that trickles bytes holds the single slot, and a cancel
  sent meanwhile only takes effect once the download ends (the prediction is then canceled, not run).
- A webhook receiver that never answers does not freeze the server (coglet sends webhooks from their own
  tasks, with a 30 s timeout).
- ``WEBHOOK_AUTH_TOKEN`` is sent as a bearer token to whatever webhook URL a caller names; ``serve`` warns
  when it is set.
- A ``Content-Encoding: gzip`` input is inflated to disk with no cap of Cog's (the entrypoints' length caps
  apply only when they read it).
"""

from __future__ import annotations

import gzip
import time
import uuid
from typing import TYPE_CHECKING

import numpy as np
import pytest

from fixtures.audio import SAMPLE_RATE, audio_bytes, sine
from fixtures.peers import FileServer, Pace, Receiver, SilentPort

if TYPE_CHECKING:
    from .conftest import StartServer

pytestmark = [pytest.mark.server, pytest.mark.slow]  # each module starts real servers (8-15 s each)

REMIX = {"prompt": "bossa nova", "seed": 0, "top_k": 50}


def test_a_trickling_input_holds_the_slot_and_a_cancel_waits_for_the_download(cog_servers: StartServer,
                                                                              receiver: Receiver) -> None:
    server = cog_servers("remix")
    with FileServer(validators=False) as slow:
        url = slow.add("/song.wav", audio_bytes(sine(8.0, 16000), 16000),
                       pace=Pace(chunk=16, interval=0.25, max_s=4.0))
        prediction_id = f"test-{uuid.uuid4().hex}"
        started = time.monotonic()
        response = server.predict_async({**REMIX, "music_input": url}, prediction_id=prediction_id,
                                        webhook=receiver.webhook_url)
        assert response.status_code == 202, response.text
        time.sleep(1.0)
        assert server.health()["status"] == "BUSY"
        assert server.predict({**REMIX, "music_input": url}, retry_busy=False).status_code == 409
        server.cancel(prediction_id)
        final = receiver.wait_terminal(prediction_id, timeout=60)
    # The cancel took effect only after the peer hung up (about 4 s in), not within a second of it.
    assert final.at - started > 3.0
    assert final.body["status"] in ("canceled", "failed"), final.body
    assert server.wait_status("READY", timeout=10) == "READY"


def test_a_webhook_receiver_that_never_answers_does_not_freeze_the_server(cog_servers: StartServer) -> None:
    server = cog_servers("generate")
    silent = SilentPort()
    try:
        prediction_id = f"test-{uuid.uuid4().hex}"
        response = server.predict_async({"prompt": "calm piano", "duration": 1, "seed": 0},
                                        prediction_id=prediction_id, webhook=f"{silent.base}/hook")
        assert response.status_code == 202, response.text
        assert server.wait_status("READY", timeout=20) == "READY"
        started = time.monotonic()
        body = server.predict({"prompt": "calm piano", "duration": 1, "seed": 1}).json()
        assert body["status"] == "succeeded", body.get("error")
        assert time.monotonic() - started < 10.0
    finally:
        silent.close()


def test_webhook_auth_token_goes_to_the_callers_webhook(cog_servers: StartServer, receiver: Receiver) -> None:
    server = cog_servers("generate", env={"WEBHOOK_AUTH_TOKEN": "operator-secret"})
    prediction_id = f"test-{uuid.uuid4().hex}"
    response = server.predict_async({"prompt": "calm piano", "duration": 1, "seed": 0}, prediction_id=prediction_id,
                                    webhook=receiver.webhook_url)
    assert response.status_code == 202, response.text
    receiver.wait_terminal(prediction_id, timeout=60)
    auth = receiver.auth_for(prediction_id)
    assert auth == {"Bearer operator-secret"}, auth  # Cog's behaviour: see the README's deployment advice
    assert "WEBHOOK_AUTH_TOKEN is set" in server.log_tail(20_000)  # serve's warning


def test_a_gzip_encoded_input_is_inflated_by_cog(cog_servers: StartServer) -> None:
    """60 s of silence, about 10 KB gzipped: Cog writes the whole inflated file before run() reads it."""
    server = cog_servers("remix")
    silence = audio_bytes(np.zeros(60 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    packed = gzip.compress(silence)
    assert len(packed) * 100 < len(silence)
    with FileServer(validators=False) as peer:
        url = peer.add("/song.wav", packed, headers={"Content-Encoding": "gzip"})
        body = server.predict({**REMIX, "music_input": url}).json()
    assert body["status"] == "failed"
    assert "silent" in body["error"], body["error"]  # the inflated audio reached the entrypoint
    assert server.wait_status("READY") == "READY"
