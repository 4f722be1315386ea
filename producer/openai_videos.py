"""OpenAI's Video object and create parameters, as vidqueue's jobs (docs/wire-formats.md §2).

- ``model`` picks the provider: the first one in the providers file whose ``models`` lists it
  (without ``model``, the first model listed anywhere). ``seconds`` becomes the spec's
  ``duration`` and ``size`` its ``size``; the provider's adapter checks them, and its errors
  name the parameter the request used (``param``).
- Gateways' extra fields are taken too (LiteLLM and new-api send them): ``duration`` (new-api's
  name for ``seconds``), ``image`` (new-api's image: a URL, a ``data:`` URI or bare base64, the
  job's image as ``input_reference`` would be), ``user`` and ``metadata`` (kept as the job's
  labels: ``user`` under the key ``user``, each metadata pair under its own key).
- The Video object always has ``seconds`` and ``size``: the request's, else what the provider
  makes by default (``defaults``), so typed clients never see a null there.
- Statuses: queued → ``queued``; submitting, running, mirroring → ``in_progress``; succeeded →
  ``completed``; failed and cancelled → ``failed`` (with ``error.code``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from config.providers import Catalogue
from producer.progress import fraction
from producer.web import RouteError
from workers.domain.errors import InvalidSpec
from workers.domain.jobs import TERMINAL, JobRecord, State, parse_iso
from workers.redis import records

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
CREATE_FIELDS: Final = frozenset(
    {
        "prompt",
        "model",
        "seconds",
        "size",
        "input_reference",
        # What gateways add: LiteLLM and the OpenAI SDK's ``user`` and ``metadata``; new-api's
        # ``duration`` (for ``seconds``) and ``image`` (for ``input_reference``).
        "user",
        "metadata",
        "duration",
        "image",
    }
)
# Job spec fields as the OpenAI parameters they came from, when a request does not say.
PARAMS: Final = {"duration": "seconds", "image": "input_reference", "labels": "metadata"}
# OpenAI's codes for the refusals of a create parameter.
INVALID_VALUE: Final = "invalid_value"
MISSING: Final = "missing_required_parameter"
INVALID_TYPE: Final = "invalid_type"

# What each provider kind makes when a request names no duration (seconds) or size: the
# documented defaults of docs/wire-formats.md, nominal where the vendor documents none (a
# size that follows the image, Vidu's and Jimeng's behind a gateway).
DEFAULT_SECONDS: Final = {"openai": "4", "zhipu": "5", "gateway": "5", "ark": "5", "kling": "5"}
DEFAULT_SIZE: Final = {
    "openai": "720x1280",
    "zhipu": "1920x1080",
    "gateway": "1280x720",
    "ark": "1280x720",
    "kling": "1280x720",
}
# Kling's and Ark's aspect ratios (``options.aspect_ratio`` / ``options.ratio``), Ark's
# resolutions (``options.resolution``: the short side).
_RATIO: Final = re.compile(r"^(\d{1,2}):(\d{1,2})$")
_SHORT_SIDE: Final = {"480p": 480, "720p": 720, "1080p": 1080}
ARK_FPS: Final = 24
MAX_METADATA: Final = 16
BOTH_IMAGES: Final = "give input_reference or image, not both"
_BASE64: Final = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_IMAGE_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


# -- the wire shapes, for the OpenAPI document only (``video`` and the routes build the dicts) --


class ImageReference(BaseModel):
    """A JSON ``input_reference``: the image's URL (http(s) or a ``data:`` URI)."""

    model_config = ConfigDict(extra="forbid")
    image_url: str


class VideoCreate(BaseModel):
    """``POST /v1/videos`` as JSON. Unknown parameters are a 400 naming them."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    model: str | None = Field(None, description="picks the provider; default: the first listed")
    seconds: str | None = Field(None, examples=["8"], description="digits; the job's duration")
    size: str | None = Field(None, examples=["1280x720"])
    input_reference: ImageReference | None = None
    user: str | None = Field(None, description="kept as the job's label 'user'")
    metadata: dict[str, Any] | None = Field(
        None, description=f"at most {MAX_METADATA} pairs, kept as the job's labels"
    )
    duration: int | str | None = Field(None, description="new-api's name for seconds")
    image: str | None = Field(
        None, description="new-api's image: a URL, a data: URI or bare base64 (PNG/JPEG)"
    )


class VideoCreateForm(BaseModel):
    """``POST /v1/videos`` as ``multipart/form-data`` (what the OpenAI SDK sends). An object's
    pairs may also come as ``metadata[key]`` fields."""

    prompt: str
    model: str | None = None
    seconds: str | None = None
    size: str | None = None
    input_reference: bytes = Field(b"", description="a PNG or JPEG file, ≤ 5 MB")
    user: str | None = None
    metadata: str | None = Field(None, description="a JSON object's text")
    duration: str | None = None
    image: str | None = None


class VideoError(BaseModel):
    code: str
    message: str


class Video(BaseModel):
    """OpenAI's Video object (``video``)."""

    id: str
    object: Literal["video"]
    model: str
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: int | None
    expires_at: int | None
    prompt: str | None
    seconds: str
    size: str
    remixed_from_video_id: None
    error: VideoError | None


