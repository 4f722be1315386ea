"""``GET /metrics``: the queue in Prometheus text format (jobs by state, queue depths, slots
per key, request rates, and histograms of time-to-submit, generation, mirror and detection
lag). Unauthenticated, like most scrape targets: expose the API port only where it belongs."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from producer.web import client
from workers.deps import Deps
from workers.observe import prometheus, snapshot

router = APIRouter()


def render(deps: Deps) -> str:
    return prometheus(snapshot(deps))


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics() -> PlainTextResponse:
    text: str = await run_in_threadpool(render, client().deps)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
