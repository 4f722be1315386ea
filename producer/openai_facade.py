"""An OpenAI-compatible facade: the Videos API (``/v1/videos``, docs/wire-formats.md §2) over
vidqueue's jobs, so the official OpenAI SDKs and tools built for Sora can use vidqueue as is.

- A video *is* a job: the same id works under ``/v1/jobs``; scoping is by bearer token.
- ``model`` picks the provider: the first one in the providers file whose ``models`` lists it
  (without ``model``, the first model listed anywhere). ``seconds`` becomes the spec's
  ``duration`` and ``size`` its ``size``, checked by that provider's adapter (e.g. CogVideoX
  takes 5 or 10 seconds): an invalid one is a 400 naming the OpenAI parameter.
- ``input_reference`` (a file part, or ``{"image_url": ...}`` in JSON) becomes the job's image.
- Statuses: queued → ``queued``; submitting, running, mirroring → ``in_progress``; succeeded →
  ``completed``; failed and cancelled → ``failed`` (with ``error.code``).
- ``/content`` streams the *mirrored* file from S3 (``variant=video|thumbnail``), so any HTTP
  client gets the bytes in one response, redirects or not.
- ``DELETE`` on a finished video deletes its record and files (``deleted: true``); on an
  unfinished one it cancels the job (``deleted: false``) — OpenAI only deletes finished ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Final, Literal

from botocore.exceptions import ClientError
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from config.providers import Catalogue
from producer import web
from producer.progress import fraction
from producer.web import ApiError, Producer, client
from workers.domain.errors import CancelRefused, InvalidCursor, InvalidSpec
from workers.domain.jobs import TERMINAL, JobRecord, State, parse_iso
from workers.io.storage import storage_errors
from workers.io.uploads import MAX_UPLOAD_BYTES
from workers.redis import keys, listing
from workers.redis.store import record_from

router = APIRouter(prefix=web.OPENAI_PREFIX, tags=["OpenAI-compatible videos"])

STATUS: Final = {
    State.QUEUED: "queued",
    State.SUBMITTING: "in_progress",
    State.SUBMIT_UNKNOWN: "in_progress",
    State.RUNNING: "in_progress",
    State.MIRRORING: "in_progress",
    State.SUCCEEDED: "completed",
    State.FAILED: "failed",
    State.CANCELLED: "failed",
}
# What the SDK's poller waits between retrieves (header ``openai-poll-after-ms``).
POLL_AFTER_MS: Final = 1000
CREATE_FIELDS: Final = frozenset({"prompt", "model", "seconds", "size", "input_reference"})
# Job spec fields as the OpenAI parameters they came from.
PARAMS: Final = {"duration": "seconds", "image": "input_reference"}
CHUNK: Final = 1024 * 1024


def route(catalogue: Catalogue, model: str) -> str:
    """The provider serving ``model``: the first one whose ``models`` lists it."""
    for name, config in catalogue.providers.items():
        if model in config.models:
            return name
    served = [m for config in catalogue.providers.values() for m in config.models]
    raise ApiError(
        400,
        "model_not_found",
        f"The model {model!r} is not served here; available: {', '.join(served) or 'none'}",
        "model",
    )


def default_model(catalogue: Catalogue) -> str:
    for config in catalogue.providers.values():
        if config.models:
            return config.models[0]
    raise ApiError(400, "model_not_found", "no model is configured; name one", "model")


def video(record: JobRecord) -> dict[str, Any]:
    """The OpenAI Video object of a job."""
    status = STATUS[record.state]
    finished = record.state in TERMINAL and record.completed_at
    completed_at = _unix(record.completed_at) if finished and record.completed_at else None
    duration = record.spec.get("duration")
    error = None
    if status == "failed":
        code, message = ("failed", "the job failed")
        if record.error:
            code, message = record.error.code, record.error.message
        error = {"code": code, "message": message}
    return {
        "id": record.id,
        "object": "video",
        "model": record.model,
        "status": status,
        "progress": _progress(record, status),
        "created_at": _unix(record.created_at),
        "completed_at": completed_at,
        "expires_at": completed_at + keys.RECORD_TTL_S
        if completed_at and status == "completed"
        else None,
        "prompt": record.spec.get("prompt"),
        "seconds": str(duration) if duration is not None else None,
        "size": record.spec.get("size"),
        "remixed_from_video_id": None,
        "error": error,
    }


def _unix(iso: str) -> int:
    return int(parse_iso(iso).timestamp())


def _progress(record: JobRecord, status: str) -> int:
    if status == "completed":
        return 100
    if status in ("queued", "failed"):
        return 0
    return max(1, min(99, int(fraction(record) * 100)))


def _respond(record: JobRecord) -> JSONResponse:
    headers = {} if record.terminal else {"openai-poll-after-ms": str(POLL_AFTER_MS)}
    return JSONResponse(video(record), headers=headers)


def _found(video_id: str, producer: str) -> JobRecord:
    record = client().get(video_id, producer=producer) if len(video_id) <= 128 else None
    if record is None:
        raise ApiError(404, "not_found", f"No video found with id {video_id!r}", "video_id")
    return record


# -- create --------------------------------------------------------------------------------


@router.post("", summary="Create a video (OpenAI-compatible)")
async def create_video(
    request: Request,
    producer: Producer,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    fields, image = await _create_fields(request)
    spec = _spec(fields, idempotency_key)
    if image is not None:
        spec["image"] = await run_in_threadpool(_upload, image, producer)
    try:
        record = await run_in_threadpool(client().enqueue, spec, producer=producer)
    except InvalidSpec as exc:
        param = PARAMS.get(exc.field.split(".")[0], exc.field)
        raise ApiError(400, exc.code, exc.message, param) from None
    return _respond(record)


async def _create_fields(request: Request) -> tuple[dict[str, Any], bytes | None]:
    """The create parameters, from multipart (what the SDK sends) or JSON, and the bytes of an
    ``input_reference`` file part."""
    if web.is_multipart(request):
        form = await web.read_form(request, web.MAX_JOB_BODY, "input_reference")
        fields: dict[str, Any] = {}
        image = None
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != "input_reference":
                    raise ApiError(400, "invalid_request", "unexpected file part", name)
                image = await value.read()
            else:
                fields[name] = value
        _known(fields)
        return fields, image
    data = await web.json_object(request)
    _known(data)
    reference = data.pop("input_reference", None)
    if reference is not None:
        data["image"] = _reference_url(reference)
    return data, None


def _known(fields: dict[str, Any]) -> None:
    for name in fields:
        if name not in CREATE_FIELDS:
            raise ApiError(
                400, "unknown_parameter", f"Unrecognized request argument supplied: {name}", name
            )


def _reference_url(reference: Any) -> str:
    if isinstance(reference, dict) and isinstance(reference.get("image_url"), str):
        return str(reference["image_url"])
    raise ApiError(
        400,
        "invalid_request",
        'input_reference must be a file part or {"image_url": "<http(s) or data: URL>"} '
        "(file_id is not supported)",
        "input_reference",
    )


def _spec(fields: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    catalogue = client().catalogue
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "invalid_request", "Missing required parameter: 'prompt'.", "prompt")
    model = fields.get("model")
    if model is None:
        model = default_model(catalogue)
    if not isinstance(model, str):
        raise ApiError(400, "invalid_request", "model must be a string", "model")
    spec: dict[str, Any] = {"provider": route(catalogue, model), "model": model, "prompt": prompt}
    seconds = fields.get("seconds")
    if seconds is not None:
        text = str(seconds)
        if isinstance(seconds, bool) or not text.isdigit() or len(text) > 6:
            raise ApiError(400, "invalid_request", "seconds must be a number, e.g. '8'", "seconds")
        spec["duration"] = int(text)
    if fields.get("size") is not None:
        spec["size"] = fields["size"]
    if "image" in fields:
        spec["image"] = fields["image"]
    if idempotency_key:
        spec["idempotency_key"] = idempotency_key
    return spec


def _upload(data: bytes, producer: str) -> str:
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "too_large", "input_reference is larger than 5 MB", "input_reference")
    try:
        return client().upload(data, producer=producer).ref
    except InvalidSpec as exc:
        raise ApiError(400, exc.code, exc.message, "input_reference") from None


# -- read, list, delete --------------------------------------------------------------------


@router.get("/{video_id}", summary="Retrieve a video (OpenAI-compatible)")
def retrieve_video(video_id: str, producer: Producer) -> JSONResponse:
    return _respond(_found(video_id, producer))


@router.get("/{video_id}/content", summary="Download a video's content (OpenAI-compatible)")
def video_content(
    video_id: str,
    producer: Producer,
    variant: Literal["video", "thumbnail", "spritesheet"] = "video",
) -> StreamingResponse:
    """The mirrored MP4 (``video``) or cover image (``thumbnail``), streamed from S3."""
    record = _found(video_id, producer)
    if record.state != State.SUCCEEDED:
        status = STATUS[record.state]
        raise ApiError(400, "video_not_ready", f"Video is not ready (status {status}).", None)
    item = (record.result or {}).get("video" if variant == "video" else "cover")
    if variant == "spritesheet" or item is None:
        raise ApiError(404, "not_found", f"Video {video_id} has no {variant}", "variant")
    storage = client().storage
    with storage_errors("read object"):
        try:
            found = storage.client.get_object(Bucket=item["bucket"], Key=item["key"])
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise ApiError(404, "not_found", "the stored file is gone", "video_id") from None
            raise
    body = found["Body"]

    def chunks() -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    headers = {"content-length": str(found.get("ContentLength", item["size"]))}
    return StreamingResponse(chunks(), media_type=item["content_type"], headers=headers)


@router.get("", summary="List videos (OpenAI-compatible)")
def list_videos(
    producer: Producer,
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    index = keys.by_producer(producer)
    try:
        page = listing.scan(
            client().deps.redis, index, limit=limit, after=after, ascending=order == "asc"
        )
    except InvalidCursor as exc:
        raise ApiError(400, exc.code, exc.message, "after") from None
    data = [video(record_from(fields)) for fields in page.found]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.next is not None,
    }


@router.delete("/{video_id}", summary="Delete (or cancel) a video (OpenAI-compatible)")
def delete_video(video_id: str, producer: Producer) -> dict[str, Any]:
    record = _found(video_id, producer)
    try:
        if record.state in TERMINAL:
            client().purge(video_id, producer=producer)
            return {"id": video_id, "object": "video.deleted", "deleted": True}
        client().cancel(video_id, producer=producer)
    except CancelRefused as exc:
        raise ApiError(409, exc.code, exc.message, None) from None
    except KeyError:
        raise ApiError(
            404, "not_found", f"No video found with id {video_id!r}", "video_id"
        ) from None
    return {"id": video_id, "object": "video.deleted", "deleted": False}
