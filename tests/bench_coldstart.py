"""Cold start and cap utilisation on a freshly started worker, through the HTTP API.

On a private stack (Redis, S3, simulator, API; one worker at a time), twice each:

1. cold start: a fresh worker (ready per the stack's probe) gets 8 jobs in one ``POST
   /v1/jobs/batch`` on a provider with cap 8: ``created_at`` → ``submitted_at`` (the provider
   answered), first and max; the first also from the API's answer, and split by its timeline.
2. cap utilisation: 48 jobs, generations uniform 3-12 s (seeded), cap 8, polls every ~1 s, on a
   fresh worker: sum of the simulator's generation times / (8 × makespan), makespan = first
   ``created_at`` to last ``provider_finished_at``. Against a thread-per-slot baseline (8
   threads, each submits its next job straight to the simulator's Zhipu API and polls it every
   1 s) on the same seeded durations (``POST /_sim/reset`` restarts the seeded RNG), and the
   bound from detection lag: mean T / (mean T + 0.5 × poll interval).
3. warm dispatch gap, same runs: a finish seen (``provider_finished_at``) to the next job's
   ``submitted_at`` on the key; the i-th finish pairs with the (8+i)-th submit (FIFO slots).

Run alone: ``python -m tests.bench_coldstart``.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack.stack import Stack
from tests.support.benchstack import bench_settings, sim_url
from workers.domain.jobs import TERMINAL, parse_iso

Row = tuple[str, str, str]
CAP, N_JOBS, POLL_S, SEED = 8, 48, 1.0, 20261201
MEAN_S, JITTER_S = 7.5, 4.5
KEY_ENV, KEY, MODEL = "BENCH_COLD_KEY", "bench-cold-key", "cogvideox-flash"
PROVIDER = """
[providers.{name}]
kind = "zhipu"
base_url = "{sim}/zhipu/api/paas/v4"
api_key_env = ["{key}"]
max_in_flight = {cap}
requests_per_second = 1000
adaptive_polling = false
first_poll_s = {poll}
min_poll_interval_s = {poll}
max_poll_interval_s = {poll}
timeout_s = 600
"""
NAMES = ("warm", "cold1", "cold2", "util1", "util2")  # one per run: no slot is shared


@dataclass
class Bench:
    stack: Stack
    api: httpx.Client
    sim: httpx.Client
    workers: int = 0

    def fresh_worker(self) -> str:
        """Start a new worker process tree and wait until it is ready (the stack's probe)."""
        self.workers += 1
        name = f"worker{self.workers}"
        self.stack.start_worker(name)
        return name

    def sim_options(self, **options: Any) -> None:
        self.sim.post("/_sim/options", json=options).raise_for_status()

    def enqueue(self, provider: str, n: int) -> tuple[float, list[str]]:
        """When the API answered (unix s), and the ids of ``n`` jobs enqueued in one batch."""
        spec = {"provider": provider, "model": MODEL, "prompt": "a lighthouse at dusk"}
        answer = self.api.post("/v1/jobs/batch", json={"jobs": [spec] * n})
        answer.raise_for_status()
        return time.time(), [job["id"] for job in answer.json()["jobs"]]

    def wait(self, ids: list[str], field: str, timeout_s: float = 300.0) -> list[dict[str, Any]]:
        """The records once each has ``field`` set ("terminal": its state is terminal)."""
        until = time.monotonic() + timeout_s
        while True:
            recs = [self.api.get(f"/v1/jobs/{i}").raise_for_status().json() for i in ids]
            terminal = {str(s) for s in TERMINAL}
            if all(r["state"] in terminal if field == "terminal" else r[field] for r in recs):
                return recs
            if time.monotonic() > until:
                states = sorted({r["state"] for r in recs})
                raise TimeoutError(f"{len(ids)} jobs: not all {field} in {timeout_s} s ({states})")
            time.sleep(0.1 if field == "submitted_at" else 0.5)

    def submissions(self) -> int:
        return int(self.sim.get("/_sim/stats").raise_for_status().json()["submissions"])

    def task_times(self, task_id: str) -> tuple[float, float]:
        """When the simulator started and finishes the task (unix s)."""
        times = self.sim.get(f"/_sim/tasks/{task_id}").raise_for_status().json()
        return float(times["started_at"]), float(times["finish_at"])


@contextmanager
def bench_stack() -> Iterator[Bench]:
    settings = bench_settings(
        "vidqueue-bench-cold-",
        lambda sim: "".join(
            PROVIDER.format(name=n, sim=sim, key=KEY_ENV, cap=CAP, poll=POLL_S) for n in NAMES
        ),
    )
    sim, api_port = sim_url(settings), settings.api_port
    with Stack(settings, {KEY_ENV: KEY}, Path(settings.run_dir)) as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_simulator(["--gen-time-s", "1", "--gen-jitter-s", "0", "--video-bytes", "4096"])
        stack.start_api()
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=60)
        with api, httpx.Client(base_url=sim, timeout=30) as sim_http:
            yield Bench(stack, api, sim_http)


