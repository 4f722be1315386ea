"""Kling's own API, on the wire as docs/wire-formats.md §5 says.

Mounted under ``/kling``, so a client's ``base_url`` is ``http://127.0.0.1:PORT/kling``. Every
request needs ``Authorization: Bearer <JWT>``: HS256, signed with the secret key registered for
the token's ``iss`` (the access key), inside its ``nbf``/``exp`` window. The access key is the
caller's identity for per-key counting. Two pairs are known from the start (``SECRETS``); tests
register more with ``POST /kling/_sim/keys``.

Answers are ``{"code", "message", "request_id", "data"}`` with integer codes (the token check
and the error envelope live in ``simulator.kling_auth``). A task is ``submitted`` for the first
``QUEUED_SHARE`` of its generation time, then ``processing``, then ``succeed`` or ``failed``; it
is found only under the family (``text2video``/``image2video``) it was created in.
``external_task_id`` is counted as the request id: a repeated one is refused (400, code 1201) and
counted as a duplicate. The list endpoint also filters by ``external_task_id`` when given as a
query parameter (the lookup vidqueue's adapter uses).

A submit's ``callback_url`` is POSTed the task object (the poll's ``data``) on each status change,
unsigned; ``callback_wrapped`` wraps it in the answer envelope instead (which one Kling sends is
unconfirmed).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.callbacks import Callbacks, Render
from simulator.kling_auth import authenticate, error
from simulator.media import issue_urls
from simulator.state import ConcurrencyExceeded, DuplicateRequestId, Registry, Task, TaskState

PREFIX: Final = "/kling"
PROVIDER: Final = "kling"
SECRETS: Final = {
    "sim-kling-access": "sim-kling-secret-test",
    "sim-kling-access-1": "sim-kling-secret-1",
}
FAMILIES: Final = ("text2video", "image2video")
_T2V: Final = (
    "kling-v1",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
)
MODELS: Final = {"text2video": _T2V, "image2video": (*_T2V, "kling-v1-5", "kling-v2-1")}
QUEUED_SHARE: Final = 0.2
_STATUS: Final = {
    TaskState.SUCCEEDED: "succeed",
    TaskState.FAILED: "failed",
}

Amount = Annotated[float, Field(ge=-10, le=10)]


class CameraConfig(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    horizontal: Amount = 0
    vertical: Amount = 0
    pan: Amount = 0
    tilt: Amount = 0
    roll: Amount = 0
    zoom: Amount = 0


class CameraControl(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    type: Literal["simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"]
    config: CameraConfig | None = None


class WatermarkInfo(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    enabled: bool


Prompt = Annotated[str, Field(max_length=2500)]


class CreateVideo(BaseModel):
    """Both families' submit body. Strict: ``"duration": 5`` (not a string) is refused."""

    model_config = ConfigDict(strict=True, extra="ignore")

    model_name: str = "kling-v1"
    prompt: Prompt | None = None
    negative_prompt: Prompt | None = None
    cfg_scale: Annotated[float, Field(ge=0, le=1)] | None = None
    mode: Literal["std", "pro"] = "std"
    aspect_ratio: Literal["16:9", "9:16", "1:1"] | None = None
    duration: Literal["5", "10"] = "5"
    sound: Literal["on", "off"] | None = None
    camera_control: CameraControl | None = None
    image: Annotated[str, Field(min_length=1)] | None = None
    image_tail: Annotated[str, Field(min_length=1)] | None = None
    watermark_info: WatermarkInfo | None = None
    callback_url: str | None = None
    external_task_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


def reply(
    data: object, *, status: int = 200, code: int = 0, message: str = "SUCCEED"
) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": uuid.uuid4().hex, "data": data}
    return JSONResponse(body, status_code=status)


def _parse(raw: bytes, family: str) -> CreateVideo | JSONResponse:
    try:
        body = CreateVideo.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return error(400, 1201, f"invalid parameter {where}: {first['msg']}")
    if body.model_name not in MODELS[family]:
        return error(404, 1203, f"model {body.model_name} does not exist for {family}")
    problem = _problem(body, family)
    return error(400, 1201, problem) if problem else body


def _problem(body: CreateVideo, family: str) -> str | None:
    """What the field types alone cannot say, per docs/wire-formats.md §5."""
    if family == "text2video" and not (body.prompt and body.prompt.strip()):
        return "prompt is required for text2video"
    if family == "image2video" and (body.image is None or body.aspect_ratio is not None):
        return "image2video needs an image and takes no aspect_ratio"
    if family == "text2video" and (body.image or body.image_tail):
        return "text2video takes no image"
    for image in (body.image, body.image_tail):
        if image is not None and image.startswith("data:"):
            return "image must be a URL or raw base64, without the data: prefix"
    if body.cfg_scale is not None and body.model_name.startswith("kling-v2"):
        return f"{body.model_name} does not support cfg_scale"
    if body.sound is not None and body.model_name != "kling-v2-6":
        return f"{body.model_name} does not support sound"
    if body.camera_control is not None:
        if body.image_tail is not None:
            return "image_tail and camera_control cannot be used together"
        config = body.camera_control.config
        moving = [value for value in (config.model_dump().values() if config else []) if value]
        if body.camera_control.type == "simple" and len(moving) != 1:
            return "camera_control type simple needs exactly one non-zero config value"
        if body.camera_control.type != "simple" and config is not None:
            return f"camera_control type {body.camera_control.type} takes no config"
    return None