class VideoList(BaseModel):
    object: Literal["list"]
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"]
    deleted: bool = Field(description="true: deleted (finished); false: cancelled (unfinished)")


def param(field: str, names: Mapping[str, str] | None = None) -> str:
    """The request parameter a job spec's field (``image``, ``duration.0``, ...) came from:
    the name the request used (``names``), else OpenAI's."""
    root = field.split(".")[0]
    return (names or {}).get(root) or PARAMS.get(root, field)


def renamed(exc: InvalidSpec, names: Mapping[str, str]) -> RouteError:
    """A spec's refusal as the 400 the facade answers, naming the request's own parameter."""
    return RouteError(400, INVALID_VALUE, exc.message, param(exc.field, names))


def route(catalogue: Catalogue, model: str) -> str:
    """The provider serving ``model``: the first one whose ``models`` lists it."""
    for name, config in catalogue.providers.items():
        if model in config.models:
            return name
    served = [m for config in catalogue.providers.values() for m in config.models]
    raise RouteError(
        400,
        "model_not_found",
        f"The model {model!r} is not served here; available: {', '.join(served) or 'none'}",
        "model",
    )


def default_model(catalogue: Catalogue) -> str:
    for config in catalogue.providers.values():
        if config.models:
            return config.models[0]
    raise RouteError(400, "model_not_found", "no model is configured; name one", "model")


def video(record: JobRecord, catalogue: Catalogue | None = None) -> dict[str, Any]:
    """The OpenAI Video object of a job; ``catalogue`` tells the provider's kind, whose
    defaults fill ``seconds`` and ``size`` when the job's spec left them out."""
    status = STATUS[record.state]
    finished = record.state in TERMINAL and record.completed_at
    completed_at = _unix(record.completed_at) if finished and record.completed_at else None
    config = catalogue.providers.get(record.provider) if catalogue else None
    seconds, size = defaults(config.kind if config else "", record.model, record.spec)
    return {
        "id": record.id,
        "object": "video",
        "model": record.model,
        "status": status,
        "progress": _progress(record, status),
        "created_at": _unix(record.created_at),
        "completed_at": completed_at,
        "expires_at": completed_at + records.RETENTION_S
        if completed_at and status == "completed"
        else None,
        "prompt": record.spec.get("prompt"),
        "seconds": seconds,
        "size": size,
        "remixed_from_video_id": None,
        "error": _error(record) if status == "failed" else None,
    }


def defaults(kind: str, model: str, spec: Mapping[str, Any]) -> tuple[str, str]:
    """``seconds`` and ``size`` of a job: its spec's, else what its provider makes when not
    told (``DEFAULT_SECONDS``, ``DEFAULT_SIZE``; the aspect ratio and resolution options of
    Kling and Ark; Sora's defaults for a Sora model behind a gateway)."""
    if kind == "gateway" and model.startswith("sora"):
        kind = "openai"
    options = spec.get("options") or {}
    seconds = spec.get("duration")
    if seconds is None and kind == "ark" and isinstance(options.get("frames"), int):
        seconds = max(1, round(options["frames"] / ARK_FPS))
    if seconds is None and kind == "zhipu" and model.startswith("vidu2"):
        seconds = 4
    size = spec.get("size")
    if size is None and kind in ("ark", "kling"):
        ratio = options.get("ratio" if kind == "ark" else "aspect_ratio")
        short = _SHORT_SIDE.get(str(options.get("resolution")), 720) if kind == "ark" else 720
        size = _sized(ratio, short) or _sized("16:9", short)  # 16:9 is both vendors' default
    return (
        str(seconds) if seconds is not None else DEFAULT_SECONDS.get(kind, "5"),
        str(size) if size is not None else DEFAULT_SIZE.get(kind, "1280x720"),
    )


def _sized(ratio: Any, short: int) -> str | None:
    """``WxH`` of an aspect ratio (``16:9``) whose short side is ``short`` pixels."""
    found = _RATIO.match(ratio) if isinstance(ratio, str) else None
    if found is None or "0" in (found[1], found[2]):
        return None
    width, height = int(found[1]), int(found[2])
    if width >= height:
        return f"{round(short * width / height / 2) * 2}x{short}"
    return f"{short}x{round(short * height / width / 2) * 2}"


def _error(record: JobRecord) -> dict[str, str]:
    if record.error:
        return {"code": record.error.code, "message": record.error.message}
    return {"code": "failed", "message": "the job failed"}


