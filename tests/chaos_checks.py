"""What the chaos run checks once the queue has drained, and how it reports it.

- lost: a job accepted but not settled (terminal, or parked as ``submit_unknown``), or settled
  but wrong: ``succeeded`` without its objects in S3, ``failed`` while the provider still runs
  its task (promise 5);
- duplicate submissions: request ids (= job ids) the simulator accepted more than once;
- cap violations: keys whose most tasks in flight at the simulator exceeded the cap;
- sha mismatches: a succeeded job whose S3 objects (read straight from S3, not through the
  proxy) or recorded sha256/size differ from what the simulator served;
- unknown-outcome submits: jobs parked as ``submit_unknown``;
- secrets in logs: any API key found in any log of the run.

It also reports, without judging them, each timed fault's time to recover (defined in
``tests.chaos_faults``: from its lift to the next job succeeding) and the load average over the
fault phase (``tests.chaos_load``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import httpx
import redis
from botocore.exceptions import ClientError

from tests.chaos_faults import Recovery
from tests.chaos_load import LoadSummary
from workers.domain.jobs import TERMINAL, State
from workers.io.storage import Storage
from workers.redis.gate import Gate
from workers.redis.store import Store, record_from

if TYPE_CHECKING:
    from tests.chaos import Chaos

SETTLED: Final = frozenset({*(str(s) for s in TERMINAL), str(State.SUBMIT_UNKNOWN)})


@dataclass
class Report:
    jobs: int = 0
    kills: int = 0
    restarts: int = 0
    by_state: Counter[str] = field(default_factory=Counter)
    sim_faults: dict[str, int] = field(default_factory=dict)
    proxy_faults: dict[str, int] = field(default_factory=dict)
    proxy_requests: int = 0
    lost: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    refused_resends: int = 0
    cap: int = 0
    max_in_flight: dict[str, int] = field(default_factory=dict)
    sha_checked: int = 0
    large_videos: int = 0
    sha_mismatches: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    held_slots: int = 0
    secrets_in_logs: list[str] = field(default_factory=list)
    drained_s: float = 0.0
    total_s: float = 0.0
    recoveries: list[Recovery] = field(default_factory=list)
    load: LoadSummary = field(default_factory=LoadSummary)
    run_dir: str = ""

    @property
    def cap_violations(self) -> int:
        return sum(n > self.cap for n in self.max_in_flight.values())

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicates
            or self.cap_violations
            or self.sha_mismatches
            or self.failures
            or self.secrets_in_logs
        )

    def lines(self) -> list[str]:
        def kinds(counts: dict[str, int]) -> str:
            return ", ".join(f"{k} {n}" for k, n in sorted(counts.items()) if n) or "none"

        states = ", ".join(f"{n} {s}" for s, n in sorted(self.by_state.items()))
        peaks = ", ".join(f"{k} {n}/{self.cap}" for k, n in sorted(self.max_in_flight.items()))
        lost = "".join(f"\n    {i}: {why}" for i, why in sorted(self.lost.items())[:20])
        rows = [
            ("jobs", f"{self.jobs} ({states})"),
            ("kills", f"{self.kills} (SIGKILL of a whole worker, each replaced by a new one)"),
            ("restarts", f"{self.restarts} (redis, graceful: AOF on, appendfsync everysec)"),
            (
                "faults injected",
                str(sum(self.sim_faults.values()) + sum(self.proxy_faults.values())),
            ),
            ("  provider", kinds(self.sim_faults)),
            ("  s3 proxy", f"{kinds(self.proxy_faults)} (of {self.proxy_requests} requests)"),
            ("lost jobs", f"{len(self.lost)}{lost}"),
            (
                "duplicate submissions",
                f"{len(self.duplicates)} (re-sends refused by the provider as 1231: "
                f"{self.refused_resends})",
            ),
            ("cap violations", f"{self.cap_violations} (most in flight per key: {peaks})"),
            (
                "sha mismatches",
                f"{len(self.sha_mismatches)} ({self.sha_checked} videos and as many covers read "
                f"back from S3; {self.large_videos} videos of 9 MiB, uploaded in parts)",
            ),
            ("unknown-outcome submits", f"{self.by_state[State.SUBMIT_UNKNOWN]} (submit_unknown)"),
            ("failures by code", kinds(dict(self.failures))),
            (
                "slots still held",
                f"{self.held_slots} (by submit_unknown jobs, until their deadline)",
            ),
            ("secrets in logs", str(len(self.secrets_in_logs))),
            ("time to recover", "from a fault's lift to the next job succeeding:"),
            *((f"  {r.kind}", _recovered(r)) for r in self.recoveries),
            ("load average", self.load.line()),
            ("time to drain", f"{self.drained_s:.1f} s (from faults off to every job settled)"),
            ("total", f"{self.total_s:.1f} s"),
        ]
        width = max(len(name) for name, _ in rows)
        verdict = "OK" if self.ok else f"FAILED (logs kept in {self.run_dir})"
        return ["vidqueue chaos", *(f"  {n:<{width}}  {v}" for n, v in rows), f"  {verdict}"]


def _recovered(r: Recovery) -> str:
    """One fault's line: its recovery time, or that none was seen."""
    took = "not seen" if r.seconds is None else f"recovered in {r.seconds:.1f} s"
    meanwhile = f"{r.succeeded_meanwhile} jobs succeeded meanwhile"
    return f"{took} (held {r.held_s:.1f} s, {meanwhile}, lifted at {r.lifted_at_s:.0f} s)"


