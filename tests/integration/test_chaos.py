"""A smaller chaos run inside ``make test`` (``make chaos`` runs the full one: tests/chaos.py),
with each timed fault (a Redis restart, a memory spike, an S3 stall) once; the CPU hogs of its
loaded mode are always stopped; and the two things a Redis restart did that the chaos run
found: it stopped every worker, and it cut short every running step (a mirror then waited out
its two-minute claim)."""

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
from devstack.env import LOCAL_DEFAULTS
from devstack.ports import free_ports
from devstack.stack import Stack
from producer.client import Client
from tests import chaos
from tests.chaos_load import CpuLoad
from workers.domain.jobs import JobRecord, State
from workers.redis import keys

# About 45 s: stack start, 60 jobs enqueued over 20 s with a worker SIGKILLed every ~6 s, Redis
# out of memory at 4 s for 3 s, restarted at 10 s, S3 stopped at 15 s for 3 s (one fault at a
# time: a fault or a kill waits for the last fault's recovery), provider and S3 faults all
# along, then the drain and the checks.
# The SIGKILLed workers serve submits and polls; the mirror worker is spared here, since a
# mirror killed mid-copy waits out its claim (30 s, then the grace: 15 s) (``make chaos`` kills
# mirrors too).
SMALL = chaos.ChaosConfig(
    jobs=60,
    workers=2,
    mirror_workers=1,
    queues=("submit", "poll", "notify", "sweep"),
    kill_mirror_workers=False,
    concurrency=3,
    cap=3,
    kill_every_s=6.0,
    min_kills=3,
    enqueue_s=20.0,
    redis_restart_at_s=10.0,
    memory_spike_at_s=4.0,
    memory_spike_s=3.0,
    s3_stall_at_s=15.0,
    s3_stall_s=3.0,
    gen_time_s=1.0,
    timeout_s=30.0,
    drain_timeout_s=200.0,
    seed=11,
)


@pytest.mark.timeout(420)
def test_sixty_jobs_through_kills_a_redis_restart_and_faults_lose_nothing() -> None:
    # Given a stack whose workers are SIGKILLed, whose Redis restarts and runs out of memory,
    # whose S3 stalls, and whose provider and S3 fail in every retryable way
    report = chaos.run(SMALL)
    print("\n".join(report.lines()))
    assert report.kills >= 3 and report.restarts == 1
    kinds = sorted(r.kind for r in report.recoveries)
    assert kinds == ["memory spike", "redis restart", "s3 stall"], report.recoveries
    assert sum(report.sim_faults.values()) > 0 and sum(report.proxy_faults.values()) > 0
    # Then no job is lost, none was paid twice, the cap held, every video is the provider's
    assert report.lost == {}
    assert report.duplicates == {}
    assert report.cap_violations == 0
    assert report.sha_mismatches == []
    # And every job succeeded, except submits whose outcome could not be known (parked)
    assert not report.failures
    assert report.by_state[State.SUCCEEDED] + report.by_state[State.SUBMIT_UNKNOWN] == SMALL.jobs
    assert report.secrets_in_logs == []
    # And the system made progress again after each fault: its recovery time was measured
    # (reported, never judged here: no timing threshold on a shared machine)
    assert all(r.seconds is not None for r in report.recoveries), report.recoveries


def test_cpu_hogs_are_killed_and_reaped_when_the_run_is_interrupted() -> None:
    # Given the loaded mode's CPU hogs, running, when the run is interrupted (Ctrl-C)
    pids: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        _interrupted_while_loaded(pids)
    # Then no hog is left, not even as a zombie
    assert len(pids) == 2
    assert not any(_exists(pid) for pid in pids)


def _interrupted_while_loaded(pids: list[int]) -> None:
    """Start two hogs, note their pids, check they run, and raise KeyboardInterrupt."""
    with CpuLoad(2, 0.2, 0.2, 60.0) as load:
        pids += load.pids()
        assert all(_exists(pid) for pid in pids)
        raise KeyboardInterrupt


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class RestartStack:
    stack: Stack
    settings: Settings
    client: Client
    sim: str


