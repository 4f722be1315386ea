"""Redis high availability, one module at a time: the Sentinel URL, the Celery broker settings it
makes, and durable writes (``WAIT``) on the unit tier's bare Redis, which has no replica.

The failover itself, with real Sentinels and a real replica, is tests/integration/test_sentinel.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from config.celery import make_app
from config.errors import ConfigError
from config.settings import Settings
from tests.support.fakes import FakeZhipu, catalogue, fake_deps, job
from workers.domain.errors import NotReplicated
from workers.domain.jobs import State
from workers.domain.messages import Step
from workers.redis.replicas import Replication
from workers.redis.store import Store
from workers.steps import endings, submit

THREE = "sentinel://:pw@10.0.0.1:26379;sentinel://10.0.0.2;sentinel://10.0.0.3:26380/2"


# -- the URL -----------------------------------------------------------------------------------


def test_a_sentinel_url_names_every_sentinel_the_master_password_and_the_database() -> None:
    target = Settings(redis_url=THREE, redis_sentinel_master="vq").sentinel
    assert target is not None
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26380))
    assert (target.master, target.db, target.password) == ("vq", 2, "pw")


def test_a_plain_url_has_no_sentinel_and_waits_for_no_replica() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6379/0")
    assert settings.sentinel is None
    assert settings.replicas_to_wait == 0
    assert Settings(redis_url=THREE, redis_sentinel_master="vq").replicas_to_wait == 1
    explicit = Settings(redis_url=THREE, redis_sentinel_master="vq", redis_wait_replicas=0)
    assert explicit.replicas_to_wait == 0


@pytest.mark.parametrize(
    ("url", "master", "says"),
    [
        (THREE, "", "VIDQUEUE_REDIS_SENTINEL_MASTER"),
        ("sentinel://h1:26379;redis://h2:6379", "vq", "is not a sentinel://host:port URL"),
        ("sentinel://h1:26379/1;sentinel://h2:26379/2", "vq", "different databases"),
        ("sentinel://h1:26379/x", "vq", "must be a number"),
        ("sentinel://h1:port", "vq", "bad port"),
    ],
)
def test_a_wrong_sentinel_setting_is_refused_naming_it(url: str, master: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        _ = Settings(redis_url=url, redis_sentinel_master=master).sentinel


@pytest.mark.parametrize("url", ["sentinel://:s3cret@h1:port", "sentinel://h1;redis://:s3cret@h2"])
def test_a_refused_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _ = Settings(redis_url=url, redis_sentinel_master="vq").sentinel
    assert "s3cret" not in str(refused.value) and "***" in str(refused.value)


def test_the_broker_uses_the_sentinel_transport_with_the_master_and_the_sentinels_password() -> (
    None
):
    settings = Settings(redis_url=THREE, redis_sentinel_master="vq", redis_sentinel_password="sp")
    conf = make_app(settings).conf
    assert conf.broker_transport == "workers.redis.broker:SentinelTransport"
    options = conf.broker_transport_options
    assert options["master_name"] == "vq"
    assert options["sentinel_kwargs"]["password"] == "sp"
    plain = make_app(Settings(redis_url="redis://127.0.0.1:6379/0")).conf
    assert plain.broker_transport == "workers.redis.broker:Transport"
    assert "master_name" not in plain.broker_transport_options


# -- durable writes ----------------------------------------------------------------------------


def test_without_replicas_to_wait_for_a_write_is_a_plain_pipeline(redis_db: redis.Redis) -> None:
    replies = Replication(0).write(redis_db, lambda pipe: pipe.incr("n"))
    assert replies == [1]


def test_a_write_no_replica_confirms_is_refused_but_applied(redis_db: redis.Redis) -> None:
    # The unit tier's Redis has no replica: WAIT 1 answers 0 after its timeout.
    with pytest.raises(NotReplicated) as refused:
        Replication(1, timeout_ms=20).write(redis_db, lambda pipe: pipe.incr("n"))
    assert (refused.value.wanted, refused.value.acked) == (1, 0)
    assert isinstance(refused.value, redis.ConnectionError)  # waited out like an outage
    assert redis_db.get("n") == b"1"


class Sentinels:
    """Answers ``discover_slaves`` as Sentinels would: ``alive`` replicas, or an error."""

    def __init__(self, alive: int) -> None:
        self.alive: int | Exception = alive
        self.asked = 0

    def discover_slaves(self, service_name: str) -> list[tuple[str, int]]:
        self.asked += 1
        if isinstance(self.alive, Exception):
            raise self.alive
        return [("10.0.0.9", 6379)] * self.alive


def sentinel_client(sentinels: Sentinels) -> Any:
    return redis.Redis(connection_pool=SentinelConnectionPool("vq", sentinels))


def test_with_sentinel_a_write_waits_for_no_more_replicas_than_are_alive() -> None:
    sentinels = Sentinels(alive=0)
    client = sentinel_client(sentinels)
    replication = Replication(2)
    # No replica alive: the master cannot be failed over, nothing to wait for.
    assert replication._wanted(client) == 0
    # Asked once a second, not once per write.
    assert replication._wanted(client) == 0 and sentinels.asked == 1
    replication._seen = (0.0, 0)
    sentinels.alive = 5
    assert replication._wanted(client) == 2
    replication._seen = (0.0, 0)
    sentinels.alive = redis.ConnectionError("no Sentinel answers")
    assert replication._wanted(client) == 2  # the worst case


# -- the submit's mark -------------------------------------------------------------------------


def test_a_submit_sends_nothing_on_a_mark_no_replica_confirmed(
    redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEY_A", "secret-a")
    zhipu = FakeZhipu()
    d = fake_deps(redis_db, catalogue(), zhipu)
    job(d.store, "j1", producer="A")
    assert endings.dispatch("sim", d) == [Step("submit", "j1")]
    # The replicas stop confirming writes.
    d.store = Store(redis_db, replication=Replication(1, timeout_ms=20))

    steps = submit.submit("j1", d)

    assert zhipu.auth == []  # the provider was never called
    assert steps == [Step("submit", "j1", submit.NOT_REPLICATED_WAIT_S)]
    row = d.store.row("j1")
    assert row is not None and row.state == State.QUEUED and row.key_id == "KEY_A"
    # Once the replicas confirm again, the same job is sent, once.
    d.store = Store(redis_db)
    d.http = httpx.Client(transport=httpx.MockTransport(zhipu))  # type: ignore[misc]
    assert submit.submit("j1", d)[0].task == "poll"
    assert [kind for kind, _ in zhipu.auth] == ["submit"]
    d.stats.flush()  # the request counts, while this test's Redis is still there
