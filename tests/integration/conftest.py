"""Fixtures of the integration tier: one live stack per session (``tests.support.live``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from config import providers as provider_config
from devstack.stack import Stack
from producer.client import Client
from tests.support.live import KEYS, LiveStack, stack_settings, use_local_s3_credentials
from workers.domain.jobs import State


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    tmp = tmp_path_factory.mktemp("stack")
    use_local_s3_credentials()
    settings = stack_settings(tmp)
    with Stack(settings, dict(KEYS), tmp / "run") as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_simulator(["--gen-time-s", "1.0", "--gen-jitter-s", "0.3"])
        stack.start_worker("worker1")
        stack.start_beat()
        stack.start_api()
        catalogue = provider_config.load(settings.providers_file)
        yield LiveStack(
            stack=stack,
            settings=settings,
            client=Client(settings, catalogue),
            sim_url=f"http://127.0.0.1:{settings.sim_port}",
            api_url=f"http://127.0.0.1:{settings.api_port}",
            redis=redis.Redis.from_url(settings.redis_url),
        )


@pytest.fixture
def idle_stack(live: LiveStack) -> LiveStack:
    """The live stack with no job in flight, the simulator's counters and options reset."""
    deadline = time.monotonic() + 120
    busy = (State.QUEUED, State.SUBMITTING, State.RUNNING, State.MIRRORING)
    while any(live.client.deps.store.count_by_state()[s] for s in busy):
        if time.monotonic() > deadline:
            raise AssertionError("the stack never became idle")
        time.sleep(0.2)
    live.set_sim(
        fail_rate=0,
        poll_error_rate=0,
        submit_error_rate=0,
        concurrency_limit=0,
        gen_time_s=1.0,
        gen_jitter_s=0.3,
        url_ttl_s=3600,
        video_bytes=262144,
        callback_delay_s=0,
        callback_loss_rate=0,
        callback_dup_rate=0,
        callback_reorder=False,
        callback_bad_token=False,
    )
    live.sim("POST", "/_sim/reset")
    return live


@pytest.fixture
def redis_db(live: LiveStack) -> Iterator[redis.Redis]:
    """A clean database (db 15) on the live Redis server, for unit tests of Lua and keys."""
    client = redis.Redis.from_url(live.settings.redis_url.rsplit("/", 1)[0] + "/15")
    client.flushdb()
    yield client
    client.flushdb()