def _ms(registry: Registry, moment: float) -> int:
    """Unix milliseconds of a moment on the registry's monotonic clock."""
    return int((registry.clock.time() - (registry.clock.monotonic() - moment)) * 1000)


def task_object(base_url: str, task: Task, registry: Registry) -> dict[str, object]:
    """The task as a poll's ``data`` shows it now (and as a callback carries it)."""
    state = registry.state(task)
    if state is TaskState.RUNNING:
        status = "submitted" if registry.progress(task) < QUEUED_SHARE else "processing"
    else:
        status = _STATUS[state]
    external = task.params.get("external_task_id")
    ended = state is not TaskState.RUNNING
    body: dict[str, object] = {
        "task_id": task.id,
        "task_status": status,
        "task_status_msg": "simulated failure: generation error" if status == "failed" else "",
        "task_info": {"external_task_id": external} if external else {},
        "created_at": _ms(registry, task.started_at),
        "updated_at": _ms(registry, task.finish_at if ended else registry.clock.monotonic()),
    }
    if status == "succeed":
        url = issue_urls(base_url, task, registry).video
        video = {"id": f"v-{task.id}", "url": url, "watermark_url": "", "duration": "5.1"}
        body["task_result"] = {"videos": [video]}
        body["watermark_info"] = task.params.get("watermark_info") or {"enabled": False}
        body["final_unit_deduction"] = "1"
    return body


def callback_render(base_url: str, registry: Registry) -> Render:
    """What Kling POSTs to a ``callback_url``: the task object, wrapped if the option says so."""

    def render(task: Task) -> tuple[str, object]:
        body = task_object(base_url, task, registry)
        status = str(body["task_status"])
        if registry.options.callback_wrapped:
            envelope = {"code": 0, "message": "SUCCEED", "request_id": uuid.uuid4().hex}
            return status, {**envelope, "data": body}
        return status, body

    return render


def _page(request: Request, name: str, low: int, high: int, default: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = int(raw) if raw.isdigit() else -1
    return value if low <= value <= high else None


def router(registry: Registry, callbacks: Callbacks) -> APIRouter:
    """Submit, get and list routes for both families; include with ``prefix=PREFIX``."""
    api = APIRouter()
    secrets = dict(SECRETS)

    def caller(request: Request) -> str | JSONResponse:
        return authenticate(request, secrets, registry.clock.time())

    @api.post("/_sim/keys", response_model=None)
    async def register_key(request: Request) -> JSONResponse:
        """Accept another access/secret pair: ``{"access_key": …, "secret_key": …}``."""
        try:
            pair = json.loads(await request.body())
            access, secret = pair["access_key"], pair["secret_key"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"detail": "needs access_key and secret_key"}, status_code=422)
        if not (isinstance(access, str) and isinstance(secret, str) and access and secret):
            return JSONResponse({"detail": "keys must be non-empty strings"}, status_code=422)
        secrets[access] = secret
        return JSONResponse({"access_keys": sorted(secrets)})

    @api.post("/v1/videos/{family}", response_model=None)
    async def submit(family: str, request: Request) -> JSONResponse:
        key = caller(request)
        if isinstance(key, JSONResponse):
            return key
        if family not in FAMILIES:
            return error(404, 1202, f"no such method: {family}")
        body = _parse(await request.body(), family)
        if isinstance(body, JSONResponse):
            return body
        if registry.roll(registry.options.submit_error_rate):
            return error(500, 5000, "simulated internal error")
        try:
            task = registry.submit(
                provider=PROVIDER,
                key=key,
                model=body.model_name,
                request_id=body.external_task_id,
                params={**body.model_dump(exclude_none=True), "family": family},
            )
        except DuplicateRequestId:
            return error(400, 1201, "external_task_id already exists")
        except ConcurrencyExceeded:
            return error(429, 1303, "parallel task over resource pack limit")
        base_url = str(request.base_url)
        if body.callback_url:
            render = callback_render(base_url, registry)
            callbacks.follow(task, body.callback_url, render, (QUEUED_SHARE,))
        data = task_object(base_url, task, registry)
        fields = ("task_id", "task_info", "task_status", "created_at", "updated_at")
        return reply({name: data[name] for name in fields})

    @api.get("/v1/videos/{family}/{task_id}", response_model=None)
    async def get(family: str, task_id: str, request: Request) -> JSONResponse:
        key = caller(request)
        if isinstance(key, JSONResponse):
            return key
        registry.counters.polls += 1
        if registry.roll(registry.options.poll_error_rate):
            return error(500, 5000, "simulated internal error")
        task = registry.get(task_id, PROVIDER)
        if task is None or task.key != key or task.params.get("family") != family:
            return error(404, 1203, f"task {task_id} does not exist under {family}")
        return reply(task_object(str(request.base_url), task, registry))

    @api.get("/v1/videos/{family}", response_model=None)
    async def list_tasks(family: str, request: Request) -> JSONResponse:
        key = caller(request)
        if isinstance(key, JSONResponse):
            return key
        registry.counters.polls += 1
        number = _page(request, "pageNum", 1, 1000, 1)
        size = _page(request, "pageSize", 1, 500, 30)
        if number is None or size is None:
            return error(400, 1201, "pageNum must be 1-1000 and pageSize 1-500")
        external = request.query_params.get("external_task_id")
        tasks = [
            task
            for task in registry.tasks_of(PROVIDER, key)
            if task.params.get("family") == family
            and (external is None or task.params.get("external_task_id") == external)
        ]
        page = tasks[(number - 1) * size : number * size]
        return reply([task_object(str(request.base_url), task, registry) for task in page])

    return api
