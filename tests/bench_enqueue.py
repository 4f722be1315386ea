"""What a producer gets from the HTTP API when enqueueing, against a minimal FastAPI baseline.

Both apps run under uvicorn (one worker each) on 127.0.0.1, against one private Redis server:
the real ``producer.api:app``, and ``baseline_app`` below — a pydantic model for the items and
one Redis pipeline (HSET + ZADD per job) per batch. A client in another process measures them
side by side, alternating, twice each: batch enqueue (1,000 jobs per request) in jobs/s, and
single ``POST /v1/jobs`` p50/p99 over sequential requests.

``python -m tests.bench_enqueue`` prints the table; ``enqueue_vs_baseline()`` returns its rows.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Final

import redis
import redis.asyncio as aioredis
from fastapi import FastAPI
from pydantic import BaseModel, Field

from config.settings import Settings
from devstack.env import venv_tool
from devstack.ports import LOOPBACK, free_ports
from devstack.probes import http_ok
from devstack.processes import ServiceSpec
from devstack.stack import Stack

BATCH: Final = 1000
BATCHES: Final = int(os.environ.get("BENCH_ENQUEUE_BATCHES", "30"))
SINGLES: Final = int(os.environ.get("BENCH_ENQUEUE_SINGLES", "2000"))
ROUNDS: Final = 2
TOKEN: Final = "bench-enqueue-token"
PROVIDERS: Final = """
[providers.bench]
kind = "zhipu"
base_url = "http://127.0.0.1:9/zhipu/api/paas/v4"
api_key_env = ["BENCH_ENQUEUE_KEY"]
max_in_flight = 5
"""

Row = tuple[str, str, str]


def spec(i: int) -> dict[str, Any]:
    return {
        "provider": "bench",
        "model": "cogvideox-flash",
        "prompt": f"a paper boat in the rain, shot {i}",
        "priority": i % 3,
        "labels": {"team": "bench"},
    }


# -- the baseline ---------------------------------------------------------------------------


class Item(BaseModel):
    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    prompt: str | None = Field(default=None, max_length=10_000)
    priority: int = Field(default=0, ge=0, le=9)
    labels: dict[str, str] = Field(default_factory=dict)


class Batch(BaseModel):
    jobs: list[Item] = Field(min_length=1, max_length=BATCH)


baseline_app = FastAPI()
_baseline_redis: list[aioredis.Redis] = []


def _redis() -> aioredis.Redis:
    if not _baseline_redis:
        _baseline_redis.append(aioredis.Redis.from_url(os.environ["BENCH_BASELINE_REDIS_URL"]))
    return _baseline_redis[0]


async def _store(items: list[Item]) -> list[dict[str, str]]:
    pipe = _redis().pipeline(transaction=False)
    out = []
    for item in items:
        job_id = uuid.uuid4().hex
        pipe.hset(f"base:job:{job_id}", mapping={"state": "queued", "spec": item.model_dump_json()})
        pipe.zadd(f"base:wait:{item.provider}", {job_id: 9 - item.priority})
        out.append({"id": job_id, "state": "queued"})
    await pipe.execute()
    return out


@baseline_app.post("/v1/jobs/batch", status_code=202)
async def baseline_batch(body: Batch) -> dict[str, Any]:
    return {"jobs": await _store(body.jobs)}


@baseline_app.post("/v1/jobs", status_code=202)
async def baseline_one(body: Item) -> dict[str, str]:
    [job] = await _store([body])
    return job


@baseline_app.get("/healthz")
async def baseline_health() -> dict[str, bool]:
    return {"ok": True}


# -- the client (in its own process) -------------------------------------------------------


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> float:
    headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
    started = time.perf_counter()
    conn.request("POST", path, body=body, headers=headers)
    answer = answer_body = conn.getresponse()
    data = answer_body.read()
    took = time.perf_counter() - started
    if answer.status != 202:
        raise RuntimeError(f"POST {path}: {answer.status} {data[:300]!r}")
    return took


def measure(ports: dict[str, int], what: str) -> dict[str, list[float]]:
    """Runs in the client process: per-request seconds of ``what`` (batch or single) for each
    app, request by request in turn (alternating which goes first), so both see the same
    machine."""
    conns = {
        app: http.client.HTTPConnection(LOOPBACK, port, timeout=60) for app, port in ports.items()
    }
    if what == "batch":
        bodies = [
            json.dumps({"jobs": [spec(n * BATCH + i) for i in range(BATCH)]}).encode()
            for n in range(BATCHES + 2)
        ]
        path, warm = "/v1/jobs/batch", 2
    else:
        bodies = [json.dumps(spec(n)).encode() for n in range(SINGLES + 50)]
        path, warm = "/v1/jobs", 50
    times: dict[str, list[float]] = {app: [] for app in ports}
    for n, body in enumerate(bodies):
        for app in sorted(ports, reverse=n % 2 == 1):
            times[app].append(_post(conns[app], path, body))
    for conn in conns.values():
        conn.close()
    return {app: found[warm:] for app, found in times.items()}


# -- the run --------------------------------------------------------------------------------


def _baseline_spec(stack: Stack, port: int, redis_url: str) -> ServiceSpec:
    return ServiceSpec(
        name="baseline",
        argv=(*venv_tool("uvicorn"), "tests.bench_enqueue:baseline_app", "--host", LOOPBACK,
              "--port", str(port), "--workers", "1", "--log-level", "warning"),
        ready=http_ok(f"http://{LOOPBACK}:{port}/healthz"),
        env={**stack.env, "BENCH_BASELINE_REDIS_URL": redis_url},
        cwd=stack.ctx.cwd,
        address=f"http://{LOOPBACK}:{port}",
        port=port,
    )  # fmt: skip


@contextmanager
def _apps(tmp: Path) -> Iterator[tuple[Settings, dict[str, tuple[int, int]]]]:
    """Redis, the API and the baseline; yields the settings and each app's (port, pid)."""
    redis_port, api_port, base_port = free_ports(3)
    (tmp / "providers.toml").write_text(PROVIDERS)
    settings = Settings(
        redis_url=f"redis://{LOOPBACK}:{redis_port}/0",
        providers_file=str(tmp / "providers.toml"),
        api_tokens=TOKEN,
        api_port=api_port,
        run_dir=str(tmp / "run"),
    )
    env = {"BENCH_ENQUEUE_KEY": "bench-key", "PYTHONUNBUFFERED": "1"}
    with Stack(settings, env, tmp / "run") as stack:
        stack.start_redis()
        ours = stack.start_api()
        base_url = f"redis://{LOOPBACK}:{redis_port}/1"
        base = stack.processes.start(_baseline_spec(stack, base_port, base_url))
        assert ours.pid is not None and base.pid is not None
        yield settings, {"ours": (api_port, ours.pid), "baseline": (base_port, base.pid)}


