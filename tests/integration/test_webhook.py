"""A job with a callback_url gets a signed POST when it finishes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.live import LiveStack
from workers.domain.errors import InvalidSpec


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []  # noqa: RUF012

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def _independent_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    """Standard Webhooks, computed here from the spec rather than with vidqueue's code."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_a_finished_job_posts_a_signed_webhook(idle_stack: LiveStack, receiver: str) -> None:
    live = idle_stack
    spec = {
        "provider": "zhipu",
        "model": "cogvideox-flash",
        "prompt": "x",
        "callback_url": receiver,
    }
    job = live.client.enqueue(spec)
    live.wait_all([job.id])
    deadline = time.monotonic() + 20
    while not Receiver.received and time.monotonic() < deadline:
        time.sleep(0.1)
    [(headers, body)] = Receiver.received
    assert headers["webhook-signature"] == _independent_signature(
        live.settings.webhook_secret, headers, body
    )
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    event = json.loads(body)
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job.id
    assert event["data"]["result"]["video"]["key"].endswith(f"{job.id}/video.mp4")
    assert any(e["event"] == "webhook delivered" for e in live.client.events(job.id))


def test_a_webhook_to_a_host_name_goes_to_its_checked_address_with_the_host_header(
    idle_stack: LiveStack, receiver: str
) -> None:
    # Given a callback URL naming a host (localhost: loopback, allowed on the test stack)
    live = idle_stack
    url = receiver.replace("127.0.0.1", "localhost")
    spec = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "x", "callback_url": url}
    job = live.client.enqueue(spec)
    live.wait_all([job.id])
    deadline = time.monotonic() + 20
    while not Receiver.received and time.monotonic() < deadline:
        time.sleep(0.1)
    # Then the worker connected to the resolved address, and said which host it meant
    [(headers, _)] = Receiver.received
    assert headers["host"] == url.removeprefix("http://").removesuffix("/hook")
    assert headers["connection"] == "close"


@pytest.mark.parametrize(
    "url",
    ["http://224.0.0.1:9/hook", "http://0.0.0.0:9/hook", "http://[ff02::1]:9/hook"],
)
def test_private_callbacks_allowed_never_lets_multicast_or_unspecified_through(
    idle_stack: LiveStack, url: str
) -> None:
    live = idle_stack
    assert live.settings.allow_private_callbacks
    spec = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "x", "callback_url": url}
    with pytest.raises(InvalidSpec) as refused:
        live.client.enqueue(spec)
    assert refused.value.field == "callback_url"
    assert "never allowed" in refused.value.message