def check(chaos: Chaos, drained_s: float) -> Report:
    client = redis.Redis.from_url(chaos.settings.redis_url)
    store = Store(client)
    sim = httpx.Client(base_url=chaos.sim, timeout=30)
    stats = sim.get("/_sim/stats").json()
    proxy = httpx.get(f"{chaos.proxy}/_proxy/stats", timeout=10).json()
    config = chaos.catalogue.get("chaos")
    report = Report(
        jobs=len(chaos.ids),
        kills=chaos.kills,
        restarts=chaos.restarts,
        sim_faults=stats["faults"],
        proxy_faults=proxy["faults"],
        proxy_requests=proxy["requests"],
        refused_resends=stats["duplicate_request_ids"],
        cap=config.max_in_flight,
        drained_s=drained_s,
    )
    secrets = {k: chaos.stack.env[k] for k in config.key_ids()}
    peaks = stats["max_in_flight_by_key"]
    report.max_in_flight = {k: peaks.get(secret, 0) for k, secret in secrets.items()}
    report.duplicates = {i: n for i, n in stats["request_ids"].items() if n > 1}
    records = {job_id: store.fields(job_id) for job_id in chaos.ids}
    succeeded = []
    for job_id, fields in records.items():
        state = fields.get("state", "")
        report.by_state[state or "missing"] += 1
        if state not in SETTLED:
            report.lost[job_id] = f"not settled: {state or 'no record'}"
        elif state == State.SUCCEEDED:
            succeeded.append(fields)
        elif state == State.FAILED:
            report.failures[json.loads(fields.get("error") or "{}").get("code", "?")] += 1
            _check_failed(sim, job_id, fields, report)
    gate = Gate(client)
    report.held_slots = sum(gate.in_flight("chaos", key_id) for key_id in config.key_ids())
    storage = Storage(chaos.settings)  # the real endpoint: reads bypass the fault proxy
    with ThreadPoolExecutor(max_workers=8) as pool:
        for fields, problem in zip(
            succeeded, pool.map(lambda f: _check_media(sim, storage, f), succeeded), strict=True
        ):
            report.sha_checked += 1
            video = (_result(fields) or {}).get("video") or {}
            report.large_videos += int(video.get("size", 0)) > 8 * 2**20
            if problem == "sha":
                report.sha_mismatches.append(fields["id"])
            elif problem:
                report.lost[fields["id"]] = problem
    for log in sorted((chaos.stack.run_dir / "logs").glob("*.log")):
        text = log.read_text(errors="replace")
        report.secrets_in_logs += [log.name for s in secrets.values() if s in text]
    return report


def _check_failed(sim: httpx.Client, job_id: str, fields: dict[str, str], report: Report) -> None:
    """Promise 5: no ``failed`` while the provider is still working on the job's task."""
    task_id = fields.get("provider_task_id")
    if task_id and sim.get(f"/_sim/tasks/{task_id}").json().get("state") == "running":
        report.lost[job_id] = "failed while its provider task still runs"


def _result(fields: dict[str, str]) -> dict[str, Any] | None:
    """The job's result in its public form (hex sha256, sizes), however the hash stores it:
    the store's own reader, so a more compact stored form never reads as a mismatch."""
    return record_from(fields).result


def _check_media(sim: httpx.Client, storage: Storage, fields: dict[str, str]) -> str:
    """'' when the job's S3 objects are the simulator's bytes; 'sha', or what is missing."""
    result = _result(fields)
    if not result or not fields.get("provider_task_id"):
        return "succeeded without a result"
    expected = sim.get(f"/_sim/tasks/{fields['provider_task_id']}/sha256").json()
    wanted = {
        "video": (expected["video"], expected["video_size"]),
        "cover": (expected["cover"], None),
    }
    for what, (sha, size) in wanted.items():
        item = result.get(what)
        if not item:
            return f"succeeded without its {what}"
        try:
            body = storage.client.get_object(Bucket=item["bucket"], Key=item["key"])["Body"].read()
        except ClientError:
            return f"succeeded without its {what} in S3"
        actual = (hashlib.sha256(body).hexdigest(), len(body))
        if item["sha256"] != sha or actual != (sha, item["size"]) or size not in (None, len(body)):
            return "sha"
    return ""
