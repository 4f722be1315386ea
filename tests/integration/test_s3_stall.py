"""A stalled S3 (SeaweedFS stopped by SIGSTOP: connections open, nothing answers) must not
freeze the API. Routes that never touch S3 keep answering at once; routes that do answer 503
within seconds, not after boto3's 60 s read timeout times its retries; and once S3 is back,
uploads work again.

Why 45 requests: the API's default thread pool has 40 threads. 20 uploads and 25 job creations
naming an upload, all waiting on S3, used to take every one of them, so ``/healthz`` and
``GET /v1/jobs/{id}`` (Redis only) queued behind them for 20 s and more.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from devstack.ports import free_ports
from devstack.stack import Stack
from producer.files import ADMITTED_PER_THREAD, RequestS3
from simulator.media import cover_png
from tests.support.live import use_local_s3_credentials
from workers.domain.errors import RetryableError

PNG = cover_png("s3-stall")
UPLOADS = 20
JOBS = 25
# What the API must do while S3 is stopped; the S3 routes' bound leaves a second over the
# API's own 5 s promise for the test machine's load.
FAST_S = 2.0
S3_ROUTE_S = 6.0
# A request the broken API would hang on is cut off here, so the test fails rather than waits.
CLIENT_TIMEOUT_S = 25.0


@dataclass
class StallStack:
    stack: Stack
    # One client for every request: building one per request costs the test's CPU (TLS
    # context), which would show in the timings on a small machine.
    http: httpx.Client


@dataclass
class Timed:
    status: int
    seconds: float
    code: str | None = None  # the error body's code


@pytest.fixture(scope="module")
def stall_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StallStack]:
    """Redis, S3 and the API on free ports (no worker: jobs stay queued, which is enough)."""
    tmp: Path = tmp_path_factory.mktemp("s3-stall")
    redis_port, s3_port, sim_port, api_port, flower_port = free_ports(5)
    providers = tmp / "providers.toml"
    providers.write_text(
        f'[providers.p]\nkind = "zhipu"\nbase_url = "http://127.0.0.1:{sim_port}/zhipu"\n'
        'api_key_env = ["K"]\nmodels = ["cogvideox-3"]\n'
    )
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        providers_file=str(providers),
        s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
        s3_bucket="vidqueue-stall",
        sim_port=sim_port,
        api_port=api_port,
        flower_port=flower_port,
        run_dir=str(tmp / "run"),
    )
    use_local_s3_credentials()
    with Stack(settings, {"K": "stall-key"}, tmp / "run") as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_api()
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", limits=limits) as http:
            yield StallStack(stack, http)


def _timed(call: Callable[[], httpx.Response]) -> Timed:
    started = time.monotonic()
    try:
        answer = call()
    except httpx.TimeoutException:
        return Timed(0, time.monotonic() - started)
    seconds = time.monotonic() - started
    code = answer.json().get("error", {}).get("code") if answer.status_code >= 400 else None
    return Timed(answer.status_code, seconds, code)


def _upload(http: httpx.Client) -> httpx.Response:
    return http.post("/v1/uploads", content=PNG, timeout=CLIENT_TIMEOUT_S)


def _create(http: httpx.Client, image: str | None = None) -> httpx.Response:
    spec = {"provider": "p", "model": "cogvideox-3", "prompt": "a stalled tide"}
    if image:
        spec["image"] = image
    return http.post("/v1/jobs", json=spec, timeout=CLIENT_TIMEOUT_S)


def _get(http: httpx.Client, path: str) -> httpx.Response:
    return http.get(path, timeout=CLIENT_TIMEOUT_S)


@dataclass
class Stalled:
    """What the API answered while S3 was stopped."""

    health: Timed
    read: Timed
    uploads: list[Timed]
    jobs: list[Timed]


@pytest.mark.timeout(180)
def test_a_stopped_s3_gets_503s_fast_and_leaves_other_routes_answering(
    stall_stack: StallStack,
) -> None:
    # Given an upload and a job, made while S3 answers
    http = stall_stack.http
    first = _upload(http)
    assert first.status_code == 201, first.text
    job = _create(http)
    assert job.status_code == 202, job.text
    pid = stall_stack.stack.processes.status("s3").pid
    assert pid is not None
    # When S3 is stopped, and 20 uploads and 25 jobs naming an upload wait on it at once
    seen = _while_stopped(pid, http, first.json()["image"], job.json()["id"])
    # Then the routes that never touch S3 answer at once
    assert (seen.health.status, seen.read.status) == (200, 200)
    assert max(seen.health.seconds, seen.read.seconds) < FAST_S, seen
    # And each S3 route answers 503 within the bound
    for name, done in (("uploads", seen.uploads), ("jobs", seen.jobs)):
        assert {(t.status, t.code) for t in done} == {(503, "unavailable")}, (name, done)
        assert max(t.seconds for t in done) < S3_ROUTE_S, (name, done)
    # And once S3 runs again, an upload succeeds
    _upload_works_again(http)


def _while_stopped(pid: int, http: httpx.Client, ref: str, job_id: str) -> Stalled:
    """SIGSTOP S3 (its sockets accept, nothing answers), send the S3 requests, and a second
    later the two that never touch S3; SIGCONT whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(UPLOADS + JOBS) as pool:
            uploads = [pool.submit(_timed, lambda: _upload(http)) for _ in range(UPLOADS)]
            jobs = [pool.submit(_timed, lambda: _create(http, ref)) for _ in range(JOBS)]
            time.sleep(1.0)
            health = _timed(lambda: _get(http, "/healthz"))
            read = _timed(lambda: _get(http, f"/v1/jobs/{job_id}"))
            seen = Stalled(health, read, [f.result() for f in uploads], [f.result() for f in jobs])
    finally:
        os.kill(pid, signal.SIGCONT)
    _report("healthz", [seen.health])
    _report("GET /v1/jobs/{id}", [seen.read])
    _report("uploads", seen.uploads)
    _report("jobs naming an upload", seen.jobs)
    return seen


