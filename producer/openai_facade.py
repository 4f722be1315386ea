"""An OpenAI-compatible facade: the Videos API (``/v1/videos``, docs/wire-formats.md §2) over
vidqueue's jobs, so the official OpenAI SDKs and tools built for Sora can use vidqueue as is.

- A video *is* a job: the same id works under ``/v1/jobs``; scoping is by bearer token.
- Parameters and the Video object map onto jobs as ``producer.openai_videos`` says;
  ``input_reference`` (a file part, or ``{"image_url": ...}`` in JSON) becomes the job's image.
- ``/content`` streams the *mirrored* file from S3 (``variant=video|thumbnail``), so any HTTP
  client gets the bytes in one response, redirects or not.
- ``DELETE`` on a finished video deletes its record and files (``deleted: true``); on an
  unfinished one it cancels the job (``deleted: false``) — OpenAI only deletes finished ones.
- Gateways' fields are taken (``user``, ``metadata``, new-api's ``duration`` and ``image``:
  ``producer.openai_videos``); a spec the provider refuses is a 400 naming the parameter the
  request used (``openai_videos.renamed``).
- Errors come in OpenAI's shape with OpenAI's codes, from the API's one error table
  (``producer.api_errors``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from typing import Annotated, Any, Final, Literal

from botocore.exceptions import ClientError
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from producer import openai_videos, web
from producer.openai_videos import STATUS, Video, VideoDeleted, VideoList, video
from producer.openapi import errors, json_or_form
from producer.web import Producer, RouteError, Who, client
from workers.domain.errors import InvalidSpec, UploadTooLarge
from workers.domain.jobs import TERMINAL, JobRecord, State
from workers.io.storage import storage_errors
from workers.io.uploads import MAX_UPLOAD_BYTES

router = APIRouter(prefix=web.OPENAI_PREFIX, tags=["OpenAI-compatible videos"])

# What the SDK's poller waits between retrieves (header ``openai-poll-after-ms``).
POLL_AFTER_MS: Final = 1000
CHUNK: Final = 1024 * 1024
_POLL_HEADER: Final = {
    "openai-poll-after-ms": {
        "description": "while unfinished: how long to wait before retrieving again",
        "schema": {"type": "integer"},
    }
}
_VIDEO: Final = {"model": Video, "description": "The Video object", "headers": _POLL_HEADER}
_CONTENT: Final = {
    "description": "The mirrored file's bytes",
    "content": {
        "video/mp4": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
    },
}
_METADATA_KEY: Final = re.compile(r"metadata\[([^\[\]]{1,64})\]")


def _respond(record: JobRecord) -> JSONResponse:
    headers = {} if record.terminal else {"openai-poll-after-ms": str(POLL_AFTER_MS)}
    return JSONResponse(video(record, client().catalogue), headers=headers)


# -- create --------------------------------------------------------------------------------


@router.post(
    "",
    summary="Create a video (OpenAI-compatible)",
    responses={200: _VIDEO, **errors(400, 401, 409, 413, 503, openai=True)},
    openapi_extra=json_or_form("VideoCreate", "VideoCreateForm"),
)
async def create_video(
    request: Request,
    who: Who,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """The job's fair-share key is the token's default tenant: OpenAI's parameters name none."""
    fields, reference, image = await _create_fields(request)
    spec, names = openai_videos.spec_from(
        client().catalogue, fields, idempotency_key, reference=reference
    )
    if image is not None:
        if "image" in spec:
            raise RouteError(
                400, "invalid_value", "give input_reference or image, not both", "image"
            )
        spec["image"] = await client().s3.run(_upload, image, who.producer)
    accept = partial(client().accept, [spec], producer=who.producer, one=True, fair=who.default)
    try:
        [record] = (await run_in_threadpool(accept)).records()
    except UploadTooLarge:
        raise
    except InvalidSpec as exc:
        raise openai_videos.renamed(exc, names) from None
    return _respond(record)


async def _create_fields(request: Request) -> tuple[dict[str, Any], str | None, bytes | None]:
    """The create parameters, from multipart (what the SDK sends) or JSON; a JSON
    ``input_reference``'s image URL; the bytes of an ``input_reference`` file part."""
    if web.is_multipart(request):
        fields, image = await _form_fields(request)
        return fields, None, image
    data = await web.json_object(request)
    openai_videos.known(data)
    reference = data.pop("input_reference", None)
    url = openai_videos.reference_url(reference) if reference is not None else None
    return data, url, None


