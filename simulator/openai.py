"""OpenAI Videos API (Sora 2), on the wire as docs/wire-formats.md §2 says.

Mounted under ``/openai/v1``, so a client's ``base_url`` is ``http://127.0.0.1:PORT/openai/v1``.
``POST /videos`` takes JSON or ``multipart/form-data`` (``input_reference`` as a file part);
``GET /videos/{id}`` returns the Video object with an ``openai-poll-after-ms`` header while it
runs; ``GET /videos/{id}/content`` serves the MP4 (or ``?variant=thumbnail``, a PNG here where
OpenAI serves WebP) and, unlike the public ``/files`` URLs, needs the API key. Content expires
``url_ttl_s`` after the video completed (``expires_at``); expired requests answer 404 and are
counted with the other expired-URL hits (``expired_url_403``).
"""

from __future__ import annotations

import json
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from simulator.media import cover_png, video_chunks
from simulator.state import ConcurrencyExceeded, Registry, Task, TaskState

PREFIX: Final = "/openai/v1"
PROVIDER: Final = "openai"
MODELS: Final = frozenset(
    {"sora-2", "sora-2-pro", "sora-2-2025-10-06", "sora-2-pro-2025-10-06", "sora-2-2025-12-08"}
)
SECONDS: Final = ("4", "8", "12")
SIZES: Final = ("720x1280", "1280x720", "1024x1792", "1792x1024")
PRO_SIZES: Final = ("1920x1080", "1080x1920")
IMAGE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/webp"})
# The one key the simulator treats as revoked, as in the Zhipu router.
INVALID_KEY: Final = "invalid-key"
# A running task reports "queued" for this first share of its generation, then "in_progress".
QUEUED_SHARE: Final = 0.2
POLL_AFTER_MS: Final = (100, 2000)


