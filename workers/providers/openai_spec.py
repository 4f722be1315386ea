"""What OpenAI's Videos API (Sora 2) accepts, and the submit built from a job spec.

Rules only, no HTTP: the producer checks specs with them at enqueue time, and Sora models behind a
gateway share the duration and size rules (``check_seconds_and_size``).
"""

from __future__ import annotations

import base64
from typing import Any, Final

from workers.domain.errors import InvalidSpec
from workers.domain.images import check_images
from workers.domain.jobs import JobSpec

MODELS: Final = (
    "sora-2",
    "sora-2-pro",
    "sora-2-2025-10-06",
    "sora-2-pro-2025-10-06",
    "sora-2-2025-12-08",
)
# The SDK's VideoSeconds; the guide also lists 16 and 20, which the SDK types do not (unconfirmed).
SECONDS: Final = (4, 8, 12)
SIZES: Final = ("720x1280", "1280x720", "1024x1792", "1792x1024")
# 1080p needs sora-2-pro (the video guide).
PRO_SIZES: Final = ("1920x1080", "1080x1920")
# Job spec fields the Videos API has no parameter for.
UNSUPPORTED: Final = ("fps", "quality", "with_audio", "seed", "negative_prompt")
_MIME_EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg", "image/jpg": "jpg"}


def validate(spec: JobSpec) -> None:
    """Raise ``InvalidSpec`` naming the field when OpenAI's ``spec.model`` cannot take ``spec``."""
    if spec.model not in MODELS:
        raise InvalidSpec("model", f"unknown model {spec.model!r}; openai has {', '.join(MODELS)}")
    for name in UNSUPPORTED:
        if getattr(spec, name) is not None:
            raise InvalidSpec(name, "openai's videos API does not take it")
    if spec.options:
        first = next(iter(spec.options))
        raise InvalidSpec(f"options.{first}", "openai's videos API takes no options")
    if not (spec.prompt and spec.prompt.strip()):
        raise InvalidSpec("prompt", "openai needs a prompt, also for image-to-video")
    check_seconds_and_size(spec)
    check_images(spec.images)
    if len(spec.images) > 1:
        raise InvalidSpec("image", "openai takes one reference image (input_reference)")


def check_seconds_and_size(spec: JobSpec) -> None:
    """Sora's duration and size rules, shared with Sora models behind a gateway."""
    if spec.duration is not None and spec.duration not in SECONDS:
        raise InvalidSpec("duration", "sora takes 4, 8 or 12 seconds")
    sizes = SIZES + PRO_SIZES if "-pro" in spec.model else SIZES
    if spec.size is not None and spec.size not in sizes:
        raise InvalidSpec("size", f"{spec.model} takes one of {', '.join(sizes)}")


def request_content(spec: JobSpec) -> dict[str, Any]:
    """The submit's content as httpx keyword arguments: JSON without an image or with an image
    URL (``json=``); multipart with a ``data:`` image, which is uploaded (``data=``, ``files=``)."""
    fields, image = request_fields(spec), next(iter(spec.images), None)
    if image is not None and image[:5].lower() == "data:":
        return {"data": fields, "files": {"input_reference": data_uri_file(image)}}
    body: dict[str, Any] = dict(fields)
    if image is not None:
        body["input_reference"] = {"image_url": image}
    return {"json": body}


def request_fields(spec: JobSpec) -> dict[str, str]:
    """The text fields of the submit; ``seconds`` is a string on the wire."""
    fields = {"prompt": spec.prompt or "", "model": spec.model}
    if spec.duration is not None:
        fields["seconds"] = str(spec.duration)
    if spec.size is not None:
        fields["size"] = spec.size
    return fields


def data_uri_file(uri: str) -> tuple[str, bytes, str]:
    """``(filename, bytes, mime type)`` of a ``data:`` URI already passed by ``check_image``."""
    header, _, encoded = uri.partition(",")
    mime = header[5:].split(";")[0].lower()
    mime = "image/jpeg" if mime == "image/jpg" else mime
    return f"input_reference.{_MIME_EXTENSIONS[mime]}", base64.b64decode(encoded), mime
