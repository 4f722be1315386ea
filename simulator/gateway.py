"""A new-api-style gateway (QuantumNous/new-api), on the wire as docs/wire-formats.md §3 says.

Mounted under ``/gateway``, so a client's ``base_url`` is ``http://127.0.0.1:PORT/gateway``.
``POST /v1/video/generations`` answers the OpenAI-style task object; ``GET …/{task_id}`` wraps a
TaskDto in ``{"code":"success","message":"","data":…}``. Task errors use
``{"code","message","data":null}`` (``task_not_exist`` is HTTP 400), auth errors the middleware's
``{"error":{…,"type":"new_api_error"}}``, and a key over ``concurrency_limit`` gets the 429 the
gateway sends once every channel is busy. ``metadata.external_task_id`` is the request id (Kling's
idempotency field): a repeat is refused as Kling refuses it.

On success ``result_url`` is a public, expiring ``/files`` URL (the vendor's own), except for Sora
models, whose result only the gateway's ``/v1/videos/{task_id}/content`` proxy serves, with auth.

``metadata.callback_url`` is merged into the upstream body, so the upstream vendor calls it back
itself, in its own shape, for the families whose vendor takes one: Kling (Kling's task object),
Doubao (Ark's task object) and Vidu (``simulator.vidu``). Other families ignore it.
The upstream task's id is the gateway's task id (the simulator has only one id per task).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from simulator import ark, kling, vidu
from simulator.callbacks import Callbacks, Render
from simulator.media import issue_urls, video_chunks
from simulator.openai import wall_time
from simulator.state import ConcurrencyExceeded, DuplicateRequestId, Registry, Task, TaskState

PREFIX: Final = "/gateway"
PROVIDER: Final = "gateway"
INVALID_KEY: Final = "invalid-key"
SATURATED: Final = "当前分组上游负载已饱和，请稍后再试"
# Families whose upstream vendor honours ``metadata.callback_url``.
CALLBACK_FAMILIES: Final = ("kling", "vidu", "doubao")
MAX_DURATION_S: Final = 3600
_SIZE: Final = re.compile(r"^\d{2,5}x\d{2,5}$")
# Shares of a running generation reported as SUBMITTED, then QUEUED, then IN_PROGRESS.
_EARLY_STATUSES: Final = ((0.1, "SUBMITTED"), (0.2, "QUEUED"))
_PLATFORMS: Final = (
    ("kling", "kling"),
    ("jimeng", "jimeng"),
    ("vidu", "vidu"),
    ("doubao", "doubao"),
    ("seedance", "doubao"),
    ("sora", "sora"),
)


def task_error(status: int, code: str, message: str) -> JSONResponse:
    """The relay's task error: ``{"code": "<string>", "message", "data": null}``."""
    return JSONResponse({"code": code, "message": message, "data": None}, status_code=status)


def middleware_error(status: int, code: str, message: str) -> JSONResponse:
    body = {
        "error": {"message": f"{message} (request id: sim)", "type": "new_api_error", "code": code}
    }
    return JSONResponse(body, status_code=status)


def authenticate(request: Request) -> str | JSONResponse:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return middleware_error(401, "", "no token provided")
    if key == INVALID_KEY:
        return middleware_error(401, "", "invalid token")
    return key


def platform(model: str) -> str:
    return next((name for prefix, name in _PLATFORMS if model.startswith(prefix)), "generic")


