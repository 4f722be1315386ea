"""Job history in S3, on real Redis and real S3 (SeaweedFS): a finished job archived by the
archiver, then read through every route, the Python client and the CLI; an archiver killed
between the S3 write and the Redis delete; cancel and listing of archived jobs.

The API runs in process on database 15 of the live Redis with a hot window of 0 s (every
finished job is due at once); no worker serves that database, so jobs are brought to an end
here, with their files put in the live S3 as the mirror would.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from openai import OpenAI

from config.settings import Settings, get_settings
from devstack.env import settings_env
from producer import cli, web
from producer.batch import new_job_id
from producer.client import Client
from tests.support.api import GOOD, bearer, in_process_api
from tests.support.live import LiveStack
from workers.deps import build
from workers.domain.change import Change
from workers.domain.jobs import JobError, State, now_iso
from workers.domain.uuid7 import day_of
from workers.io import archive as s3_archive
from workers.io.storage import Storage, s3_client
from workers.redis import keys
from workers.redis.archive import ArchiveRows
from workers.redis.store import Store
from workers.steps.archive import Outcome, run_pass
from workers.steps.sweep import sweep

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

A, B = bearer("token-a"), bearer("token-b")
VIDEO = b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000)
COVER = b"\x89PNG\r\n\x1a\n" + os.urandom(500)


@dataclass
class Archive:
    """The in-process API on db 15 with a hot window of 0 s, and what archiving needs."""

    api: TestClient
    db: redis.Redis
    settings: Settings
    storage: Storage

    def create(self, headers: dict[str, str], **extra: Any) -> str:
        answer = self.api.post("/v1/jobs", json={**GOOD, **extra}, headers=headers)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def finish(self, job_id: str, state: State = State.SUCCEEDED) -> None:
        """Bring a created job to its end as the pipeline would (files mirrored first)."""
        store = Store(self.db)
        path = [State.QUEUED, State.SUBMITTING, State.RUNNING, State.MIRRORING]
        for before, after in itertools.pairwise(path):
            assert store.transition(job_id, [before], after), (job_id, after)
        if state == State.SUCCEEDED:
            result = {
                "video": self._put(job_id, "video.mp4", VIDEO, "video/mp4"),
                "cover": self._put(job_id, "cover.png", COVER, "image/png"),
            }
            change = Change(result=result, completed_at=now_iso(), at_provider=False)
            assert store.transition(job_id, [State.MIRRORING], state, change=change)
        else:
            error = JobError(code="provider_failed", message="no")
            change = Change(error=error, completed_at=now_iso(), at_provider=False)
            assert store.transition(job_id, [State.MIRRORING], state, change=change)

    def _put(self, job_id: str, name: str, body: bytes, kind: str) -> dict[str, Any]:
        key = self.storage.object_key(job_id, name)
        self.storage.ensure_bucket()
        self.storage.client.put_object(Bucket=self.storage.bucket, Key=key, Body=body)
        digest = hashlib.sha256(body).hexdigest()
        return {
            "bucket": self.storage.bucket,
            "key": key,
            "size": len(body),
            "sha256": digest,
            "content_type": kind,
        }

    def run(self) -> Outcome:
        return run_pass(self.settings, ArchiveRows(self.db), lambda: self.storage)

    def objects(self, job_id: str) -> list[str]:
        key = s3_archive.key_of(self.storage.prefix, job_id)
        assert key is not None
        listed = self.storage.client.list_objects_v2(Bucket=self.storage.bucket, Prefix=key)
        return [item["Key"] for item in listed.get("Contents", [])]

    def in_redis(self, job_id: str) -> bool:
        return bool(self.db.exists(keys.job(job_id)) or self.db.exists(keys.events(job_id)))


@pytest.fixture
def hist(live: LiveStack) -> Iterator[Archive]:
    with in_process_api(live) as (api, db), pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDQUEUE_HOT_RETENTION_S", "0")
        # A prefix of its own: the archive of other tests' days stays out of its listings.
        patch.setenv("VIDQUEUE_S3_PREFIX", f"archive-test-{uuid.uuid4().hex[:8]}/")
        get_settings.cache_clear()
        settings = get_settings()
        assert settings.hot_retention_s == 0 and settings.redis_url.endswith("/15")
        yield Archive(api, db, settings, Storage(settings))
        get_settings.cache_clear()


def test_an_archived_job_reads_as_before_on_every_route(hist: Archive) -> None:
    job_id = hist.create(A, labels={"team": "growth"})
    hist.finish(job_id)
    before = hist.api.get(f"/v1/jobs/{job_id}", headers=A).json()
    events = hist.api.get(f"/v1/jobs/{job_id}/events", headers=A).json()
    assert hist.in_redis(job_id)

    outcome = hist.run()
    assert outcome.archived == 1 and not outcome.failed
    assert not hist.in_redis(job_id)
    assert hist.db.zscore(keys.all_jobs(), job_id) is None
    assert hist.objects(job_id) == [s3_archive.key_of(hist.storage.prefix, job_id)]
    day = day_of(job_id)
    assert f"records/{day:%Y/%m/%d}/{job_id}.json.gz" in hist.objects(job_id)[0]

    # GET /v1/jobs/{id}: the same record, URLs presigned afresh
    after = hist.api.get(f"/v1/jobs/{job_id}", headers=A)
    assert after.status_code == 200
    assert _no_urls(after.json()) == _no_urls(before)
    assert hist.api.get(f"/v1/jobs/{job_id}/events", headers=A).json() == events
    # the files: 302 to a fresh presigned URL that serves them
    for route, body in (("video", VIDEO), ("cover", COVER)):
        found = hist.api.get(f"/v1/jobs/{job_id}/{route}", headers=A, follow_redirects=False)
        assert found.status_code == 302
        assert httpx.get(found.headers["location"], timeout=10).content == body
    # the OpenAI-compatible retrieve and download_content, through the official SDK
    sdk = OpenAI(base_url="http://testserver/v1", api_key="token-a", http_client=hist.api)
    video = sdk.videos.retrieve(job_id)
    assert video.id == job_id and video.status == "completed"
    assert sdk.videos.download_content(job_id).read() == VIDEO
    assert sdk.videos.download_content(job_id, variant="thumbnail").read() == COVER
    # ownership holds: another producer sees nothing
    for route in ("", "/events", "/video", "/cover"):
        assert hist.api.get(f"/v1/jobs/{job_id}{route}", headers=B).status_code == 404
    assert hist.api.get(f"/v1/videos/{job_id}", headers=B).status_code == 404
    assert hist.api.get(f"/v1/videos/{job_id}/content", headers=B).status_code == 404


def test_the_sweep_archives_finished_jobs(hist: Archive) -> None:
    ids = [hist.create(A) for _ in range(3)]
    for job_id in ids:
        hist.finish(job_id)
    running = hist.create(A)
    d = build(hist.settings)
    sweep(d)
    for job_id in ids:
        assert not hist.in_redis(job_id) and len(hist.objects(job_id)) == 1
    assert hist.in_redis(running) and hist.objects(running) == []
    off = build(hist.settings.model_copy(update={"archive_enabled": False}))
    done = hist.create(A)
    hist.finish(done)
    sweep(off)
    assert hist.in_redis(done) and hist.db.ttl(keys.job(done)) > 0  # the old 14 days


def test_the_python_client_and_the_cli_read_an_archived_job(
    hist: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = hist.create(A)
    hist.finish(job_id, State.FAILED)
    assert hist.run().archived == 1
    client = Client(hist.settings)
    record = client.get(job_id)
    assert record is not None and record.state == State.FAILED
    assert record.error is not None and record.error.code == "provider_failed"
    assert client.get(job_id, producer="someone-else") is None
    assert client.wait(job_id, timeout_s=5).state == State.FAILED
    assert [e["state"] for e in client.events(job_id)][-1] == "failed"
    day = day_of(job_id)
    assert day is not None
    assert [r.id for r in client.list(archived_on=day, everyone=True).jobs] == [job_id]
    assert client.list(archived_on=day, producer="someone-else").jobs == []
    assert cli.main(["status", job_id, "--json", "--direct"]) == 1  # a failed job: exit 1
    assert job_id in capsys.readouterr().out


def test_cancelling_an_archived_job_is_a_409_naming_it(hist: Archive) -> None:
    job_id = hist.create(A)
    hist.finish(job_id)
    assert hist.run().archived == 1
    refused = hist.api.delete(f"/v1/jobs/{job_id}", headers=A)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "job_archived"
    assert hist.api.delete(f"/v1/jobs/{job_id}", headers=B).status_code == 404
    assert hist.api.get(f"/v1/jobs/{job_id}", headers=A).json()["state"] == "succeeded"


def test_deleting_an_archived_video_deletes_its_files_and_its_record(hist: Archive) -> None:
    job_id = hist.create(A)
    hist.finish(job_id)
    assert hist.run().archived == 1
    assert hist.api.delete(f"/v1/videos/{job_id}", headers=B).status_code == 404
    gone = hist.api.delete(f"/v1/videos/{job_id}", headers=A)
    assert gone.json() == {"id": job_id, "object": "video.deleted", "deleted": True}
    assert hist.objects(job_id) == []
    prefix = hist.storage.object_key(job_id, "")
    listed = hist.storage.client.list_objects_v2(Bucket=hist.storage.bucket, Prefix=prefix)
    assert listed.get("KeyCount", 0) == 0
    assert hist.api.get(f"/v1/jobs/{job_id}", headers=A).status_code == 404


def test_archived_on_pages_through_a_day_of_ones_own_jobs(hist: Archive) -> None:
    mine = [hist.create(A, labels={"n": str(i)}) for i in range(5)]
    theirs = [hist.create(B) for _ in range(3)]
    for job_id in mine + theirs:
        hist.finish(job_id)
    assert hist.run().archived == 8
    day = day_of(mine[0])
    assert day is not None and all(day_of(j) == day for j in mine)  # made within seconds

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"archived_on": day.isoformat(), "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = hist.api.get("/v1/jobs", params=params, headers=A)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [job["id"] for job in body["jobs"]]
        assert all(job["result"]["video"]["url"].startswith("http") for job in body["jobs"])
        cursor = body["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert seen == mine  # oldest first, only one's own, none twice
    assert pages >= 4
    filtered = hist.api.get(
        "/v1/jobs", params={"archived_on": day.isoformat(), "label": "n:3"}, headers=A
    )
    assert [j["id"] for j in filtered.json()["jobs"]] == [mine[3]]
    other_day = hist.api.get("/v1/jobs", params={"archived_on": "2001-01-01"}, headers=A)
    assert other_day.json() == {"jobs": [], "next_cursor": None}
    bad = hist.api.get("/v1/jobs", params={"archived_on": "yesterday"}, headers=A)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "archived_on"
    forged = hist.api.get(
        "/v1/jobs", params={"archived_on": day.isoformat(), "cursor": "x"}, headers=A
    )
    assert forged.status_code == 400
    # the hot listing no longer has them
    assert hist.api.get("/v1/jobs", headers=A).json()["jobs"] == []


def test_an_idempotency_key_lives_as_long_as_the_hot_window(hist: Archive) -> None:
    first = hist.api.post("/v1/jobs", json=GOOD, headers={**A, "idempotency-key": "k-1"})
    again = hist.api.post("/v1/jobs", json=GOOD, headers={**A, "idempotency-key": "k-1"})
    assert first.json()["id"] == again.json()["id"]
    hist.finish(first.json()["id"])
    assert hist.run().archived == 1
    later = hist.api.post("/v1/jobs", json=GOOD, headers={**A, "idempotency-key": "k-1"})
    assert later.status_code == 202 and later.json()["id"] != first.json()["id"]


def test_an_archiver_that_dies_before_the_delete_loses_and_duplicates_nothing(
    hist: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [hist.create(A) for _ in range(3)]
    for job_id in ids:
        hist.finish(job_id)

    def die(*_: Any) -> list[int]:
        raise KeyboardInterrupt  # the process ends between the S3 write and the Redis delete

    monkeypatch.setattr(ArchiveRows, "delete", die)
    with pytest.raises(KeyboardInterrupt):
        hist.run()
    monkeypatch.undo()
    for job_id in ids:
        assert hist.in_redis(job_id) and len(hist.objects(job_id)) == 1
    assert hist.run().archived == 3
    for job_id in ids:
        assert not hist.in_redis(job_id) and len(hist.objects(job_id)) == 1
        assert hist.api.get(f"/v1/jobs/{job_id}", headers=A).json()["state"] == "succeeded"
    assert hist.run().archived == 0  # nothing twice


# The child: an archiver pass whose process is SIGKILLed right after the S3 writes verified.
_CHILD = textwrap.dedent(
    """
    import os, signal
    from config.settings import get_settings
    from workers.io.storage import Storage
    from workers.redis.archive import ArchiveRows
    from workers.steps.archive import run_pass
    import redis

    def killed(*_):
        os.kill(os.getpid(), signal.SIGKILL)

    ArchiveRows.delete = killed
    settings = get_settings()
    run_pass(settings, ArchiveRows(redis.Redis.from_url(settings.redis_url)),
             lambda: Storage(settings))
    """
)


def test_an_archiver_sigkilled_between_write_and_delete_then_rerun(hist: Archive) -> None:
    ids = [hist.create(A) for _ in range(4)]
    for job_id in ids:
        hist.finish(job_id)
    env = {**os.environ, **settings_env(hist.settings)}
    child = subprocess.run([sys.executable, "-c", _CHILD], env=env, timeout=60, check=False)
    assert child.returncode == -signal.SIGKILL
    bodies = {}
    for job_id in ids:
        assert hist.in_redis(job_id)
        [key] = hist.objects(job_id)
        bodies[job_id] = hist.storage.client.get_object(Bucket=hist.storage.bucket, Key=key)
        bodies[job_id] = bodies[job_id]["Body"].read()
    assert hist.run().archived == 4
    for job_id in ids:
        [key] = hist.objects(job_id)
        again = hist.storage.client.get_object(Bucket=hist.storage.bucket, Key=key)
        assert again["Body"].read() == bodies[job_id]  # the same bytes: nothing duplicated
        assert not hist.in_redis(job_id)
        assert hist.api.get(f"/v1/jobs/{job_id}", headers=A).status_code == 200


def test_with_s3_down_archiving_waits_and_nothing_expires(hist: Archive) -> None:
    job_id = hist.create(A)
    hist.finish(job_id)
    assert hist.db.ttl(keys.job(job_id)) > 0
    dead = Storage(hist.settings, s3_client("http://127.0.0.1:9", connect_s=0.5, retries=0))
    started = time.monotonic()
    outcome = run_pass(hist.settings, ArchiveRows(hist.db), lambda: dead)
    assert outcome.failed and outcome.archived == 0
    assert time.monotonic() - started < 10
    assert hist.in_redis(job_id)
    assert hist.db.ttl(keys.job(job_id)) == -1  # only the archiver removes it now
    assert hist.api.get(f"/v1/jobs/{job_id}", headers=A).status_code == 200
    assert hist.run().archived == 1  # S3 back: it goes


def test_a_job_still_in_its_hot_window_stays(hist: Archive) -> None:
    job_id = hist.create(A)
    hist.finish(job_id)
    warm = hist.settings.model_copy(update={"hot_retention_s": 3600})
    assert run_pass(warm, ArchiveRows(hist.db), lambda: hist.storage).archived == 0
    assert hist.in_redis(job_id) and hist.objects(job_id) == []


def test_archive_reads_answer_503_within_the_deadline_when_s3_stalls(hist: Archive) -> None:
    job_id = hist.create(A)
    hist.finish(job_id)
    assert hist.run().archived == 1
    with socket.create_server(("127.0.0.1", 0)) as silent, pytest.MonkeyPatch.context() as patch:
        # A server that takes connections and never answers: S3 stalled.
        patch.setenv("VIDQUEUE_S3_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        patch.setenv("VIDQUEUE_S3_REQUEST_READ_TIMEOUT_S", "0.5")
        patch.setenv("VIDQUEUE_S3_REQUEST_DEADLINE_S", "1")
        _fresh_api()
        started = time.monotonic()
        stalled = hist.api.get(f"/v1/jobs/{job_id}", headers=A)
        assert stalled.status_code == 503, stalled.text
        assert stalled.json()["error"]["code"] == "unavailable"
        assert time.monotonic() - started < 2
        # An unknown id younger than the hot window never waits on S3: a quick 404.
        patch.setenv("VIDQUEUE_HOT_RETENTION_S", "3600")
        _fresh_api()
        started = time.monotonic()
        assert hist.api.get(f"/v1/jobs/{new_job_id()}", headers=A).status_code == 404
        assert time.monotonic() - started < 0.5
    _fresh_api()


def _fresh_api() -> None:
    """The in-process API's client built again from the environment on its next request."""
    get_settings.cache_clear()
    web._client = None


def _no_urls(record: dict[str, Any]) -> dict[str, Any]:
    result = {name: {**item, "url": ""} for name, item in record["result"].items()}
    return {**record, "result": result}
