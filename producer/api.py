"""The HTTP API for backends in any language (ASGI app: ``producer.api:app``).

This module assembles the app: the ``/v1/jobs`` routes (``api_jobs``), uploads
(``api_uploads``), the OpenAI-compatible ``/v1/videos`` (``openai_facade``), ``/metrics``,
liveness and readiness (``/healthz``, ``/readyz``: ``health``), and one error mapping for all
of them (``api_errors``). Errors have one JSON shape:
``{"error": {"code": ..., "message": ..., "field": ...}}`` (OpenAI's shape under
``/v1/videos``). Bad input is a 4xx naming the field; an unknown id — or another producer's —
is 404; Redis or S3 trouble is 503; never a 500. Each bearer token is a producer identity: a
producer sees, cancels and downloads only its own jobs and uploads.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from producer import (
    api_callbacks,
    api_errors,
    api_events,
    api_jobs,
    api_queue,
    api_uploads,
    docs_assets,
    health,
    metrics,
    openai_facade,
    openai_videos,
    openapi,
    tokens,
    ui,
)
from producer.web import client, producer_identity

__all__ = ["app", "client", "producer_identity"]


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Read the providers and tokens files at startup, so a bad one stops the API with a clear
    error naming the field. Then everything loaded so far is left out of garbage collection
    (``gc.freeze``), which keeps the collector's pauses out of request latencies. The
    ``Stats`` built here carries the writes Redis refuses this process to /metrics
    (``workers.redis.stats.note_rejected``)."""
    client().validate_config()
    tokens.load(client().settings.api_tokens, client().settings.api_tokens_file)
    client().deps.stats  # noqa: B018 (built now, not on the first refusal)
    gc.collect()
    gc.freeze()
    yield


app = FastAPI(
    title="vidqueue",
    version="0.1.0",
    description="A job queue for AI video generation. Enqueue jobs, read their records.",
    lifespan=lifespan,
    docs_url=None,  # served from the package's own assets (``docs_assets``), never a CDN
    redoc_url=None,
)
app.include_router(openai_facade.router)
app.include_router(metrics.router)
app.include_router(api_jobs.router)
app.include_router(api_events.router)
app.include_router(api_uploads.router)
app.include_router(api_callbacks.router)
app.include_router(api_queue.router)
app.include_router(ui.router)
api_errors.install(app)
docs_assets.install(app)
openapi.document(app, [openai_videos.VideoCreate, openai_videos.VideoCreateForm])


@app.get("/healthz", tags=["operations"])
def healthz() -> dict[str, Any]:
    """Liveness: this process answers. Nothing else is asked, so a Redis or S3 outage never
    gets a healthy API restarted (``/readyz`` says whether it can work: ``producer.health``)."""
    return {"ok": True}


@app.get(
    "/readyz",
    tags=["operations"],
    responses={503: {"description": "Not ready: the body names what failed (Redis or S3)"}},
)
def readyz() -> JSONResponse:
    """Readiness: Redis takes a write and S3 answers within 1 s; else 503 naming what failed."""
    found = health.readiness(client().deps.redis, client().settings)
    return JSONResponse(found.body(), status_code=200 if found.ready else 503)
