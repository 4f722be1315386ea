"""Reusing a finished result, end to end on the live stack: through the HTTP API, against the
simulator's own count of submissions, with the mirrored objects downloaded from S3.

The lookup's rules case by case (window, failed original, a field differing, batches) are
tested on the unit tier (tests/unit/test_reuse.py); here: the real path, the metrics, the files
shared by two records, and what deleting either one does.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.support.api import AUTH, GOOD
from tests.support.live import LiveStack


def _post(live: LiveStack, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{live.api_url}/v1/jobs", json=body, headers=AUTH, timeout=10)
    assert answer.status_code == 202, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _get(live: LiveStack, path: str) -> httpx.Response:
    return httpx.get(f"{live.api_url}{path}", headers=AUTH, timeout=10)


def _submissions(live: LiveStack) -> int:
    return int(live.sim_stats()["submissions"])


def _finished_original(live: LiveStack) -> tuple[dict[str, Any], dict[str, Any]]:
    """A spec of its own (no other test makes its generation), and its job, succeeded."""
    spec = {**GOOD, "prompt": f"a lighthouse at dusk {uuid.uuid4().hex}"}
    first = _post(live, spec)
    [done] = live.wait_all([first["id"]])
    assert done.state == "succeeded"
    return spec, _get(live, f"/v1/jobs/{first['id']}").json()


def test_a_second_identical_spec_asking_for_reuse_succeeds_without_the_provider(
    idle_stack: LiveStack,
) -> None:
    live = idle_stack
    # Given a job that succeeded, and the simulator's count of paid submissions
    spec, original = _finished_original(live)
    paid = _submissions(live)
    # When an identical spec (other labels) asks for a result at most 10 minutes old
    second = _post(live, {**spec, "labels": {"team": "b"}, "reuse_within_s": 600})
    # Then the answer is already succeeded, a job of its own pointing at the same objects
    assert second["id"] != original["id"]
    assert (second["state"], second["reused_from"]) == ("succeeded", original["id"])
    for name in ("video", "cover"):
        mine, theirs = second["result"][name], original["result"][name]
        assert {k: v for k, v in mine.items() if k != "url"} == {
            k: v for k, v in theirs.items() if k != "url"
        }
    # And the provider was never asked (nothing queued for it either)
    time.sleep(1.0)
    assert _submissions(live) == paid
    # And its record says so on every read, and its video downloads with the original's sha256
    record = _get(live, f"/v1/jobs/{second['id']}").json()
    assert (record["state"], record["reused_from"]) == ("succeeded", original["id"])
    video = httpx.get(record["result"]["video"]["url"], timeout=30)
    assert hashlib.sha256(video.content).hexdigest() == original["result"]["video"]["sha256"]
    events = _get(live, f"/v1/jobs/{second['id']}/events").json()["events"]
    assert [e["state"] for e in events] == ["queued", "succeeded"]
    # And /metrics counts the reuse and what was mirrored
    metrics = httpx.get(f"{live.api_url}/metrics", timeout=10).text
    figures = {
        name: int(float(value))
        for name, _, value in (line.rpartition(" ") for line in metrics.splitlines())
        if name.endswith('{provider="zhipu"}')
    }
    assert figures['vidqueue_jobs_reused_total{provider="zhipu"}'] >= 1
    assert figures['vidqueue_mirrored_objects_total{provider="zhipu"}'] >= 2
    assert (
        figures['vidqueue_mirrored_bytes_total{provider="zhipu"}']
        >= original["result"]["video"]["size"]
    )


def test_not_asked_or_another_generation_pays_for_a_new_one(idle_stack: LiveStack) -> None:
    live = idle_stack
    spec, _ = _finished_original(live)
    paid = _submissions(live)
    # When the same spec comes without asking, and another prompt comes asking
    plain = _post(live, spec)
    other = _post(live, {**spec, "prompt": spec["prompt"] + "!", "reuse_within_s": 600})
    # Then both are generated: two more submissions, no reused_from
    done = live.wait_all([plain["id"], other["id"]])
    assert [r.state for r in done] == ["succeeded", "succeeded"]
    assert all(r.reused_from is None for r in done)
    assert _submissions(live) == paid + 2


def test_deleting_either_job_keeps_the_other_honest(idle_stack: LiveStack) -> None:
    live = idle_stack
    spec, original = _finished_original(live)
    reusing = _post(live, {**spec, "reuse_within_s": 600})
    storage = live.storage()
    key = original["result"]["video"]["key"]
    # When the reusing job is deleted, then the files stay: they are the original's
    deleted = httpx.delete(f"{live.api_url}/v1/videos/{reusing['id']}", headers=AUTH, timeout=10)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert storage.head(key)["ContentLength"] == original["result"]["video"]["size"]
    assert _get(live, f"/v1/jobs/{original['id']}/video").status_code == 302
    # When the original is deleted too, its record goes but its files stay: another job took
    # them (its ``reused`` count), and a later spec cannot reuse them
    gone = httpx.delete(f"{live.api_url}/v1/videos/{original['id']}", headers=AUTH, timeout=10)
    assert gone.status_code == 200
    assert _get(live, f"/v1/jobs/{original['id']}").status_code == 404
    assert storage.head(key)["ContentLength"] == original["result"]["video"]["size"]
    paid = _submissions(live)
    again = _post(live, {**spec, "reuse_within_s": 600})
    assert again["state"] == "queued" and again["reused_from"] is None
    [done] = live.wait_all([again["id"]])
    assert done.state == "succeeded" and _submissions(live) == paid + 1


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def test_a_reusing_job_with_a_callback_gets_its_own_webhook(idle_stack: LiveStack) -> None:
    live = idle_stack
    _Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec, original = _finished_original(live)
        hook = f"http://127.0.0.1:{server.server_port}/hook"
        second = _post(live, {**spec, "reuse_within_s": 600, "callback_url": hook})
        assert second["reused_from"] == original["id"]
        deadline = time.monotonic() + 20
        while not _Hook.received and time.monotonic() < deadline:
            time.sleep(0.1)
        [event] = _Hook.received
        assert (event["type"], event["data"]["id"]) == ("job.succeeded", second["id"])
        assert event["data"]["reused_from"] == original["id"]
        video = event["data"]["result"]["video"]
        assert video["key"] == original["result"]["video"]["key"]
        # And it carries a link to the video, presigned as it was sent (the original had no
        # webhook: Redis keeps no URL for either)
        fetched = httpx.get(video["url"], timeout=30)
        assert fetched.status_code == 200 and len(fetched.content) == video["size"]
    finally:
        server.shutdown()
