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
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

import numpy as np
import pytest

from fixtures.audio import SAMPLE_RATE, audio_bytes, sine
from fixtures.peers import Receiver, SilentPort, _Peer

if TYPE_CHECKING:
    from .conftest import StartServer

pytestmark = pytest.mark.server

REMIX = {"prompt": "bossa nova", "seed": 0, "top_k": 50}


class _SlowBody(_Peer):
    """Serves ``body`` at any path, a few bytes every ``interval`` seconds, for at most ``seconds``."""

    def __init__(self, body: bytes, *, interval: float = 0.25, seconds: float = 6.0,
                 headers: dict[str, str] | None = None) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if interval == 0:
                    self.wfile.write(body)
                    return
                deadline = time.monotonic() + seconds
                for start in range(0, len(body), 16):
                    if time.monotonic() > deadline:
                        return  # hang up: the download ends, incomplete
                    self.wfile.write(body[start:start + 16])
                    self.wfile.flush()
                    time.sleep(interval)

        super().__init__(Handler)
        self.url = f"{self.base}/song.wav"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as peer:
        yield peer


def test_a_trickling_input_holds_the_slot_and_a_cancel_waits_for_the_download(cog_servers: StartServer,
                                                                              receiver: Receiver) -> None:
    server = cog_servers("remix")
    with _SlowBody(audio_bytes(sine(8.0, 16000), 16000), seconds=4.0) as slow:
        prediction_id = f"test-{uuid.uuid4().hex}"
        started = time.monotonic()
        response = server.predict_async({**REMIX, "music_input": slow.url}, prediction_id=prediction_id,
                                        webhook=receiver.webhook_url)
        assert response.status_code == 202, response.text
        time.sleep(1.0)
        assert server.health()["status"] == "BUSY"
        assert server.predict({**REMIX, "music_input": slow.url}, retry_busy=False).status_code == 409
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
    with _SlowBody(packed, interval=0, headers={"Content-Encoding": "gzip"}) as peer:
        body = server.predict({**REMIX, "music_input": peer.url}).json()
    assert body["status"] == "failed"
    assert "silent" in body["error"], body["error"]  # the inflated audio reached the entrypoint
    assert server.wait_status("READY") == "READY"