def _flush(settings: Settings) -> None:
    for db in (0, 1):
        redis.Redis.from_url(settings.redis_url.rsplit("/", 1)[0] + f"/{db}").flushdb()


def _cpu_s(pid: int) -> float:
    """The process's user + system CPU time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Found = dict[tuple[str, str], list[list[float]]]


def _runs(settings: Settings, apps: dict[str, tuple[int, int]]) -> tuple[Found, Found]:
    """Per-request seconds, and server CPU seconds per request, by (app, what), per run."""
    found: Found = {}
    cpu: Found = {}
    ports = {app: port for app, (port, _) in apps.items()}
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        for _ in range(ROUNDS):
            for what in ("batch", "single"):
                _flush(settings)
                before = {app: _cpu_s(pid) for app, (_, pid) in apps.items()}
                times = pool.submit(measure, ports, what).result()
                for app, (_, pid) in apps.items():
                    found.setdefault((app, what), []).append(times[app])
                    used = (_cpu_s(pid) - before[app]) / len(times[app])
                    cpu.setdefault((app, what), []).append([used])
                print(f"  {what} done", file=sys.stderr, flush=True)
    return found, cpu


def _pct(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _rows(found: Found, cpu: Found) -> list[Row]:
    rows: list[Row] = []
    for run in range(ROUNDS):
        rate = {
            app: BATCH * len(t[run]) / sum(t[run]) for (app, w), t in found.items() if w == "batch"
        }
        per_k = {app: c[run][0] * 1000 for (app, w), c in cpu.items() if w == "batch"}
        tag = f"run {run + 1}:"
        ratio = rate["ours"] / rate["baseline"]
        cpu_k = f"{per_k['ours']:.0f} ms / {per_k['baseline']:.0f} ms"
        rows += [
            (f"{tag} batch enqueue, ours", f"{rate['ours']:,.0f} jobs/s", ">= 20,000 jobs/s"),
            (f"{tag} batch enqueue, baseline", f"{rate['baseline']:,.0f} jobs/s", ""),
            (f"{tag} batch enqueue, ours / baseline", f"{ratio:.2f}", ">= 0.70"),
            (f"{tag} server CPU per 1,000 jobs, ours / baseline", cpu_k, ""),
        ]
        for app in ("ours", "baseline"):
            times = found[app, "single"][run]
            p50, p99 = _pct(times, 0.5) * 1000, _pct(times, 0.99) * 1000
            cpu_us = cpu[app, "single"][run][0] * 1e6
            goal = "p99 <= 3 ms" if app == "ours" else ""
            figure = f"p50 {p50:.2f} ms, p99 {p99:.2f} ms ({cpu_us:.0f} µs CPU)"
            rows.append((f"{tag} single POST, {app}", figure, goal))
    return rows


def enqueue_vs_baseline() -> list[Row]:
    """Rows of (measure, result, goal): both runs of both apps, side by side."""
    with (
        tempfile.TemporaryDirectory(prefix="vidqueue-bench-enqueue-") as tmp,
        _apps(Path(tmp)) as (settings, ports),
    ):
        return _rows(*_runs(settings, ports))


def main() -> int:
    rows = enqueue_vs_baseline()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'result':<42} goal")
    for name, result, goal in rows:
        print(f"{name:<{width}}  {result:<42} {goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