def _ts(iso: str) -> float:
    return parse_iso(iso).timestamp()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


# -- 1. cold start -------------------------------------------------------------------------


def warm_api(b: Bench) -> None:
    """One job end to end first, so the API process's own first-request costs are not counted."""
    worker = b.fresh_worker()
    b.wait(b.enqueue("warm", 1)[1], "terminal")
    b.stack.stop(worker)


def cold_start(b: Bench, provider: str) -> tuple[str, str]:
    b.sim_options(gen_time_s=1.0, gen_jitter_s=0.0)
    worker = b.fresh_worker()
    answered, ids = b.enqueue(provider, CAP)
    recs = b.wait(ids, "submitted_at")
    waits = sorted(_ts(r["submitted_at"]) - _ts(r["created_at"]) for r in recs)
    first = min(recs, key=lambda r: _ts(r["submitted_at"]))
    from_answer = _ts(first["submitted_at"]) - answered
    split = _timeline(b, first)
    b.wait(ids, "terminal")
    b.stack.stop(worker)
    figure = f"first {_ms(waits[0])}, max {_ms(waits[-1])} ms"
    return (f"{figure} (API answer→first {_ms(from_answer)}; {split})", "first <= 100 ms")


def _timeline(b: Bench, rec: dict[str, Any]) -> str:
    """created → claimed by a worker ("submitting") → running (provider answered), in ms."""
    events = b.api.get(f"/v1/jobs/{rec['id']}/events").raise_for_status().json()["events"]
    claims = [_ts(e["at"]) for e in events if e.get("event") == "submitting"]
    if not claims:
        return "no 'submitting' event"
    claimed, created, submitted = claims[0], _ts(rec["created_at"]), _ts(rec["submitted_at"])
    return f"created→claimed {_ms(claimed - created)}, claimed→running {_ms(submitted - claimed)}"


# -- 2. utilisation, 3. dispatch gaps -----------------------------------------------------


@dataclass
class Util:
    generation_s: list[float]
    lag_s: list[float]  # provider finish seen - simulator finish
    makespan_s: float
    submissions: int  # the simulator's count since its reset (48 unless a submit was repeated)

    @classmethod
    def of(cls, b: Bench, seen: list[tuple[float, str]], makespan: float) -> Util:
        """From (finish seen, task id) pairs and the simulator's own times."""
        times = [(at, *b.task_times(task_id)) for at, task_id in seen]
        gens = [finish - started for _, started, finish in times]
        return cls(gens, [at - finish for at, _, finish in times], makespan, b.submissions())

    @property
    def utilisation(self) -> float:
        return sum(self.generation_s) / (CAP * self.makespan_s)


def _seeded(b: Bench) -> None:
    b.sim_options(gen_time_s=MEAN_S, gen_jitter_s=JITTER_S, seed=SEED)
    b.sim.post("/_sim/reset").raise_for_status()  # restarts the seeded RNG: same durations


