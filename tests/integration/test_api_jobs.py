"""The job routes of the HTTP API: idempotency, batches, listing, scoping, cancel, events, files.

End-to-end behaviour goes through the live stack's uvicorn server. What must not start real
work (a batch of 1,000, jobs that must stay queued, a second producer token) goes through the
same app in process (``in_process_api``), on the live Redis server's database 15, where no worker
listens: those jobs stay queued.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from producer import web
from producer.client import Client
from tests.support.api import AUTH, GOOD, bearer, in_process_api
from tests.support.live import API_TOKEN, LiveStack
from workers.redis import enqueue, keys


@pytest.fixture
def local(live: LiveStack) -> Iterator[tuple[TestClient, redis.Redis]]:
    with in_process_api(live) as pair:
        yield pair


def _post(live: LiveStack, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{live.api_url}/v1/jobs", json=body, headers=headers or AUTH, timeout=10)


# -- idempotency ---------------------------------------------------------------------------


def test_the_same_key_and_body_is_one_job_and_another_body_is_a_409(live: LiveStack) -> None:
    key = f"order-{uuid.uuid4().hex}"
    headers = {**AUTH, "idempotency-key": key}
    # Given a job created with an idempotency key
    first = _post(live, GOOD, headers)
    assert first.status_code == 202
    job_id = first.json()["id"]
    # When the same request comes again (fields in another order), then it is the same job
    again = _post(live, dict(reversed(list(GOOD.items()))), headers)
    assert again.status_code == 202 and again.json()["id"] == job_id
    # When the key comes with another body, then 409 naming the key, and no job is made
    other = _post(live, {**GOOD, "prompt": "a different video"}, headers)
    assert other.status_code == 409
    assert other.json()["error"] == {
        "code": "idempotency_conflict",
        "message": "this idempotency key was already used with a different job spec",
        "field": "idempotency_key",
    }
    # And in Redis: the key points at the one job, whose hash holds the request's fingerprint
    producer = web.identity(API_TOKEN)
    assert live.redis.get(keys.idempotency(key, producer=producer)) == job_id.encode()
    assert len(live.redis.hget(keys.job(job_id), "fingerprint") or b"") == 64
    assert live.redis.hget(keys.job(job_id), "producer") == producer.encode()


def test_the_same_idempotency_key_from_two_producers_is_two_jobs(local: Any) -> None:
    app, store = local
    headers = {"idempotency-key": "shared-key"}
    a, b = {**bearer("token-a"), **headers}, {**bearer("token-b"), **headers}
    # When two producers use the same key (the same body, then another one)
    mine = app.post("/v1/jobs", json=GOOD, headers=a)
    theirs = app.post("/v1/jobs", json=GOOD, headers=b)
    # Then each gets its own job: the key tells neither about the other's
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]
    assert app.get(f"/v1/jobs/{mine.json()['id']}", headers=bearer("token-b")).status_code == 404
    # And within each producer the key still means its one job (another body: 409)
    assert app.post("/v1/jobs", json=GOOD, headers=b).json()["id"] == theirs.json()["id"]
    other = app.post("/v1/jobs", json={**GOOD, "prompt": "another"}, headers=a)
    assert other.status_code == 409
    # And the same goes for batches (job i gets the key "{key}:{i}")
    batch = {"jobs": [GOOD, GOOD]}
    ours = app.post("/v1/jobs/batch", json=batch, headers=a).json()["jobs"]
    their_batch = app.post("/v1/jobs/batch", json=batch, headers=b).json()["jobs"]
    assert {j["id"] for j in ours}.isdisjoint(j["id"] for j in their_batch)
    assert app.post("/v1/jobs/batch", json=batch, headers=a).json()["jobs"] == ours
    assert store.zcard(keys.all_jobs()) == 6


# -- batches -------------------------------------------------------------------------------


class CommandSpy:
    """Records the name (and the script sha, for EVALSHA) of every command a test's requests
    send, in pipelines or not."""

    def __init__(self, patch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        pack: Any = redis.connection.Connection.pack_commands
        send: Any = redis.connection.Connection.send_command

        def pack_commands(conn: Any, commands: Any) -> Any:
            self.sent += [self._name(c) for c in commands]
            return pack(conn, commands)

        def send_command(conn: Any, *args: Any, **options: Any) -> Any:
            self.sent.append(self._name(args))
            return send(conn, *args, **options)

        patch.setattr(redis.connection.Connection, "pack_commands", pack_commands)
        patch.setattr(redis.connection.Connection, "send_command", send_command)

    @staticmethod
    def _name(args: Any) -> str:
        name = str(args[0])
        return f"{name} {args[1]}" if name == "EVALSHA" else name


def test_a_batch_of_1000_is_created_by_one_script_call_and_never_read_back(
    local: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, store = local
    specs = [{**GOOD, "labels": {"n": str(i)}} for i in range(1000)]
    create = f"EVALSHA {hashlib.sha1(enqueue.CREATE.encode()).hexdigest()}"  # noqa: S324
    store.script_load(enqueue.CREATE)
    spy = CommandSpy(monkeypatch)
    # When a batch of 1,000 specs is posted
    started = time.monotonic()
    answer = app.post("/v1/jobs/batch", json={"jobs": specs}, headers=bearer("token-a"))
    took = time.monotonic() - started
    # Then all 1,000 are created, in order, by one CREATE call, and no record is read back
    assert answer.status_code == 202, answer.text
    jobs = answer.json()["jobs"]
    assert [j["spec"]["labels"]["n"] for j in jobs] == [str(i) for i in range(1000)]
    assert len({j["id"] for j in jobs}) == 1000
    assert spy.sent.count(create) == 1
    assert not {"HGETALL", "HGET", "MGET"} & set(spy.sent)
    assert store.zcard(keys.all_jobs()) == 1000
    assert store.zcard(keys.by_producer(web.identity("token-a"))) == 1000
    assert took < 20


def test_a_batch_with_one_invalid_spec_creates_nothing_and_names_index_and_field(
    local: Any,
) -> None:
    app, store = local
    specs = [dict(GOOD) for _ in range(10)]
    specs[7] = {**GOOD, "model": "cogvideox-3", "duration": 7}
    answer = app.post("/v1/jobs/batch", json={"jobs": specs}, headers=bearer("token-a"))
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["field"] == "jobs.7.duration"
    assert "jobs.7.duration" in error["message"] and "5 or 10" in error["message"]
    assert store.zcard(keys.all_jobs()) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"jobs": []}, "jobs"),
        ({"jobs": [GOOD] * 1001}, "jobs"),
        ({"jobs": "x"}, "jobs"),
        ({"jobs": [GOOD, 5]}, "jobs.1"),
        ({"jobs": [GOOD], "extra": 1}, "extra"),
        ({}, "jobs"),
    ],
)
def test_a_malformed_batch_is_a_4xx_naming_the_field(
    local: Any, body: dict[str, Any], field: str
) -> None:
    app, store = local
    answer = app.post("/v1/jobs/batch", json=body, headers=bearer("token-a"))
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == field
    assert store.zcard(keys.all_jobs()) == 0


def test_a_retried_batch_with_an_idempotency_key_is_the_same_jobs(local: Any) -> None:
    app, store = local
    headers = {**bearer("token-a"), "idempotency-key": "nightly-42"}
    specs = [{**GOOD, "prompt": f"shot {i}"} for i in range(5)]
    first = app.post("/v1/jobs/batch", json={"jobs": specs}, headers=headers)
    again = app.post("/v1/jobs/batch", json={"jobs": specs}, headers=headers)
    assert [j["id"] for j in first.json()["jobs"]] == [j["id"] for j in again.json()["jobs"]]
    # A changed spec under the same key: 409 naming it, and nothing new is created
    specs[3] = {**GOOD, "prompt": "changed"}
    specs.append({**GOOD, "prompt": "new"})
    conflict = app.post("/v1/jobs/batch", json={"jobs": specs}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["field"] == "jobs.3.idempotency_key"
    assert store.zcard(keys.all_jobs()) == 5


# -- listing and scoping -------------------------------------------------------------------


def test_listing_is_newest_first_filtered_and_paginated_without_repeats(local: Any) -> None:
    app, _ = local
    auth = bearer("token-a")
    specs = [{**GOOD, "labels": {"team": "a" if i % 2 else "b", "i": str(i)}} for i in range(7)]
    ids = [
        j["id"]
        for j in app.post("/v1/jobs/batch", json={"jobs": specs}, headers=auth).json()["jobs"]
    ]
    later = app.post("/v1/jobs", json={**GOOD, "labels": {"team": "a"}}, headers=auth).json()["id"]
    app.delete(f"/v1/jobs/{ids[0]}", headers=auth)
    # Pages of 3, followed by cursor: every job once, the newest first
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = app.get("/v1/jobs", params=params, headers=auth).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[0] == later and sorted(seen) == sorted([*ids, later]) and len(seen) == 8
    # Filters: label, state, provider; together
    team_a = app.get("/v1/jobs", params={"label": "team:a"}, headers=auth).json()["jobs"]
    assert {j["id"] for j in team_a} == {later, ids[1], ids[3], ids[5]}
    cancelled = app.get("/v1/jobs", params={"state": "cancelled"}, headers=auth).json()["jobs"]
    assert [j["id"] for j in cancelled] == [ids[0]]
    both = app.get(
        "/v1/jobs",
        params=[("label", "team:b"), ("label", "i:2"), ("provider", "zhipu")],
        headers=auth,
    ).json()["jobs"]
    assert [j["id"] for j in both] == [ids[2]]
    assert app.get("/v1/jobs", params={"provider": "solo"}, headers=auth).json()["jobs"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "sleeping"}, "state"),
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"label": "no-colon"}, "label"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_bad_listing_parameters_are_4xx_naming_them(
    local: Any, params: dict[str, Any], field: str
) -> None:
    app, _ = local
    answer = app.get("/v1/jobs", params=params, headers=bearer("token-a"))
    assert 400 <= answer.status_code < 500
    assert answer.json()["error"]["field"] == field


def test_a_producer_sees_only_its_own_jobs(local: Any) -> None:
    app, _ = local
    mine = app.post("/v1/jobs", json=GOOD, headers=bearer("token-a")).json()["id"]
    theirs = bearer("token-b")
    for method, path in (
        ("GET", f"/v1/jobs/{mine}"),
        ("DELETE", f"/v1/jobs/{mine}"),
        ("GET", f"/v1/jobs/{mine}/events"),
        ("GET", f"/v1/jobs/{mine}/video"),
        ("GET", f"/v1/jobs/{mine}/cover"),
    ):
        answer = app.request(method, path, headers=theirs)
        assert answer.status_code == 404, (method, path)
        assert answer.json()["error"]["code"] == "not_found"
    assert app.get("/v1/jobs", headers=theirs).json() == {"jobs": [], "next_cursor": None}
    assert app.get(f"/v1/jobs/{mine}", headers=bearer("token-a")).status_code == 200


# -- cancel, events, files -----------------------------------------------------------------


def test_delete_cancels_a_queued_job_and_404s_an_unknown_one(local: Any) -> None:
    app, _ = local
    auth = bearer("token-a")
    job = app.post("/v1/jobs", json={**GOOD, "provider": "solo"}, headers=auth).json()
    answer = app.delete(f"/v1/jobs/{job['id']}", headers=auth)
    assert answer.status_code == 200
    assert answer.json()["state"] == "cancelled"
    assert answer.json()["error"]["code"] == "cancelled"
    assert app.delete("/v1/jobs/no-such-job", headers=auth).status_code == 404
    # A queued job has nothing mirrored: its video is "not ready", not missing
    queued = app.post("/v1/jobs", json=GOOD, headers=auth).json()["id"]
    answer = app.get(f"/v1/jobs/{queued}/video", headers=auth, follow_redirects=False)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "not_ready"


def test_a_finished_job_has_its_timeline_and_redirects_to_its_files(idle_stack: LiveStack) -> None:
    live = idle_stack
    job = _post(live, GOOD).json()
    live.wait_all([job["id"]])
    url = f"{live.api_url}/v1/jobs/{job['id']}"
    # The timeline: created, each transition, with microsecond UTC timestamps
    events = httpx.get(f"{url}/events", headers=AUTH, timeout=10).json()["events"]
    assert events[0]["event"] == "created"
    assert {"running", "succeeded"} <= {e["state"] for e in events}
    assert all(len(e["at"]) == 27 and e["at"].endswith("Z") for e in events)
    record = httpx.get(url, headers=AUTH, timeout=10).json()
    # /video and /cover: 302 to a presigned URL that serves the mirrored bytes
    for what in ("video", "cover"):
        answer = httpx.get(f"{url}/{what}", headers=AUTH, timeout=10)
        assert answer.status_code == 302
        assert "X-Amz-Signature=" in answer.headers["location"]
        body = httpx.get(answer.headers["location"], timeout=10).content
        assert hashlib.sha256(body).hexdigest() == record["result"][what]["sha256"]
    # And it is too late to cancel it
    refused = httpx.delete(url, headers=AUTH, timeout=10)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "cannot_cancel"


def test_every_route_is_in_the_openapi_document(live: LiveStack) -> None:
    paths = httpx.get(f"{live.api_url}/openapi.json", timeout=10).json()["paths"]
    assert set(paths) >= {
        "/v1/jobs",
        "/v1/jobs/batch",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/events",
        "/v1/jobs/{job_id}/video",
        "/v1/jobs/{job_id}/cover",
        "/v1/uploads",
        "/v1/videos",
        "/v1/videos/{video_id}",
        "/v1/videos/{video_id}/content",
    }
    assert set(paths["/v1/jobs"]) == {"get", "post"}


def test_redis_down_is_a_503_in_the_one_error_shape(live: LiveStack) -> None:
    with in_process_api(live) as (app, _):
        dead = live.settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
        web._client = Client(dead, live.client.catalogue)
        auth = bearer("token-a")
        for answer in (
            app.post("/v1/jobs", json=GOOD, headers=auth),
            app.get("/v1/jobs", headers=auth),
            app.get("/v1/jobs/some-id", headers=auth),
            app.get("/v1/videos", headers=auth),
        ):
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "unavailable"