def _parse(raw: bytes) -> dict[str, Any] | JSONResponse:
    """``TaskSubmitReq``'s checks, in the relay's order."""
    try:
        body = json.loads(raw)
    except ValueError:
        return task_error(400, "invalid_request", "request body is not valid JSON")
    if not isinstance(body, dict):
        return task_error(400, "invalid_request", "request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return task_error(400, "missing_model", "model is required")
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return task_error(400, "invalid_request", "prompt is required")
    duration = body.get("duration")
    if duration is not None and not _valid_duration(duration):
        return task_error(400, "invalid_seconds", "duration must be 0-3600")
    size = body.get("size")
    if size is not None and not (isinstance(size, str) and _SIZE.match(size)):
        return task_error(400, "invalid_size", "size must look like 1280x720")
    metadata = body.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = body["metadata"] = json.loads(metadata)
        except ValueError:
            metadata = None
    if body.get("metadata") is not None and not isinstance(metadata, dict):
        return task_error(400, "invalid_request", "metadata must be an object")
    return body


def _valid_duration(value: object) -> bool:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_DURATION_S


def _request_id(body: dict[str, Any]) -> str | None:
    metadata = body.get("metadata")
    external = metadata.get("external_task_id") if isinstance(metadata, dict) else None
    return external if isinstance(external, str) and external else None


def _status(task: Task, registry: Registry) -> str:
    state = registry.state(task)
    if state is TaskState.SUCCEEDED:
        return "SUCCESS"
    if state is TaskState.FAILED:
        return "FAILURE"
    progress = registry.progress(task)
    return next((name for share, name in _EARLY_STATUSES if progress < share), "IN_PROGRESS")


def task_dto(request: Request, task: Task, registry: Registry) -> dict[str, Any]:
    status, created = _status(task, registry), wall_time(registry, task.started_at)
    finished = status in ("SUCCESS", "FAILURE")
    has_image = bool(task.params.get("image") or task.params.get("images"))
    return {
        "id": int(task.id[-10:]),
        "created_at": created,
        "updated_at": wall_time(registry, registry.clock.monotonic()),
        "task_id": task.id,
        "platform": platform(task.model),
        "user_id": 1,
        "group": "default",
        "channel_id": 1,
        "quota": 0,
        "action": "generate" if has_image else "textGenerate",
        "status": status,
        "fail_reason": "simulated generation failure" if status == "FAILURE" else "",
        "result_url": _result_url(request, task, registry) if status == "SUCCESS" else "",
        "submit_time": created,
        "start_time": created,
        "finish_time": wall_time(registry, task.finish_at) if finished else 0,
        "progress": "100%" if finished else f"{int(registry.progress(task) * 100)}%",
        "properties": {},
        "data": {},
    }


def _upstream(task: Task, base_url: str, registry: Registry) -> tuple[Render, tuple[float, ...]]:
    """How the task's upstream vendor renders its callback, and when its status word changes.

    Kling and Ark see the task as their own submit would have made it: params from metadata.
    """
    family, metadata = platform(task.model), task.params.get("metadata")
    upstream = dict(metadata) if isinstance(metadata, dict) else {}
    if family == "vidu":
        return vidu.callback_render(base_url, registry), vidu.SHARES
    if family == "kling":
        native, shares = kling.callback_render(base_url, registry), (kling.QUEUED_SHARE,)
    else:
        upstream = {**ark.DEFAULTS, **upstream}
        native, shares = ark.callback_render(base_url, registry), (ark.QUEUED_SHARE,)
    return (lambda current: native(replace(current, params=upstream))), shares


def _follow_upstream(callbacks: Callbacks, task: Task, base_url: str, registry: Registry) -> None:
    """Have the upstream vendor call ``metadata.callback_url`` back, if it is one that does."""
    metadata = task.params.get("metadata")
    url = metadata.get("callback_url") if isinstance(metadata, dict) else None
    if isinstance(url, str) and url and platform(task.model) in CALLBACK_FAMILIES:
        callbacks.follow(task, url, *_upstream(task, base_url, registry))


def _result_url(request: Request, task: Task, registry: Registry) -> str:
    if platform(task.model) == "sora":
        return f"{str(request.base_url).rstrip('/')}{PREFIX}/v1/videos/{task.id}/content"
    return issue_urls(str(request.base_url), task, registry).video


def router(registry: Registry, callbacks: Callbacks) -> APIRouter:
    """Submit, poll and content routes; include with ``prefix=PREFIX``."""
    api = APIRouter()

    @api.post("/v1/video/generations", response_model=None)
    async def submit(request: Request) -> JSONResponse:
        key = authenticate(request)
        if isinstance(key, JSONResponse):
            return key
        body = _parse(await request.body())
        if isinstance(body, JSONResponse):
            return body
        if registry.roll(registry.options.submit_error_rate):
            return middleware_error(503, "get_channel_failed", "simulated: no channel available")
        try:
            task = registry.submit(
                provider=PROVIDER,
                key=key,
                model=body["model"],
                request_id=_request_id(body),
                params=body,
                id_prefix="task_",
            )
        except DuplicateRequestId:
            return task_error(400, "task_failed", "external_task_id already exists")
        except ConcurrencyExceeded:
            return task_error(429, "fail_to_fetch_task", SATURATED)
        _follow_upstream(callbacks, task, str(request.base_url), registry)
        answer = {
            "id": task.id,
            "task_id": task.id,
            "object": "video",
            "model": task.model,
            "status": "queued",
            "progress": 0,
            "created_at": wall_time(registry, task.started_at),
        }
        return JSONResponse(answer)

    @api.get("/v1/video/generations/{task_id}", response_model=None)
    async def poll(task_id: str, request: Request) -> JSONResponse:
        key = authenticate(request)
        if isinstance(key, JSONResponse):
            return key
        registry.counters.polls += 1
        if registry.roll(registry.options.poll_error_rate):
            return task_error(500, "query_data_error", "simulated server error")
        task = registry.get(task_id, PROVIDER)
        if task is None:
            return task_error(400, "task_not_exist", "task_not_exist")
        data = task_dto(request, task, registry)
        return JSONResponse({"code": "success", "message": "", "data": data})

    @api.get("/v1/videos/{task_id}/content", response_model=None)
    async def content(task_id: str, request: Request) -> Response:
        """The gateway's proxy; an expired upstream shows as 502, as an unresolvable one does."""
        key = authenticate(request)
        if isinstance(key, JSONResponse):
            return key
        task = registry.get(task_id, PROVIDER)
        if task is None:
            return middleware_error(404, "task_not_exist", "task not found")
        status = _status(task, registry)
        if status != "SUCCESS":
            message = f"Task is not completed yet, current status: {status}"
            body = {"error": {"message": message, "type": "invalid_request_error"}}
            return JSONResponse(body, status_code=400)
        expires = wall_time(registry, task.finish_at) + registry.options.url_ttl_s
        if registry.clock.time() > expires:
            registry.counters.expired_url_403 += 1
            return middleware_error(502, "bad_response", "failed to fetch the upstream video")
        registry.counters.downloads += 1
        return StreamingResponse(
            video_chunks(task.id, task.video_bytes),
            media_type="video/mp4",
            headers={"Content-Length": str(task.video_bytes)},
        )

    return api
