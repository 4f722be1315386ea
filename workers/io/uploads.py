"""Images uploaded ahead of a job (``POST /v1/uploads``), referenced from a spec's ``image``.

An upload is stored in S3 at ``{prefix}uploads/{id}.{ext}`` and referenced as
``upload:{id}.{ext}``: the type is part of the reference, so the submit step can turn it into a
presigned URL without asking S3 anything (``resolve`` cannot fail on a storage hiccup, and
never makes a submit's outcome uncertain). The type comes from the bytes (magic numbers), never
from a file name or a declared content type. The owner (a hash of the producer identity) is
S3 object metadata: a producer may only use its own uploads (``owned``).

Uploads are not deleted by vidqueue; give the ``{prefix}uploads/`` prefix a lifecycle rule
(a day or two is plenty: providers fetch the image when the job is submitted).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Final

from botocore.exceptions import ClientError

from workers.domain.errors import InvalidSpec
from workers.domain.images import MAX_IMAGE_BYTES, UPLOAD_REF, sniff
from workers.domain.jobs import JobSpec
from workers.io.storage import Storage, storage_errors

MAX_UPLOAD_BYTES: Final = MAX_IMAGE_BYTES
EXTENSIONS: Final = {"png": "png", "jpeg": "jpg"}
CONTENT_TYPES: Final = {"png": "image/png", "jpg": "image/jpeg"}


@dataclass(frozen=True)
class Upload:
    id: str
    ext: str
    size: int
    sha256: str

    @property
    def ref(self) -> str:
        """What a job spec's ``image`` takes."""
        return f"upload:{self.id}.{self.ext}"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.ext]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "image": self.ref, "content_type": self.content_type}


def object_key(storage: Storage, upload_id: str, ext: str) -> str:
    return f"{storage.prefix}uploads/{upload_id}.{ext}"


def owner_tag(producer: str) -> str:
    """The producer as S3 metadata allows it (ASCII, short) — a hash, not the name."""
    return hashlib.sha256(producer.encode()).hexdigest()[:32]


def is_ref(value: str) -> bool:
    return UPLOAD_REF.match(value) is not None


def save(storage: Storage, data: bytes, *, producer: str) -> Upload:
    """Check the bytes (≤ 5 MB, PNG or JPEG by content) and store them; ``InvalidSpec`` names
    ``image`` when they are not acceptable."""
    if not data:
        raise InvalidSpec("image", "the upload is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidSpec("image", f"larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    kind = sniff(data)
    if kind is None:
        raise InvalidSpec("image", "the bytes are not a PNG or JPEG image")
    upload = Upload(uuid.uuid4().hex, EXTENSIONS[kind], len(data), hashlib.sha256(data).hexdigest())
    storage.ensure_bucket()
    with storage_errors("store upload"):
        storage.client.put_object(
            Bucket=storage.bucket,
            Key=object_key(storage, upload.id, upload.ext),
            Body=data,
            ContentType=upload.content_type,
            Metadata={"owner": owner_tag(producer), "sha256": upload.sha256},
        )
    return upload


def owned(storage: Storage, ref: str, producer: str) -> bool:
    """True when ``ref`` names a stored upload of ``producer`` (anyone else's looks missing)."""
    match = UPLOAD_REF.match(ref)
    if match is None:
        return False
    key = object_key(storage, match.group(1), match.group(2))
    with storage_errors("look up upload"):
        try:
            head = storage.client.head_object(Bucket=storage.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise
    return head.get("Metadata", {}).get("owner") == owner_tag(producer)


def check_owned(storage: Storage, spec: JobSpec, producer: str) -> None:
    """Raise ``InvalidSpec`` (``image``) unless every upload reference is the producer's."""
    for ref in spec.images:
        if is_ref(ref) and not owned(storage, ref, producer):
            raise InvalidSpec("image", f"no upload {ref.removeprefix('upload:')} for this producer")


def resolve(spec: JobSpec, storage: Storage) -> JobSpec:
    """The spec with each upload reference replaced by a presigned URL on the public endpoint
    (what the provider fetches). Local computation only: no request to S3."""
    if not any(is_ref(image) for image in spec.images):
        return spec
    urls = [_presigned(storage, image) if is_ref(image) else image for image in spec.images]
    image: str | list[str] = urls[0] if isinstance(spec.image, str) else urls
    return spec.model_copy(update={"image": image})


def _presigned(storage: Storage, ref: str) -> str:
    match = UPLOAD_REF.match(ref)
    if match is None:  # callers check is_ref first: a raise, not an assert (python -O)
        raise InvalidSpec("image", "not an upload reference")
    return storage.presign(object_key(storage, match.group(1), match.group(2)))
