"""``producer.health``: readiness asks Redis for a real write and S3 for an answer within 1 s.

Redis is the unit tier's bare server, made to refuse writes for real (``maxmemory`` below its
use; ``REPLICAOF`` a port where nothing listens). S3 is a stand-in client: what is tested here
is the probe's deadline and wording, not S3.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError, EndpointConnectionError

from config.settings import Settings
from devstack.ports import free_ports
from producer import health
from workers.domain.retry import rejected_write, typed


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.config_set("maxmemory", 0)
    client.replicaof("NO", "ONE")


class FakeS3:
    """A ``head_bucket`` that answers after ``delay_s``, or raises ``error``."""

    def __init__(self, delay_s: float = 0.0, error: Exception | None = None) -> None:
        self.delay_s, self.error = delay_s, error

    def head_bucket(self, **_: Any) -> dict[str, Any]:
        time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return {}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> FakeS3:
    fake = FakeS3()
    monkeypatch.setattr(health, "s3_probe_client", lambda _: fake)
    return fake


def test_ready_when_redis_takes_a_write_and_s3_answers(r: redis.Redis, s3: FakeS3) -> None:
    found = health.readiness(r, Settings())
    assert found.ready and found.body() == {"ready": True}
    # The write is real, and expires
    assert 0 < r.ttl(health.probe_key()) <= health.REDIS_PROBE_TTL_S


def test_an_out_of_memory_redis_is_not_ready_though_it_answers_ping(
    r: redis.Redis, s3: FakeS3
) -> None:
    r.config_set("maxmemory", 1)
    assert r.ping()
    found = health.readiness(r, Settings())
    assert found.body()["ready"] is False
    assert set(found.reasons) == {"redis"}
    assert found.reasons["redis"].startswith("Redis refuses writes (out of memory)")


def test_a_read_only_replica_is_not_ready(r: redis.Redis, s3: FakeS3) -> None:
    (nowhere,) = free_ports(1)
    r.replicaof("127.0.0.1", nowhere)
    assert "read-only" in (health.redis_problem(r) or "")


def test_an_unreachable_redis_is_named(s3: FakeS3) -> None:
    (nowhere,) = free_ports(1)
    gone = redis.Redis(port=nowhere, socket_connect_timeout=0.5)
    assert (health.redis_problem(gone) or "").startswith("Redis is unavailable: ConnectionError")


def test_a_silent_s3_fails_the_probe_within_its_deadline(r: redis.Redis, s3: FakeS3) -> None:
    s3.delay_s = 3.0
    started = time.monotonic()
    found = health.readiness(r, Settings())
    assert time.monotonic() - started < health.S3_TIMEOUT_S + 0.5
    assert found.reasons == {"s3": "S3 did not answer within 1 s"}


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (ClientError({"Error": {"Code": "NoSuchBucket"}}, "HeadBucket"), "NoSuchBucket"),
        (EndpointConnectionError(endpoint_url="http://s3"), "S3 is unavailable"),
    ],
)
def test_s3_errors_are_named(r: redis.Redis, s3: FakeS3, error: Exception, says: str) -> None:
    s3.error = error
    assert says in health.readiness(r, Settings()).reasons["s3"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (redis.exceptions.OutOfMemoryError("command not allowed"), "oom"),
        (redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'"), "oom"),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica"), "readonly"),
        (redis.ResponseError("UNBLOCKED force unblock from blocking operation"), "readonly"),
        (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (redis.ConnectionError("Connection refused"), None),
        (redis.ResponseError("WRONGTYPE Operation against a key"), None),
    ],
)
def test_refused_writes_are_told_apart(error: Exception, reason: str | None) -> None:
    assert rejected_write(error) == reason


def test_an_untyped_refusal_is_raised_typed_so_except_clauses_see_it() -> None:
    refusal = typed(redis.ResponseError("OOM command not allowed"))
    assert isinstance(refusal, redis.exceptions.OutOfMemoryError)
    other = redis.ResponseError("WRONGTYPE")
    assert typed(other) is other