@pytest.fixture(scope="module")
def restart_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartStack]:
    """A small stack of its own (Redis, S3, the simulator, one worker) whose Redis may restart."""
    tmp = tmp_path_factory.mktemp("restart")
    redis_port, s3_port, sim_port, api_port, flower_port = free_ports(5)
    providers = tmp / "providers.toml"
    providers.write_text(
        f'[providers.p]\nkind = "zhipu"\nbase_url = "http://127.0.0.1:{sim_port}/zhipu/api/paas/v4"\n'
        'api_key_env = ["K"]\nfirst_poll_s = 0.3\nmin_poll_interval_s = 0.2\n'
    )
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        providers_file=str(providers),
        s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
        s3_bucket="vidqueue-restart",
        sim_port=sim_port,
        api_port=api_port,
        flower_port=flower_port,
        run_dir=str(tmp / "run"),
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        os.environ[name] = LOCAL_DEFAULTS[name]
    with Stack(settings, {"K": "restart-key"}, tmp / "run") as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_simulator(["--gen-time-s", "0.2", "--gen-jitter-s", "0"])
        stack.start_worker("worker1", concurrency=2)
        catalogue = provider_config.load(str(providers))
        yield RestartStack(
            stack, settings, Client(settings, catalogue), f"http://127.0.0.1:{sim_port}"
        )


def _worker_log(stack: Stack) -> str:
    return stack.processes.log_path("worker1").read_text()


def test_a_poll_scheduled_in_redis_survives_a_sigkilled_worker_and_a_redis_restart(
    restart_stack: RestartStack,
) -> None:
    # Given a running job whose next poll is scheduled in Redis (a 4 s generation)
    stack, client = restart_stack.stack, restart_stack.client
    httpx.post(f"{restart_stack.sim}/_sim/options", json={"gen_time_s": 4.0}).raise_for_status()
    job = client.enqueue({"provider": "p", "model": "cogvideox-flash", "prompt": "a slow tide"})
    deadline = time.monotonic() + 30
    while (record := _get(client, job.id)) is None or record.state != State.RUNNING:
        assert time.monotonic() < deadline, record
        time.sleep(0.05)
    # When the worker is SIGKILLed, then Redis restarts, then a new worker starts
    stack.kill("worker1")
    assert client.deps.redis.zscore(keys.due(), job.id) is not None
    stack.restart("redis")
    stack.start_worker("worker1", concurrency=2)
    # Then the poll chain goes on from Redis and the job succeeds, polled by one chain only
    deadline = time.monotonic() + 60
    while (record := _get(client, job.id)) is None or record.state != State.SUCCEEDED:
        assert time.monotonic() < deadline, (record, _worker_log(stack)[-2000:])
        time.sleep(0.2)
    httpx.post(f"{restart_stack.sim}/_sim/options", json={"gen_time_s": 0.2}).raise_for_status()
    assert record.polls <= 15
    assert "Unrecoverable error" not in _worker_log(stack)


def test_a_mirror_running_while_redis_restarts_finishes_at_once(
    restart_stack: RestartStack,
) -> None:
    # Given a job whose result is being copied to S3 slowly (64 KiB/s: 4 s for its video)
    stack, client = restart_stack.stack, restart_stack.client
    httpx.post(
        f"{restart_stack.sim}/_sim/options",
        json={"slow_download_rate": 1.0, "slow_download_bytes_per_s": 65536, "video_bytes": 262144},
    ).raise_for_status()
    job = client.enqueue({"provider": "p", "model": "cogvideox-flash", "prompt": "slow river"})
    deadline = time.monotonic() + 30
    while httpx.get(f"{restart_stack.sim}/_sim/stats").json()["downloads"] < 1:
        assert time.monotonic() < deadline, "the mirror never started"
        time.sleep(0.1)
    # When Redis restarts in the middle of the copy
    time.sleep(0.5)
    stack.restart("redis")
    # Then the copy is not cut short (its claim would hold the job for MIRROR_LEASE_S = 30 s
    # and the grace):
    # the job succeeds as soon as the copy is done
    deadline = time.monotonic() + 30
    while (record := _get(client, job.id)) is None or record.state != State.SUCCEEDED:
        assert time.monotonic() < deadline, (record, _worker_log(stack)[-2000:])
        time.sleep(0.2)
    assert "Terminating it instead" not in _worker_log(stack)
    # And the worker lives on, though the copy's message could not be acknowledged on the
    # connection it came from (Redis re-delivers it after the visibility timeout: a no-op)
    time.sleep(1.0)
    assert stack.is_running("worker1"), _worker_log(stack)[-3000:]
    assert "Unrecoverable error" not in _worker_log(stack)


def _get(client: Client, job_id: str) -> JobRecord | None:
    try:
        return client.get(job_id)
    except redis.RedisError:
        return None