def _unix(iso: str) -> int:
    return int(parse_iso(iso).timestamp())


def _progress(record: JobRecord, status: str) -> int:
    if status == "completed":
        return 100
    if status in ("queued", "failed"):
        return 0
    return max(1, min(99, int(fraction(record) * 100)))


def known(fields: dict[str, Any]) -> None:
    """Refuse a create parameter vidqueue does not take (as OpenAI does), naming it."""
    for name in fields:
        if name not in CREATE_FIELDS:
            raise RouteError(
                400, "unknown_parameter", f"Unrecognized request argument supplied: {name}", name
            )


def reference_url(reference: Any) -> str:
    """The image URL of a JSON ``input_reference`` (``{"image_url": ...}``)."""
    if isinstance(reference, dict) and isinstance(reference.get("image_url"), str):
        return str(reference["image_url"])
    raise RouteError(
        400,
        INVALID_VALUE,
        'input_reference must be a file part or {"image_url": "<http(s) or data: URL>"} '
        "(file_id is not supported)",
        "input_reference",
    )


def image_url(image: Any) -> str:
    """new-api's ``image``: an http(s) URL or ``data:`` URI as it is; bare base64 (what
    new-api also takes) as a ``data:`` URI of the type its bytes show."""
    if not isinstance(image, str) or not image.strip():
        raise RouteError(400, INVALID_TYPE, "image must be a URL or base64 image data", "image")
    if image.startswith(("http://", "https://", "data:")):
        return image
    if not _BASE64.match(image[:4096]):
        raise RouteError(400, INVALID_VALUE, "image must be a URL or base64 image data", "image")
    try:
        head = base64.b64decode("".join(image[:64].split()) + "==", validate=False)
    except (binascii.Error, ValueError):
        head = b""
    for magic, media_type in _IMAGE_MAGIC:
        if head.startswith(magic):
            return f"data:{media_type};base64,{''.join(image.split())}"
    raise RouteError(400, INVALID_VALUE, "image must be a png or jpeg image", "image")


def labels_of(fields: Mapping[str, Any]) -> dict[str, str]:
    """The job's labels from ``metadata`` (a JSON object, or its JSON text from a form) and
    ``user``. Values that are not strings are kept as their JSON text."""
    metadata = fields.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata) if metadata.strip() else {}
        except ValueError:
            metadata = False  # not JSON: refused below
    if metadata is not None and not isinstance(metadata, dict):
        raise RouteError(400, INVALID_TYPE, "metadata must be a JSON object", "metadata")
    labels = {
        str(key): value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        for key, value in (metadata or {}).items()
    }
    if len(labels) > MAX_METADATA:
        message = f"metadata takes at most {MAX_METADATA} pairs"
        raise RouteError(400, INVALID_VALUE, message, "metadata")
    user = fields.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise RouteError(400, INVALID_TYPE, "user must be a string", "user")
        labels["user"] = user
    return labels


def _seconds(fields: Mapping[str, Any]) -> tuple[int, str] | None:
    """The duration a request asks for, and the parameter it used: ``seconds`` (OpenAI, a
    string) or new-api's ``duration`` (an int or a numeric string)."""
    name = "seconds" if fields.get("seconds") is not None else "duration"
    value = fields.get(name)
    if value is None:
        return None
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or len(text) > 6:
        raise RouteError(400, INVALID_VALUE, f"{name} must be a number, e.g. '8'", name)
    return int(text), name


def spec_from(
    catalogue: Catalogue,
    fields: dict[str, Any],
    idempotency_key: str | None,
    *,
    reference: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The job spec of a create request's parameters (``reference``: a JSON
    ``input_reference``'s URL), and which request parameter each spec field came from where
    that is not OpenAI's own name (for ``renamed``)."""
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise RouteError(400, MISSING, "Missing required parameter: 'prompt'.", "prompt")
    model = fields.get("model")
    if model is None:
        model = default_model(catalogue)
    if not isinstance(model, str):
        raise RouteError(400, INVALID_TYPE, "model must be a string", "model")
    spec: dict[str, Any] = {"provider": route(catalogue, model), "model": model, "prompt": prompt}
    names: dict[str, str] = {}
    seconds = _seconds(fields)
    if seconds is not None:
        spec["duration"], names["duration"] = seconds
    if fields.get("size") is not None:
        spec["size"] = fields["size"]
    if reference is not None:
        spec["image"] = reference
    if fields.get("image") is not None:
        if reference is not None:
            raise RouteError(400, INVALID_VALUE, BOTH_IMAGES, "image")
        spec["image"], names["image"] = image_url(fields["image"]), "image"
    labels = labels_of(fields)
    if labels:
        spec["labels"] = labels
        names["labels"] = "metadata" if fields.get("metadata") is not None else "user"
    if idempotency_key:
        spec["idempotency_key"] = idempotency_key
    return spec, names
