"""Fixtures of the unit tier: nothing but a bare ``redis-server`` for the Lua and key tests.

The server starts once per session on a free loopback port, without AOF, in a temporary
directory: no S3, no simulator, no Celery, so ``make test-unit`` runs in seconds.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from devstack.ports import LOOPBACK, free_ports
from devstack.redis_server import redis_binary


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    [port] = free_ports(1)
    data = tmp_path_factory.mktemp("redis")
    argv = [str(redis_binary()), "--bind", LOOPBACK, "--port", str(port), "--dir", str(data)]
    server = subprocess.Popen(
        [*argv, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    url = f"redis://{LOOPBACK}:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.05)
    yield url
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[redis.Redis]:
    """A clean database (db 15) on the unit tier's own Redis server."""
    client = redis.Redis.from_url(f"{redis_url}/15")
    client.flushdb()
    yield client
    client.flushdb()
