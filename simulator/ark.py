"""Volcengine Ark (Doubao Seedance) video generation, on the wire as docs/wire-formats.md §4 says.

Mounted under ``/ark/api/v3``, so a client's ``base_url`` is ``http://127.0.0.1:PORT/ark/api/v3``.
Errors use Ark's envelope ``{"error": {"code", "message", "param", "type"}}`` with string codes;
every answer carries an ``X-Request-Id`` header. A task reports ``queued`` for the first
``QUEUED_SHARE`` of its generation time, then ``running``.

``DELETE`` cancels a queued task (it stops counting in flight at once) and deletes the record of
a finished one. For a running task Ark's behaviour is unconfirmed; the simulator takes the
reading that is hardest on clients: it answers 200 and the task runs on, so only a follow-up GET
tells a client whether the cancel worked.

A submit's ``callback_url`` is POSTed, unsigned, on each status change (``queued``, ``running``,
then ``succeeded``/``failed``, or ``cancelled``), with the body a GET of the task answers then.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulator.callbacks import Callbacks, Render
from simulator.media import issue_urls
from simulator.nulls import unset_nulls
from simulator.state import ConcurrencyExceeded, Registry, Task, TaskState

PREFIX: Final = "/ark/api/v3"
PROVIDER: Final = "ark"
# Model ids, BytePlus ids without the doubao- prefix, and endpoint ids.
MODEL_PREFIXES: Final = ("doubao-seedance-", "seedance-", "ep-")
INVALID_KEY: Final = "invalid-key"
QUEUED_SHARE: Final = 0.2
FPS: Final = 24
IMAGE_PREFIXES: Final = ("http://", "https://", "data:image/", "asset://")
FRAME_ROLES: Final = (("first_frame",), ("first_frame", "last_frame"))

Role = Literal["first_frame", "last_frame", "reference_image"]


class ImageUrl(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    _nulls_unset = model_validator(mode="before")(unset_nulls)
    url: Annotated[str, Field(min_length=1)]


class ContentItem(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    _nulls_unset = model_validator(mode="before")(unset_nulls)
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None
    role: Role | None = None


class CreateTask(BaseModel):
    """The submit body. Strict types: ``"duration": "5"`` is refused as it would be by Ark; a
    ``null`` is an unset field (the official SDK sends one for every parameter left out)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    _nulls_unset = model_validator(mode="before")(unset_nulls)

    model: Annotated[str, Field(min_length=1)]
    content: Annotated[list[ContentItem], Field(min_length=1)]
    resolution: Literal["480p", "720p", "1080p"] = "720p"
    ratio: Literal["21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "9:21", "adaptive"] = "16:9"
    duration: Annotated[int, Field(ge=3, le=12)] = 5
    frames: Annotated[int, Field(gt=0)] | None = None
    seed: Annotated[int, Field(ge=-1, le=2**32 - 1)] = -1
    camera_fixed: bool = False
    watermark: bool = False
    generate_audio: bool | None = None
    return_last_frame: bool = False
    callback_url: str | None = None
    service_tier: Literal["default", "flex"] = "default"
    execution_expires_after: Annotated[int, Field(ge=3600, le=259200)] = 172800


# What Ark fills in for each optional field a submit leaves out.
DEFAULTS: Final = {
    name: info.default for name, info in CreateTask.model_fields.items() if not info.is_required()
}


def error(
    status: int, code: str, message: str, *, param: str = "", kind: str = "BadRequest"
) -> JSONResponse:
    request_id = uuid.uuid4().hex
    body = {
        "error": {
            "code": code,
            "message": f"{message} Request ID: {request_id}",
            "param": param,
            "type": kind,
        }
    }
    return JSONResponse(body, status_code=status, headers={"X-Request-Id": request_id})


def answer(body: dict[str, object]) -> JSONResponse:
    return JSONResponse(body, headers={"X-Request-Id": uuid.uuid4().hex})


def authenticate(request: Request) -> str | JSONResponse:
    """The caller's API key from ``Authorization: Bearer <key>``, or the 401 to answer."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return error(401, "AuthenticationError", "The API key is missing.", kind="Unauthorized")
    if key == INVALID_KEY:
        return error(401, "AuthenticationError", "The API key is invalid.", kind="Unauthorized")
    return key


def _parse(raw: bytes) -> CreateTask | JSONResponse:
    try:
        body = CreateTask.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "missing":
            return error(400, "MissingParameter", f"{where} is required.", param=where)
        return error(400, "InvalidParameter", f"{where}: {first['msg']}", param=where)
    if not body.model.startswith(MODEL_PREFIXES):
        message = f"The model or endpoint {body.model} does not exist."
        return error(404, "InvalidEndpointOrModel.NotFound", message, kind="NotFound")
    return _check_content(body) or body


def _check_content(body: CreateTask) -> JSONResponse | None:
    """What the item types alone cannot say: texts have text, images a role, roles fit."""
    roles: list[str] = []
    for item in body.content:
        if item.type == "text" and not (item.text and item.text.strip()):
            return error(400, "InvalidParameter", "a text item needs text.", param="content")
        if item.type == "image_url":
            if item.image_url is None or not item.image_url.url.startswith(IMAGE_PREFIXES):
                message = "image_url.url must be a URL, a data:image URI or asset://."
                return error(400, "InvalidParameter", message, param="content")
            roles.append(item.role or "first_frame")
    frames_ok = tuple(roles) in FRAME_ROLES
    references_ok = bool(roles) and set(roles) == {"reference_image"} and len(roles) <= 4
    if roles and not (frames_ok or references_ok):
        message = f"image roles {roles} cannot be combined."
        return error(400, "InvalidParameter", message, param="content")
    if not roles and not any(item.type == "text" for item in body.content):
        return error(400, "MissingParameter", "content needs a text or an image.", param="content")
    if roles and "-t2v" in body.model:
        message = f"{body.model} is text-to-video and takes no image."
        return error(400, "InvalidParameter", message, param="content")
    return None


def _wall(registry: Registry, moment: float) -> int:
    """Unix seconds of a moment on the registry's monotonic clock."""
    return int(registry.clock.time() - (registry.clock.monotonic() - moment))


def _status(registry: Registry, task: Task) -> str:
    state = registry.state(task)
    if state is TaskState.RUNNING:
        return "queued" if registry.progress(task) < QUEUED_SHARE else "running"
    return str(state)  # succeeded, failed, cancelled: Ark's own words


def task_object(base_url: str, task: Task, registry: Registry) -> dict[str, object]:
    """The task as a GET answers it now (and as a callback carries it)."""
    status = _status(registry, task)
    ended = status in ("succeeded", "failed")
    body: dict[str, object] = {
        "id": task.id,
        "model": task.model,
        "status": status,
        "created_at": _wall(registry, task.started_at),
        "updated_at": _wall(registry, task.finish_at if ended else registry.clock.monotonic()),
    }
    params = task.params
    if status == "succeeded":
        urls = issue_urls(base_url, task, registry)
        body["content"] = {
            "video_url": urls.video,
            "last_frame_url": urls.cover if params.get("return_last_frame") else None,
        }
        body["usage"] = {"completion_tokens": 108900, "total_tokens": 108900}
        for name in ("seed", "resolution", "ratio", "duration", "service_tier"):
            body[name] = params.get(name)
        body["framespersecond"] = FPS
        body["execution_expires_after"] = params.get("execution_expires_after")
        body["generate_audio"] = bool(params.get("generate_audio"))
    elif status == "failed":
        body["error"] = {"code": "InternalServiceError", "message": "simulated failure"}
    return body


def callback_render(base_url: str, registry: Registry) -> Render:
    """What Ark POSTs to a ``callback_url``: the task object a GET would answer."""

    def render(task: Task) -> tuple[str, object]:
        body = task_object(base_url, task, registry)
        return str(body["status"]), body

    return render


def router(registry: Registry, callbacks: Callbacks) -> APIRouter:
    """Create, get and delete tasks; include with ``prefix=PREFIX``."""
    api = APIRouter()

    @api.post("/contents/generations/tasks", response_model=None)
    async def create(request: Request) -> JSONResponse:
        key = authenticate(request)
        if isinstance(key, JSONResponse):
            return key
        body = _parse(await request.body())
        if isinstance(body, JSONResponse):
            return body
        if registry.roll(registry.options.submit_error_rate):
            return error(500, "InternalServiceError", "simulated error.", kind="InternalError")
        try:
            task = registry.submit(
                provider=PROVIDER,
                key=key,
                model=body.model,
                request_id=None,  # Ark has no client-chosen request id
                params=body.model_dump(exclude={"content"}),
                id_prefix="cgt-",
            )
        except ConcurrencyExceeded:
            message = "Too many tasks in flight for this API key."
            return error(429, "RateLimitExceeded", message, kind="TooManyRequests")
        if body.callback_url:
            render = callback_render(str(request.base_url), registry)
            callbacks.follow(task, body.callback_url, render, (QUEUED_SHARE,))
        return answer({"id": task.id})

    @api.get("/contents/generations/tasks/{task_id}", response_model=None)
    async def get(task_id: str, request: Request) -> JSONResponse:
        key = authenticate(request)
        if isinstance(key, JSONResponse):
            return key
        registry.counters.polls += 1
        if registry.roll(registry.options.poll_error_rate):
            return error(500, "InternalServiceError", "simulated error.", kind="InternalError")
        task = registry.get(task_id, PROVIDER)
        if task is None:
            return error(404, "ResourceNotFound", f"task {task_id} not found.", kind="NotFound")
        return answer(task_object(str(request.base_url), task, registry))

    @api.delete("/contents/generations/tasks/{task_id}", response_model=None)
    async def delete(task_id: str, request: Request) -> JSONResponse:
        key = authenticate(request)
        if isinstance(key, JSONResponse):
            return key
        task = registry.get(task_id, PROVIDER)
        if task is None:
            return error(404, "ResourceNotFound", f"task {task_id} not found.", kind="NotFound")
        status = _status(registry, task)
        if status == "queued":
            registry.cancel(task)
        elif status in ("succeeded", "failed"):
            registry.forget(task.id)
        return answer({})

    return api