def vidqueue_run(b: Bench, provider: str) -> tuple[Util, list[float]]:
    """48 jobs on a fresh worker: utilisation, and the warm dispatch gaps (s)."""
    _seeded(b)
    worker = b.fresh_worker()
    ids = b.enqueue(provider, N_JOBS)[1]
    recs = b.wait(ids, "provider_finished_at", timeout_s=600)
    start = min(_ts(r["created_at"]) for r in recs)
    end = max(_ts(r["provider_finished_at"]) for r in recs)
    seen = [(_ts(r["provider_finished_at"]), str(r["provider_task_id"])) for r in recs]
    util = Util.of(b, seen, end - start)
    b.wait(ids, "terminal")  # mirrors done before the simulator forgets its tasks
    b.stack.stop(worker)
    finishes = sorted(_ts(r["provider_finished_at"]) for r in recs)
    submits = sorted(_ts(r["submitted_at"]) for r in recs)[CAP:]
    gaps = [s - f for f, s in zip(finishes, submits, strict=False)]
    return util, gaps


def _slot(b: Bench, jobs: list[int], lock: threading.Lock, out: list[tuple[float, str]]) -> None:
    """One thread per slot: take the next job, submit it, poll every second until done."""
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=str(b.sim.base_url), headers=headers, timeout=30) as http:
        while True:
            with lock:
                if not jobs:
                    return
                n = jobs.pop(0)
            body = {"model": MODEL, "prompt": "a lighthouse at dusk", "request_id": f"slot-{n:06d}"}
            answer = http.post("/zhipu/api/paas/v4/videos/generations", json=body)
            task_id = str(answer.raise_for_status().json()["id"])
            while True:
                time.sleep(POLL_S)
                got = http.get(f"/zhipu/api/paas/v4/async-result/{task_id}").raise_for_status()
                if got.json()["task_status"] != "PROCESSING":
                    break
            with lock:
                out.append((time.time(), task_id))


def baseline_run(b: Bench) -> Util:
    """The same 48 jobs through 8 threads, one per slot, straight to the simulator."""
    _seeded(b)
    jobs, lock = list(range(N_JOBS)), threading.Lock()
    seen: list[tuple[float, str]] = []
    threads = [threading.Thread(target=_slot, args=(b, jobs, lock, seen)) for _ in range(CAP)]
    start = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Util.of(b, seen, max(at for at, _ in seen) - start)


def _util_rows(r: int, vq: Util, base: Util, gaps: list[float]) -> list[Row]:
    mean = statistics.fmean(vq.generation_s)
    lags = f"{_ms(statistics.fmean(vq.lag_s))} / {_ms(statistics.fmean(base.lag_s))} ms"
    spans = f"{vq.makespan_s:.1f} / {base.makespan_s:.1f} s"
    same = abs(sum(vq.generation_s) - sum(base.generation_s)) < 1e-6
    sums = f"sums {sum(vq.generation_s):.2f} / {sum(base.generation_s):.2f} s"
    durations = "yes" if same else f"NO: {sums}, submits {vq.submissions} / {base.submissions}"
    p50, p95 = (_ms(sorted(gaps)[min(len(gaps) - 1, int(q * len(gaps)))]) for q in (0.5, 0.95))
    util = f"{vq.utilisation:.3f} / {base.utilisation:.3f} (makespan {spans}, mean lag {lags})"
    bound = f"{mean / (mean + 0.5 * POLL_S):.3f} (same durations: {durations})"
    gap = f"{p50} / {p95} ms"
    return [
        (f"2. run {r}: cap utilisation vidqueue / thread-per-slot", util, ">= thread-per-slot"),
        (f"   run {r}: bound from detection lag (mean T {mean:.2f} s)", bound, ""),
        (f"3. run {r}: warm dispatch gap p50/p95 (n={len(gaps)})", gap, "p95 <= 50 ms"),
    ]


def coldstart_and_utilisation() -> list[tuple[str, str, str]]:
    """Cold start, cap utilisation and warm dispatch gaps (twice each) on a private stack."""
    rows: list[Row] = []
    with bench_stack() as b:
        warm_api(b)
        for r in (1, 2):
            rows.append((f"1. cold start, run {r}: created→submitted", *cold_start(b, f"cold{r}")))
        for r in (1, 2):
            vq, gaps = vidqueue_run(b, f"util{r}")
            rows += _util_rows(r, vq, baseline_run(b), gaps)
    return rows


def main() -> None:
    rows = coldstart_and_utilisation()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'result':<60} goal")
    for name, result, goal in rows:
        print(f"{name:<{width}}  {result:<60} {goal}")


if __name__ == "__main__":
    main()
