"""The control API tests drive the simulator with: counters, options, faults, reset, media hashes.

No auth: the simulator is meant for loopback. Nothing here is part of any provider's wire format,
so it lives under ``/_sim`` (plus ``/healthz`` for readiness probes).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from simulator.callbacks import Callbacks
from simulator.faults import FLAG_OPTIONS, RATE_OPTIONS
from simulator.media import demo_png, media_sha256
from simulator.state import Registry


def _options_json(registry: Registry) -> JSONResponse:
    return JSONResponse(registry.options.model_dump())


def router(registry: Registry, callbacks: Callbacks) -> APIRouter:
    """``/_sim/*`` and ``/healthz``."""
    api = APIRouter()

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/_sim/stats")
    async def stats() -> dict[str, object]:
        return {**registry.stats(), "callbacks": callbacks.stats()}

    @api.get("/_sim/options", response_model=None)
    async def get_options() -> JSONResponse:
        return _options_json(registry)

    @api.post("/_sim/options", response_model=None)
    async def patch_options(request: Request) -> JSONResponse:
        """Apply a partial update; the whole update is rejected (422) if any field is invalid."""
        try:
            changes = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"detail": "body must be a JSON object"}, status_code=422)
        if not isinstance(changes, dict):
            return JSONResponse({"detail": "body must be a JSON object"}, status_code=422)
        try:
            options = registry.options.patched(changes)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            return JSONResponse({"detail": errors}, status_code=422)
        registry.set_options(options)
        return _options_json(registry)

    @api.post("/_sim/faults/off", response_model=None)
    async def faults_off() -> JSONResponse:
        """Stop injecting faults (every ``*_rate`` and flag of ``simulator.faults``); counters
        stay."""
        off = {**dict.fromkeys(RATE_OPTIONS, 0.0), **dict.fromkeys(FLAG_OPTIONS, False)}
        registry.set_options(registry.options.patched(off))
        return _options_json(registry)

    @api.post("/_sim/reset", response_model=None)
    async def reset() -> JSONResponse:
        registry.reset()
        callbacks.reset()
        return _options_json(registry)

    @api.get("/_sim/tasks/{task_id}/sha256", response_model=None)
    async def task_sha256(task_id: str) -> JSONResponse:
        """Hashes of the task's media, whatever its state; hashing runs off the event loop."""
        task = registry.get(task_id)
        if task is None:
            return JSONResponse({"detail": f"task {task_id} not found"}, status_code=404)
        return JSONResponse(await run_in_threadpool(media_sha256, task))

    @api.get("/_sim/tasks/{task_id}", response_model=None)
    async def task_times(task_id: str) -> JSONResponse:
        """When the task started and finishes, in unix seconds (benchmarks measure lag)."""
        task = registry.get(task_id)
        if task is None:
            return JSONResponse({"detail": f"task {task_id} not found"}, status_code=404)
        offset = registry.clock.time() - registry.clock.monotonic()
        return JSONResponse(
            {
                "id": task.id,
                "state": str(registry.state(task)),
                "started_at": task.started_at + offset,
                "finish_at": task.finish_at + offset,
            }
        )

    @api.get("/_sim/image.png")
    async def image() -> Response:
        return Response(demo_png(), media_type="image/png")

    return api