def _upload_works_again(http: httpx.Client) -> None:
    started, tries = time.monotonic(), 1
    while (answer := _upload(http)).status_code != 201:
        assert time.monotonic() < started + 15, answer.text
        time.sleep(0.5)
        tries += 1
    print(f"after SIGCONT: an upload stored after {tries} tries, {time.monotonic() - started:.2f}s")


def _report(name: str, done: list[Timed]) -> None:
    seconds = sorted(t.seconds for t in done)
    statuses = sorted({t.status for t in done})
    print(
        f"{name}: n={len(done)} statuses={statuses} min={seconds[0]:.2f}s "
        f"median={seconds[len(seconds) // 2]:.2f}s max={seconds[-1]:.2f}s"
    )


def test_stalled_s3_calls_hold_only_their_own_threads_and_are_refused_beyond_the_room() -> None:
    # Given request-path S3 with 2 threads and a 0.5 s deadline, and calls that never end
    s3 = RequestS3(Settings(s3_request_concurrency=2, s3_request_deadline_s=0.5))
    release, started = threading.Event(), []

    def stall() -> None:
        started.append(threading.current_thread().name)
        release.wait(10)

    async def flood() -> list[BaseException | None]:
        calls = [s3.run(stall) for _ in range(2 * ADMITTED_PER_THREAD + 1)]
        return await asyncio.gather(*calls, return_exceptions=True)

    # When one more call than the room holds is made at once
    began = time.monotonic()
    answers = asyncio.run(flood())
    took = time.monotonic() - began
    try:
        # Then the one beyond the room is refused at once, the others by the deadline
        messages = sorted(str(a) for a in answers if isinstance(a, RetryableError))
        assert len(messages) == len(answers) and took < 1.5, (answers, took)
        assert sum("too many" in m for m in messages) == 1, messages
        # And only the S3 threads ever waited on S3 (the queued calls were dropped)
        assert len(started) == 2
        # And a sync caller is answered by the deadline too
        with pytest.raises(RetryableError, match="in time"):
            s3.call(stall)
        assert len(started) == 2
    finally:
        release.set()
