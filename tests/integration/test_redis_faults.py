"""Redis refusing writes (maxmemory reached, a read-only replica) is waited out, never fatal.

An adversarial run filled Redis to ``maxmemory``: every worker logged ``Unrecoverable error:
OutOfMemoryError`` and exited, and nothing moved after memory came back until a person
restarted them, while ``/healthz`` said 200. Here a private stack (Redis, S3, the simulator, a
worker, beat, the API) has its Redis filled to OOM while jobs are in flight: every process must
live through it, ``/readyz`` must say what is wrong, and every job must finish once memory is
back, without a restart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from config import providers as provider_config
from config.settings import Settings
from devstack.cli import api_health
from devstack.env import LOCAL_DEFAULTS
from devstack.ports import free_ports
from devstack.stack import Stack
from producer.client import Client
from workers.domain.jobs import State

JOBS = 16
SERVICES = ("worker1", "beat", "api")
# Where a job may end. A submit the provider accepted just as Redis began refusing writes
# cannot store the provider's task id; re-sent with the same request id, it is refused as a
# duplicate and parked as submit_unknown (never paid twice: docs/design.md §4), as the chaos
# run allows too.
ENDS = {State.SUCCEEDED, State.SUBMIT_UNKNOWN}


@dataclass
class FaultStack:
    stack: Stack
    client: Client
    api: str
    sim: str
    redis: redis.Redis


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """A stack of its own whose Redis may be filled up or turned into a replica."""
    tmp = tmp_path_factory.mktemp("redis-faults")
    redis_port, s3_port, sim_port, api_port, flower_port = free_ports(5)
    providers = tmp / "providers.toml"
    providers.write_text(
        f'[providers.p]\nkind = "zhipu"\nbase_url = "http://127.0.0.1:{sim_port}/zhipu/api/paas/v4"\n'
        'api_key_env = ["K"]\nmax_in_flight = 4\nfirst_poll_s = 0.3\nmin_poll_interval_s = 0.2\n'
    )
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        providers_file=str(providers),
        s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
        s3_bucket="vidqueue-faults",
        sim_port=sim_port,
        api_port=api_port,
        flower_port=flower_port,
        sweep_interval_s=2,
        run_dir=str(tmp / "run"),
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        os.environ[name] = LOCAL_DEFAULTS[name]
    with Stack(settings, {"K": "faults-key"}, tmp / "run") as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_simulator(["--gen-time-s", "1.0", "--gen-jitter-s", "0"])
        stack.start_worker("worker1", concurrency=2)
        stack.start_beat()
        stack.start_api()
        catalogue = provider_config.load(str(providers))
        yield FaultStack(
            stack,
            Client(settings, catalogue),
            f"http://127.0.0.1:{api_port}",
            f"http://127.0.0.1:{sim_port}",
            redis.Redis.from_url(settings.redis_url),
        )


def _fill_to_oom(r: redis.Redis) -> int:
    """Set maxmemory just above what Redis uses now and write until it refuses: Redis is then
    out of memory (``noeviction``) for every command that may grow it. The limit then drops
    1 MiB below the use, so that the memory an ack or an expiry frees does not end the outage
    early. Returns the keys written."""
    used = int(r.info("memory")["used_memory"])
    r.config_set("maxmemory", used + 512 * 1024)
    blob = b"x" * 16384
    for n in range(10_000):
        try:
            r.set(f"test:filler:{n}", blob)
        except redis.exceptions.OutOfMemoryError:
            used = int(r.info("memory")["used_memory"])
            r.config_set("maxmemory", used - 1024 * 1024)
            return n
    raise AssertionError("Redis never ran out of memory")


def _pids(stack: Stack) -> dict[str, int | None]:
    return {name: stack.processes.status(name).pid for name in SERVICES}


def _logs(stack: Stack) -> str:
    return "\n".join(
        f"--- {name}\n{stack.processes.log_path(name).read_text(errors='replace')[-3000:]}"
        for name in SERVICES
    )


def _states(client: Client, ids: list[str]) -> dict[str, State | None]:
    return {job_id: (job.state if (job := client.get(job_id)) else None) for job_id in ids}


def _check_while_out_of_memory(fault_stack: FaultStack) -> None:
    """Over 10 s of OOM: every process lives on; the API is alive, not ready, and says why (on
    /readyz, in `vidqueue dev status`); /metrics counts the refused writes."""
    stack, api = fault_stack.stack, fault_stack.api
    started = time.monotonic()
    time.sleep(3.0)
    ready = httpx.get(f"{api}/readyz", timeout=10)
    health = httpx.get(f"{api}/healthz", timeout=10)
    shown = "\n".join(api_health(stack))
    time.sleep(max(0.0, 10.0 - (time.monotonic() - started)))
    alive = {name: stack.is_running(name) for name in SERVICES}
    assert all(alive.values()), (alive, _logs(stack))
    assert health.status_code == 200, health.text
    assert ready.status_code == 503, ready.text
    assert ready.json()["ready"] is False
    assert set(ready.json()["reasons"]) == {"redis"}, ready.json()
    assert "api /healthz: 200 ok" in shown and "api /readyz: 503 NOT OK" in shown, shown
    assert "redis: Redis refuses writes (out of memory)" in shown, shown
    metrics = httpx.get(f"{api}/metrics", timeout=10).text
    assert 'vidqueue_redis_rejected_writes_total{reason="oom"}' in metrics
    assert 'vidqueue_redis_rejected_writes_total{reason="oom"} 0' not in metrics


def _wait_for_ends(client: Client, ids: list[str], stack: Stack, since: float, what: str) -> None:
    """Wait until every job ended (``ENDS``), most of them succeeded; print how long it took."""
    deadline = since + 90
    while not set((states := _states(client, ids)).values()) <= ENDS:
        assert time.monotonic() < deadline, (states, _logs(stack))
        time.sleep(0.2)
    parked = sum(state == State.SUBMIT_UNKNOWN for state in states.values())
    took = time.monotonic() - since
    print(f"\n{len(ids)} jobs ended {took:.1f} s after {what} ({parked} parked as submit_unknown)")
    assert parked <= len(ids) // 4, states


@pytest.mark.timeout(240)
def test_redis_out_of_memory_is_waited_out_and_every_job_finishes(fault_stack: FaultStack) -> None:
    stack, client, r = fault_stack.stack, fault_stack.client, fault_stack.redis
    # Given jobs in flight (a 1 s generation, a cap of 4: some submitted, some waiting)
    ids = [
        client.enqueue({"provider": "p", "model": "cogvideox-flash", "prompt": f"tide {n}"}).id
        for n in range(JOBS)
    ]
    pids = _pids(stack)
    deadline = time.monotonic() + 30
    while State.RUNNING not in _states(client, ids).values():
        assert time.monotonic() < deadline, _logs(stack)
        time.sleep(0.05)
    # When Redis runs out of memory and stays so for 10 s
    _fill_to_oom(r)
    try:
        _check_while_out_of_memory(fault_stack)
    finally:
        # And when memory is back
        r.config_set("maxmemory", 0)
    restored = time.monotonic()
    # Then every job finishes, with no process restarted and none lost
    _wait_for_ends(client, ids, stack, restored, "memory was back")
    assert _pids(stack) == pids
    assert httpx.get(f"{fault_stack.api}/readyz", timeout=10).json() == {"ready": True}
    assert "Unrecoverable error" not in _logs(stack)


@pytest.mark.timeout(180)
def test_a_read_only_redis_is_waited_out_and_every_job_finishes(fault_stack: FaultStack) -> None:
    stack, client, r = fault_stack.stack, fault_stack.client, fault_stack.redis
    # Given jobs in flight
    ids = [
        client.enqueue({"provider": "p", "model": "cogvideox-flash", "prompt": f"reef {n}"}).id
        for n in range(8)
    ]
    pids = _pids(stack)
    deadline = time.monotonic() + 30
    while State.RUNNING not in _states(client, ids).values():
        assert time.monotonic() < deadline, _logs(stack)
        time.sleep(0.05)
    # When Redis turns into a replica (of a primary that is not there: it keeps its data and
    # answers reads, and refuses every write with READONLY, as after a failover) for 8 s
    (nowhere,) = free_ports(1)
    r.replicaof("127.0.0.1", nowhere)
    try:
        time.sleep(3.0)
        ready = httpx.get(f"{fault_stack.api}/readyz", timeout=10)
        time.sleep(5.0)
        # Then every process lives on and the API is not ready, saying why
        alive = {name: stack.is_running(name) for name in SERVICES}
        assert all(alive.values()), (alive, _logs(stack))
        assert ready.status_code == 503, ready.text
        assert "read-only" in ready.json()["reasons"]["redis"], ready.json()
        assert httpx.get(f"{fault_stack.api}/healthz", timeout=10).status_code == 200
    finally:
        # And when it is a primary again
        r.replicaof("NO", "ONE")
    restored = time.monotonic()
    # Then every job finishes without a restart
    _wait_for_ends(client, ids, stack, restored, "Redis took writes again")
    assert _pids(stack) == pids
    assert "Unrecoverable error" not in _logs(stack)
