"""``GET /metrics``: the queue in Prometheus text format (jobs by state, queue depths, slots
per key, request rates, histograms of time-to-submit, generation, mirror and detection lag, and
writes Redis refused). Unauthenticated, like most scrape targets: expose the API port only
where it belongs."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from producer.web import client
from workers.deps import Deps
from workers.observe import prometheus, snapshot

router = APIRouter()


def render(deps: Deps) -> str:
    return prometheus(snapshot(deps)) + rejected_writes(deps)


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
