"""``GET /metrics``: the queue in Prometheus text format (jobs by state, queue depths, slots
per key, request rates, histograms of time-to-submit, generation, mirror and detection lag,
writes Redis refused, jobs that took a finished result, and what was mirrored into S3).
Unauthenticated, like most scrape targets: expose the API port only where it belongs."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from producer.web import client
from workers.deps import Deps
from workers.observe import prometheus, snapshot
from workers.redis.reuse import ReuseIndex

router = APIRouter()


def render(deps: Deps) -> str:
    return prometheus(snapshot(deps)) + rejected_writes(deps) + reuse_and_storage(deps)


def reuse_and_storage(deps: Deps) -> str:
    """Jobs that took a finished result (``reuse_within_s``) instead of generating, and the
    bytes and objects mirrored into S3, per provider. Counters: they only grow."""
    reused = ReuseIndex(deps.redis).reused()
    providers = sorted(set(deps.catalogue.providers) | set(reused))
    mirrored = {p: deps.stats.mirrored(p) for p in providers}
    lines: list[str] = []
    for name, text, value in (
        ("jobs_reused", "Jobs that took a finished result instead of generating.", None),
        ("mirrored_bytes", "Bytes mirrored into S3.", "bytes"),
        ("mirrored_objects", "Objects (videos and covers) mirrored into S3.", "objects"),
    ):
        metric = f"vidqueue_{name}_total"
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} counter"]
        for p in providers:
            n = reused.get(p, 0) if value is None else mirrored[p][value]
            lines.append(f'{metric}{{provider="{_escape(p)}"}} {n}')
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def rejected_writes(deps: Deps) -> str:
    """Writes Redis refused, by reason (``workers.redis.stats.note_rejected``): every process's
    once flushed, this one's at once. A worker's refusals are flushed once Redis takes writes
    again, so during an outage this shows the API's own (its ``/readyz`` probes among them)."""
    name = "vidqueue_redis_rejected_writes_total"
    lines = [
        f"# HELP {name} Writes Redis refused (out of memory, read-only, loading), by reason.",
        f"# TYPE {name} counter",
    ]
    lines += [f'{name}{{reason="{r}"}} {n}' for r, n in deps.stats.rejected().items()]
    return "\n".join(lines) + "\n"


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics() -> PlainTextResponse:
    text: str = await run_in_threadpool(render, client().deps)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
