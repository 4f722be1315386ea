"""``POST /v1/uploads``: image bytes in, a reference out that a job spec takes as its ``image``.

Its errors name the ``file`` (``producer.api_errors``' upload surface): an image that is not a
PNG or JPEG is a 422, one over 5 MB a 413. Storing runs on the S3 threads (``producer.files``),
awaited without holding a thread of the API's shared pool: a stalled S3 is a 503 within
seconds, and never starves the routes that do not touch S3.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from producer import web
from producer.openapi import errors
from producer.web import Producer, RouteError, client
from workers.io.uploads import MAX_UPLOAD_BYTES

router = APIRouter(tags=["uploads"])

_BINARY: Final = {"type": "string", "format": "binary"}
_FILE: Final = {"type": "object", "properties": {"file": _BINARY}}
_UPLOAD_BODY: Final = web.openapi_body(
    {
        "image/png": {"schema": _BINARY},
        "image/jpeg": {"schema": _BINARY},
        "multipart/form-data": {"schema": _FILE},
    }
)


class UploadOut(BaseModel):
    id: str
    image: str
    content_type: str
    size: int
    sha256: str


@router.post(
    web.UPLOADS_PATH,
    status_code=201,
    response_model=UploadOut,
    openapi_extra=_UPLOAD_BODY,
    responses=errors(401, 413, 422, 503),
)
async def upload(request: Request, producer: Producer) -> UploadOut:
    """Store an image (PNG or JPEG by content, ≤ 5 MB), as the raw body or a multipart ``file``
    part. The returned ``image`` is usable as a job spec's ``image`` (yours only)."""
    data = await _upload_bytes(request)
    stored = await client().s3.run(client().upload, data, producer=producer)
    return UploadOut(**stored.as_dict())


async def _upload_bytes(request: Request) -> bytes:
    if not web.is_multipart(request):
        return await web.read_body(request, MAX_UPLOAD_BYTES, "file")
    form = await web.read_form(request, MAX_UPLOAD_BYTES + web.MULTIPART_OVERHEAD, "file")
    files = [v for v in form.values() if isinstance(v, UploadFile)]
    if len(files) != 1:
        raise RouteError(422, "invalid_request", "send exactly one file part", "file")
    return await files[0].read()