def error(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """OpenAI's error envelope: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def server_error() -> JSONResponse:
    return error(500, "The server had an error processing your request.", kind="server_error")


def authenticate(request: Request) -> str | JSONResponse:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return error(401, "You didn't provide an API key.", code="missing_api_key")
    if key == INVALID_KEY:
        return error(401, "Incorrect API key provided.", code="invalid_api_key")
    return key


def wall_time(registry: Registry, moment: float) -> int:
    """Unix seconds of a moment on the registry's monotonic clock."""
    return int(registry.clock.time() - (registry.clock.monotonic() - moment))


async def _read_fields(request: Request) -> dict[str, Any] | JSONResponse:
    """The submit's fields from JSON or multipart; an uploaded file is summarised, not kept."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        fields: dict[str, Any] = {}
        async with request.form() as form:
            for name, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    fields[name] = value
                    continue
                data = await value.read()
                if name != "input_reference" or value.content_type not in IMAGE_TYPES or not data:
                    return error(
                        400, "input_reference must be a jpeg, png or webp file", param=name
                    )
                fields[name] = {"file": value.filename, "bytes": len(data)}
        return fields
    try:
        body = json.loads(await request.body())
    except ValueError:
        return error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return error(400, "The request body must be a JSON object.")
    # A null is an unset parameter: its default applies.
    body = {name: value for name, value in body.items() if value is not None}
    reference = body.get("input_reference")
    if reference is not None and not (
        isinstance(reference, dict)
        and any(isinstance(reference.get(k), str) for k in ("image_url", "file_id"))
    ):
        return error(400, "input_reference needs image_url or file_id", param="input_reference")
    return body


def _check(fields: dict[str, Any]) -> JSONResponse | None:
    """The SDK's parameter rules: ``seconds`` is a string, 1080p needs sora-2-pro."""
    fields.setdefault("model", "sora-2")
    fields.setdefault("seconds", "4")
    fields.setdefault("size", "720x1280")
    prompt, model = fields.get("prompt"), fields["model"]
    if not isinstance(prompt, str) or not prompt.strip():
        return error(400, "Missing required parameter: 'prompt'.", param="prompt")
    if model not in MODELS:
        return error(400, f"Invalid model {model!r}.", param="model", code="invalid_value")
    if fields["seconds"] not in SECONDS:
        return error(400, "seconds must be '4', '8' or '12'.", param="seconds")
    sizes = SIZES + PRO_SIZES if "-pro" in str(model) else SIZES
    if fields["size"] not in sizes:
        return error(400, f"size must be one of {', '.join(sizes)}.", param="size")
    return None


def video_object(task: Task, registry: Registry) -> dict[str, Any]:
    state, progress = registry.state(task), registry.progress(task)
    body: dict[str, Any] = {
        "id": task.id,
        "object": "video",
        "model": task.model,
        "status": "queued" if progress < QUEUED_SHARE else "in_progress",
        "progress": int(progress * 100),
        "created_at": wall_time(registry, task.started_at),
        "completed_at": None,
        "expires_at": None,
        "prompt": task.params.get("prompt"),
        "seconds": task.params.get("seconds"),
        "size": task.params.get("size"),
        "remixed_from_video_id": None,
        "error": None,
    }
    if state is TaskState.SUCCEEDED:
        body.update(status="completed", progress=100, completed_at=_completed_at(task, registry))
        body["expires_at"] = _expires_at(task, registry)
    elif state is TaskState.FAILED:
        failure = {"code": "video_generation_failed", "message": "simulated generation failure"}
        body.update(status="failed", error=failure)
    return body


def _completed_at(task: Task, registry: Registry) -> int:
    return wall_time(registry, task.finish_at)


def _expires_at(task: Task, registry: Registry) -> int:
    return int(_completed_at(task, registry) + registry.options.url_ttl_s)


def _poll_after_ms(task: Task, registry: Registry) -> str:
    remaining_ms = (task.finish_at - registry.clock.monotonic()) * 1000
    low, high = POLL_AFTER_MS
    return str(int(min(high, max(low, remaining_ms))))


def router(registry: Registry) -> APIRouter:
    """Create, retrieve and content routes; include with ``prefix=PREFIX``."""
    api = APIRouter()

    @api.post("/videos", response_model=None)
    async def create(request: Request) -> JSONResponse:
        key = authenticate(request)
        if isinstance(key, JSONResponse):
            return key
        fields = await _read_fields(request)
        if isinstance(fields, JSONResponse):
            return fields
        invalid = _check(fields)
        if invalid is not None:
            return invalid
        if registry.roll(registry.options.submit_error_rate):
            return server_error()
        try:
            task = registry.submit(
                provider=PROVIDER,
                key=key,
                model=str(fields["model"]),
                request_id=None,  # the create call takes no idempotency id
                params=fields,
                id_prefix="video_",
            )
        except ConcurrencyExceeded:
            return error(
                429,
                "Too many concurrent video generations for this key.",
                kind="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": "1"},
            )
        return JSONResponse(video_object(task, registry))

    @api.get("/videos/{video_id}", response_model=None)
    async def retrieve(video_id: str, request: Request) -> JSONResponse:
        key = authenticate(request)
        if isinstance(key, JSONResponse):
            return key
        registry.counters.polls += 1
        if registry.roll(registry.options.poll_error_rate):
            return server_error()
        task = registry.get(video_id, PROVIDER)
        if task is None:
            return error(404, f"Video {video_id} not found.", code="not_found")
        headers = {}
        if registry.state(task) is TaskState.RUNNING:
            headers["openai-poll-after-ms"] = _poll_after_ms(task, registry)
        return JSONResponse(video_object(task, registry), headers=headers)

    @api.get("/videos/{video_id}/content", response_model=None)
    async def content(video_id: str, request: Request, variant: str = "video") -> Response:
        key = authenticate(request)
        if isinstance(key, JSONResponse):
            return key
        if variant not in ("video", "thumbnail"):
            return error(400, "The simulator serves variant video or thumbnail.", param="variant")
        task = registry.get(video_id, PROVIDER)
        if task is None or registry.state(task) is not TaskState.SUCCEEDED:
            return error(404, f"Video {video_id} not found or not completed.", code="not_found")
        if registry.clock.time() > _expires_at(task, registry):
            registry.counters.expired_url_403 += 1
            return error(404, f"Video {video_id} content has expired.", code="not_found")
        if variant == "thumbnail":
            registry.counters.cover_downloads += 1
            return Response(cover_png(task.id), media_type="image/png")
        registry.counters.downloads += 1
        return StreamingResponse(
            video_chunks(task.id, task.video_bytes),
            media_type="video/mp4",
            headers={"Content-Length": str(task.video_bytes)},
        )

    return api
