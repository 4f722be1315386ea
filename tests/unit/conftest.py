"""Fixtures of the unit tier: nothing but a bare ``redis-server`` for the Lua and key tests.

The server starts once per session on a free loopback port, without AOF, in a temporary
directory: no S3, no simulator, no Celery, so ``make test-unit`` runs in seconds. It has the
memory settings the stack ships (``devstack.redis_server.redis_argv``: a job hash's listpack
limit), so what the tests measure is what a deployment gets.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from devstack.ports import LOOPBACK, free_ports
from devstack.redis_server import redis_argv, redis_binary

# The shipped settings that decide how much memory a job takes (``shipped_memory_args``).
MEMORY_FLAGS = ("--hash-max-listpack-value",)


def shipped_memory_args(binary: Path) -> list[str]:
    """The memory settings of the stack's own Redis command line, as flags and values."""
    argv = redis_argv(binary, 0, Path("."))
    out: list[str] = []
    for i, item in enumerate(argv[:-1]):
        if item in MEMORY_FLAGS:
            out += [item, argv[i + 1]]
    return out


@contextmanager
def redis_server(binary: Path, data_dir: Path | None = None) -> Iterator[redis.Redis]:
    """A throwaway server (``binary``: redis-server or valkey-server) on a free loopback port,
    without persistence, configured as shipped (``shipped_memory_args``); stopped on exit."""
    [port] = free_ports(1)
    argv = [str(binary), "--bind", LOOPBACK, "--port", str(port)]
    argv += ["--dir", str(data_dir)] if data_dir is not None else []
    argv += ["--save", "", "--appendonly", "no", *shipped_memory_args(binary)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    client = redis.Redis(host=LOOPBACK, port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.05)
    try:
        yield client
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(redis_binary(), tmp_path_factory.mktemp("redis")) as client:
        port = client.connection_pool.connection_kwargs["port"]
        yield f"redis://{LOOPBACK}:{port}"


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[redis.Redis]:
    """A clean database (db 15) on the unit tier's own Redis server."""
    client = redis.Redis.from_url(f"{redis_url}/15")
    client.flushdb()
    yield client
    client.flushdb()
