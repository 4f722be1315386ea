"""Image inputs of a job spec, checked before anything is sent to a provider.

An http(s) URL passes through as it is (the provider fetches it). A ``data:`` URI is decoded and
checked here, so a producer learns at enqueue time, not minutes later from a provider error, that
its image is too large, not base64, or not really a PNG or JPEG. An upload reference
(``upload:<id>.<ext>``, from ``POST /v1/uploads``) passes on its form alone: the producer checks
that the upload exists and is the caller's, and the submit step turns it into a presigned URL
(``workers.io.uploads``).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final
from urllib.parse import urlsplit

from workers.domain.errors import InvalidSpec

MAX_IMAGE_BYTES: Final = 5 * 1024 * 1024
# Base64 turns 3 bytes into 4 characters: anything longer cannot decode to <= MAX_IMAGE_BYTES.
_MAX_ENCODED_CHARS: Final = 4 * -(-MAX_IMAGE_BYTES // 3)
_DATA_URI: Final = re.compile(r"^data:image/(png|jpeg|jpg);base64,", re.IGNORECASE)
_MAGIC: Final = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff"}
# What POST /v1/uploads hands out: 32 hex digits, then the file type found in the bytes.
UPLOAD_REF: Final = re.compile(r"^upload:([0-9a-f]{32})\.(png|jpg)$")


def sniff(data: bytes) -> str | None:
    """``png`` or ``jpeg`` by the file's magic bytes (never by its name or declared type)."""
    return next((kind for kind, magic in _MAGIC.items() if data.startswith(magic)), None)


def check_image(value: str, *, field: str = "image") -> str:
    """Return the image as it should be sent, or raise ``InvalidSpec`` naming ``field``."""
    if value[:5].lower() == "data:":
        _check_data_uri(value, field)
        return value
    if value.startswith("upload:"):
        if UPLOAD_REF.match(value) is None:
            raise InvalidSpec(
                field,
                "must be an http(s) URL, a data: URI or an upload reference like "
                "upload:<32 hex digits>.png|jpg, got " + _show(value),
            )
        return value
    parts = urlsplit(value)
    if parts.scheme.lower() in {"http", "https"} and parts.hostname:
        return value
    raise InvalidSpec(
        field,
        "must be an http(s) URL, a data:image/png|jpeg;base64 URI or an upload reference, got "
        + _show(value),
    )


def check_images(values: list[str], *, field: str = "image") -> list[str]:
    return [check_image(value, field=field) for value in values]


def _check_data_uri(value: str, field: str) -> None:
    match = _DATA_URI.match(value)
    if match is None:
        raise InvalidSpec(
            field, "a data URI must be data:image/png;base64,… or data:image/jpeg;base64,…"
        )
    declared = "jpeg" if match.group(1).lower() in {"jpeg", "jpg"} else "png"
    encoded = value[match.end() :]
    if len(encoded) > _MAX_ENCODED_CHARS:
        raise InvalidSpec(field, f"image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSpec(field, "data URI is not valid base64") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidSpec(field, f"image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    actual = sniff(data)
    if actual is None:
        raise InvalidSpec(
            field, f"data URI says image/{declared} but the bytes are not a PNG or JPEG"
        )
    if actual != declared:
        raise InvalidSpec(field, f"data URI says image/{declared} but the bytes are {actual}")


def _show(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")