async def _form_fields(request: Request) -> tuple[dict[str, Any], bytes | None]:
    """The form's fields; ``metadata[key]`` parts (how the SDK sends an object in a form)
    become one ``metadata`` object."""
    form = await web.read_form(request, web.MAX_JOB_BODY, "input_reference")
    fields: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    image = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name != "input_reference":
                raise RouteError(400, "invalid_request", "unexpected file part", name)
            image = await value.read()
        elif (key := _METADATA_KEY.fullmatch(name)) is not None:
            metadata[key[1]] = value
        else:
            fields[name] = value
    if metadata:
        if "metadata" in fields:
            raise RouteError(400, "invalid_value", "metadata given twice", "metadata")
        fields["metadata"] = metadata
    openai_videos.known(fields)
    return fields, image


def _upload(data: bytes, producer: str) -> str:
    if len(data) > MAX_UPLOAD_BYTES:
        raise RouteError(413, "too_large", "input_reference is larger than 5 MB", "input_reference")
    return client().upload(data, producer=producer).ref


# -- read, list, delete --------------------------------------------------------------------


@router.get(
    "/{video_id}",
    summary="Retrieve a video (OpenAI-compatible)",
    responses={200: _VIDEO, **errors(401, 404, 503, openai=True)},
)
def retrieve_video(video_id: str, producer: Producer) -> JSONResponse:
    return _respond(client().read(video_id, producer=producer))


@router.get(
    "/{video_id}/content",
    summary="Download a video's content (OpenAI-compatible)",
    response_class=StreamingResponse,
    responses={200: _CONTENT, **errors(400, 401, 404, 503, openai=True)},
)
def video_content(
    video_id: str,
    producer: Producer,
    variant: Literal["video", "thumbnail", "spritesheet"] = "video",
) -> StreamingResponse:
    """The mirrored MP4 (``video``) or cover image (``thumbnail``), streamed from S3."""
    record = client().read(video_id, producer=producer)
    if record.state != State.SUCCEEDED:
        status = STATUS[record.state]
        raise RouteError(400, "video_not_ready", f"Video is not ready (status {status}).", None)
    item = (record.result or {}).get("video" if variant == "video" else "cover")
    if variant == "spritesheet" or item is None:
        raise RouteError(404, "not_found", f"Video {video_id} has no {variant}", "variant")
    found = client().s3.call(_stored_object, item)
    body = found["Body"]

    def chunks() -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    headers = {"content-length": str(found.get("ContentLength", item["size"]))}
    return StreamingResponse(chunks(), media_type=item["content_type"], headers=headers)


def _stored_object(item: dict[str, Any]) -> Any:
    """The S3 object of a mirrored file (a 404 when it is gone). It runs on the S3 threads
    (``producer.files``): a stalled S3 is a 503 within seconds. Its body is then read a chunk
    at a time, each read bounded by the request client's read timeout."""
    with storage_errors("read object"):
        try:
            return client().storage.client.get_object(Bucket=item["bucket"], Key=item["key"])
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise RouteError(404, "not_found", "the stored file is gone", "video_id") from None
            raise


@router.get(
    "",
    summary="List videos (OpenAI-compatible)",
    responses={200: {"model": VideoList}, **errors(400, 401, 503, openai=True)},
)
def list_videos(
    producer: Producer,
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    page = client().stored.page(producer, limit=limit, after=after, ascending=order == "asc")
    data = [video(record, client().catalogue) for record in page.records]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.next is not None,
    }


@router.delete(
    "/{video_id}",
    summary="Delete (or cancel) a video (OpenAI-compatible)",
    responses={200: {"model": VideoDeleted}, **errors(401, 404, 409, 503, openai=True)},
)
def delete_video(video_id: str, producer: Producer) -> dict[str, Any]:
    record = client().read(video_id, producer=producer)
    if record.state in TERMINAL:
        client().purge(video_id, producer=producer)
        return {"id": video_id, "object": "video.deleted", "deleted": True}
    client().cancel(video_id, producer=producer)
    return {"id": video_id, "object": "video.deleted", "deleted": False}
