"""OpenAI's Video object and create parameters, as vidqueue's jobs (docs/wire-formats.md §2).

- ``model`` picks the provider: the first one in the providers file whose ``models`` lists it
  (without ``model``, the first model listed anywhere). ``seconds`` becomes the spec's
  ``duration`` and ``size`` its ``size``; the provider's adapter checks them, and its errors
  name the OpenAI parameter (``param``).
- Statuses: queued → ``queued``; submitting, running, mirroring → ``in_progress``; succeeded →
  ``completed``; failed and cancelled → ``failed`` (with ``error.code``).
"""

from __future__ import annotations

from typing import Any, Final

from config.providers import Catalogue
from producer.progress import fraction
from producer.web import RouteError
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
CREATE_FIELDS: Final = frozenset({"prompt", "model", "seconds", "size", "input_reference"})
# Job spec fields as the OpenAI parameters they came from.
PARAMS: Final = {"duration": "seconds", "image": "input_reference"}


def param(field: str) -> str:
    """The OpenAI parameter a job spec's field (``image``, ``duration.0``, ...) came from."""
    return PARAMS.get(field.split(".")[0], field)


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


def video(record: JobRecord) -> dict[str, Any]:
    """The OpenAI Video object of a job."""
    status = STATUS[record.state]
    finished = record.state in TERMINAL and record.completed_at
    completed_at = _unix(record.completed_at) if finished and record.completed_at else None
    duration = record.spec.get("duration")
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
        "seconds": str(duration) if duration is not None else None,
        "size": record.spec.get("size"),
        "remixed_from_video_id": None,
        "error": _error(record) if status == "failed" else None,
    }


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
        "invalid_request",
        'input_reference must be a file part or {"image_url": "<http(s) or data: URL>"} '
        "(file_id is not supported)",
        "input_reference",
    )


def spec_from(
    catalogue: Catalogue, fields: dict[str, Any], idempotency_key: str | None
) -> dict[str, Any]:
    """The job spec of a create request's parameters (the image already a URL or reference)."""
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise RouteError(400, "invalid_request", "Missing required parameter: 'prompt'.", "prompt")
    model = fields.get("model")
    if model is None:
        model = default_model(catalogue)
    if not isinstance(model, str):
        raise RouteError(400, "invalid_request", "model must be a string", "model")
    spec: dict[str, Any] = {"provider": route(catalogue, model), "model": model, "prompt": prompt}
    seconds = fields.get("seconds")
    if seconds is not None:
        text = str(seconds)
        if isinstance(seconds, bool) or not text.isdigit() or len(text) > 6:
            raise RouteError(
                400, "invalid_request", "seconds must be a number, e.g. '8'", "seconds"
            )
        spec["duration"] = int(text)
    if fields.get("size") is not None:
        spec["size"] = fields["size"]
    if "image" in fields:
        spec["image"] = fields["image"]
    if idempotency_key:
        spec["idempotency_key"] = idempotency_key
    return spec
