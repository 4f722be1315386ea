"""Zhipu (bigmodel.cn / Z.ai) video generation, on the wire exactly as docs/wire-formats.md §1 says.

Mounted under ``/zhipu/api/paas/v4``, so a client's ``base_url`` is
``http://127.0.0.1:PORT/zhipu/api/paas/v4``. This module only translates between Zhipu's JSON and
the provider-neutral :class:`~simulator.state.Registry`; error ``code`` values are strings, as on
the real wire. API keys identify the caller for per-key counting and are never logged.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulator import faults
from simulator.faults import Fault
from simulator.media import issue_urls
from simulator.nulls import unset_nulls
from simulator.state import (
    ConcurrencyExceeded,
    DuplicateRequestId,
    Registry,
    Task,
    TaskState,
)

PREFIX: Final = "/zhipu/api/paas/v4"
PROVIDER: Final = "zhipu"
MODELS: Final = frozenset(
    {
        "cogvideox-flash",
        "cogvideox-2",
        "cogvideox-3",
        "viduq1-text",
        "viduq1-image",
        "viduq1-start-end",
        "vidu2-image",
        "vidu2-start-end",
        "vidu2-reference",
    }
)
# The one key the simulator treats as revoked, so clients can exercise their 401 handling.
INVALID_KEY: Final = "invalid-key"

_Url = Annotated[str, Field(min_length=1)]
# One URL, a first+last frame pair, or (for vidu2-reference) up to three references.
ImageUrl = _Url | Annotated[list[_Url], Field(min_length=1, max_length=3)]

_STATUS: Final = {
    TaskState.RUNNING: "PROCESSING",
    TaskState.SUCCEEDED: "SUCCESS",
    TaskState.FAILED: "FAIL",
}


class VideoGenerationRequest(BaseModel):
    """The submit body. Strict types, so a client sending ``"fps": "30"`` finds out here.

    Unknown fields are ignored, as real services do; a ``null`` is an unset field (the
    official SDK sends one for every parameter left out).
    """

    model_config = ConfigDict(strict=True, extra="ignore")
    _nulls_unset = model_validator(mode="before")(unset_nulls)

    model: str
    prompt: str | None = None
    image_url: ImageUrl | None = None
    quality: Literal["speed", "quality"] = "speed"
    with_audio: bool = False
    size: str | None = Field(default=None, pattern=r"^\d{2,5}x\d{2,5}$")
    fps: Literal[30, 60] = 30
    duration: int | None = Field(default=None, gt=0, le=60)
    style: Literal["general", "anime"] | None = None
    aspect_ratio: Literal["16:9", "9:16", "1:1"] | None = None
    movement_amplitude: Literal["auto", "small", "medium", "large"] | None = None
    watermark_enabled: bool | None = None
    off_peak: bool | None = None
    request_id: str | None = Field(default=None, min_length=6, max_length=64)
    user_id: str | None = Field(default=None, min_length=6, max_length=128)


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Zhipu's error envelope: ``{"error": {"code": "<string>", "message": ...}}``."""
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _injected(fault: Fault, registry: Registry) -> JSONResponse:
    """An injected 500 or 429 (code 1305: the request rate is too high) in Zhipu's envelope."""
    if fault in (Fault.SUBMIT_429, Fault.POLL_429):
        return error(429, "1305", "too many requests", faults.retry_after(registry))
    return error(500, "500", "simulated server error")


def authenticate(request: Request) -> str | JSONResponse:
    """The caller's API key from ``Authorization: Bearer <key>``, or the 401 to answer."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return error(401, "1001", "Authorization header missing or empty")
    if key == INVALID_KEY:
        return error(401, "1002", "Invalid API key")
    return key


def _parse(raw: bytes) -> VideoGenerationRequest | JSONResponse:
    try:
        body = VideoGenerationRequest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else "body"
        code = "1210" if first["type"] == "json_invalid" else "1214"
        return error(400, code, f"invalid parameter {where}: {first['msg']}")
    if body.model not in MODELS:
        return error(400, "1211", f"model {body.model!r} does not exist")
    if not body.prompt and not body.image_url:
        return error(400, "1214", "prompt or image_url is required")
    return body


def _poll_body(request: Request, task: Task, registry: Registry) -> dict[str, object]:
    state = registry.state(task)
    body: dict[str, object] = {
        "model": task.model,
        "request_id": task.request_id,
        "task_status": _STATUS[state],
    }
    if state is TaskState.SUCCEEDED:
        urls = issue_urls(str(request.base_url), task, registry)
        body["video_result"] = [{"url": urls.video, "cover_image_url": urls.cover}]
    return body


def router(registry: Registry) -> APIRouter:
    """Submit and poll routes; include with ``prefix=PREFIX``."""
    api = APIRouter()

    @api.post("/videos/generations", response_model=None)
    async def submit(request: Request) -> Response:
        key = authenticate(request)
        if isinstance(key, JSONResponse):
            return key
        body = _parse(await request.body())
        if isinstance(body, JSONResponse):
            return body
        refused = faults.submit_refusal(registry)
        if refused is not None:
            return _injected(refused, registry)
        try:
            task = registry.submit(
                provider=PROVIDER,
                key=key,
                model=body.model,
                request_id=body.request_id,
                params=body.model_dump(exclude_none=True),
            )
        except DuplicateRequestId:
            return error(400, "1231", "duplicate request")
        except ConcurrencyExceeded:
            return error(429, "1302", "concurrency too high for this API key")
        answer = {
            "model": task.model,
            "id": task.id,
            "request_id": task.request_id,
            "task_status": "PROCESSING",
        }
        lost = faults.lost_answer(registry)
        if lost is not None:
            return await faults.unanswered(lost, answer, registry)
        return JSONResponse(answer)

    @api.get("/async-result/{task_id}", response_model=None)
    async def poll(task_id: str, request: Request) -> Response:
        key = authenticate(request)
        if isinstance(key, JSONResponse):
            return key
        registry.counters.polls += 1
        fault = faults.poll_fault(registry)
        if fault in (Fault.POLL_500, Fault.POLL_429):
            return _injected(fault, registry)
        task = registry.get(task_id, PROVIDER)
        if task is None:
            return error(404, "404", f"task {task_id} not found")
        if fault is Fault.POLL_MALFORMED:
            return faults.malformed_json()
        body = _poll_body(request, task, registry)
        if fault is Fault.POLL_UNKNOWN_STATUS:
            body = {**body, "task_status": faults.UNKNOWN_STATUS}
            body.pop("video_result", None)
        return JSONResponse(body)

    return api
