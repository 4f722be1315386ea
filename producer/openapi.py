"""The OpenAPI document (``/openapi.json``) as the API really answers: documentation only.

- Errors: each route lists the statuses it can answer (``errors`` in its decorator), each in
  the body ``producer.api_errors`` really sends — vidqueue's ``{"error": {"code", "message",
  "field"}}`` (``ErrorBody``), OpenAI's shape under ``/v1/videos`` (``OpenAIErrorBody``).
  FastAPI's own ``detail``-shaped 422 is never sent, so ``document`` drops it where a route
  did not list it (the facade answers bad input with a 400).
- Auth: a bearer scheme (``Authorization: Bearer <token>``), required by every route that
  lists a 401; the routes that take no token (``/healthz``, ``/readyz``, ``/metrics``, the
  provider callbacks) list none. The ``authorization`` header parameter the dependencies
  declare is left out: the scheme says it.
- Bodies a route reads itself are described by ``MODELS``, added to the components.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from producer.api_errors import ErrorBody, OpenAIErrorBody

SCHEME: Final = "bearerAuth"
REF: Final = "#/components/schemas/{model}"
_VALIDATION: Final = ("HTTPValidationError", "ValidationError")

# What each error status means, on vidqueue's surface and on the facade's.
_MEANS: Final[dict[int, str]] = {
    400: "Bad input: a body that is not valid JSON or multipart, a bad cursor",
    401: "A valid 'Authorization: Bearer <token>' is required (code unauthorized)",
    403: "The token may not name this tenant (labels.tenant)",
    404: "No such job — or another producer's (code not_found)",
    409: "A conflict: the state refuses it, or an Idempotency-Key reused with another body",
    413: "The body (or the image) is too large",
    422: "Invalid input; field names it (invalid_request, invalid_spec)",
    503: "Redis or S3 is unavailable, full or read-only; try again (code unavailable)",
}
_OPENAI_MEANS: Final[dict[int, str]] = {
    **_MEANS,
    400: "Bad input, OpenAI-style: param names the parameter",
    401: "A valid 'Authorization: Bearer <token>' is required (code invalid_api_key)",
    404: "No such video — or another producer's",
}


def errors(*statuses: int, openai: bool = False) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses``: each status with the error body it really answers with."""
    model = OpenAIErrorBody if openai else ErrorBody
    means = _OPENAI_MEANS if openai else _MEANS
    return {status: {"model": model, "description": means[status]} for status in statuses}


def json_or_form(json_model: str, form_model: str) -> dict[str, Any]:
    """An ``openapi_extra`` request body taken as JSON or as a multipart form (both named
    models must be in ``MODELS``)."""
    content = {
        "application/json": {"schema": {"$ref": REF.format(model=json_model)}},
        "multipart/form-data": {"schema": {"$ref": REF.format(model=form_model)}},
    }
    return {"requestBody": {"required": True, "content": content}}


def document(app: FastAPI, models: Sequence[type[BaseModel]] = ()) -> None:
    """Serve ``schema(app, models)`` as the app's OpenAPI document (built once)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = schema(app, models)
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def schema(app: FastAPI, models: Sequence[type[BaseModel]] = ()) -> dict[str, Any]:
    """FastAPI's document, with the bearer scheme, without the 422s never sent, and with the
    bodies of ``models``."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = doc.setdefault("components", {})
    found = components.setdefault("schemas", {})
    if models:
        _, extra = models_json_schema([(m, "validation") for m in models], ref_template=REF)
        found.update(extra.get("$defs", {}))
    components["securitySchemes"] = {
        SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "A token of VIDQUEUE_API_TOKENS / VIDQUEUE_API_TOKENS_FILE: each "
            "is a producer identity. With no tokens configured any (or no) token is taken.",
        }
    }
    for operation in _operations(doc):
        responses = operation.get("responses", {})
        if _is_fastapi_422(responses.get("422")):
            del responses["422"]
        params = [
            p
            for p in operation.get("parameters", [])
            if not (p.get("in") == "header" and p.get("name", "").lower() == "authorization")
        ]
        if params:
            operation["parameters"] = params
        else:
            operation.pop("parameters", None)
        if "401" in responses:
            operation["security"] = [{SCHEME: []}]
        for response in responses.values():
            for media in response.get("content", {}).values():
                # FastAPI merges a return annotation's schema into a documented model's.
                if "$ref" in media.get("schema", {}):
                    media["schema"] = {"$ref": media["schema"]["$ref"]}
    used = str(doc.get("paths"))
    for name in _VALIDATION:
        if name not in used:
            found.pop(name, None)
    return doc


def _operations(doc: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for item in doc.get("paths", {}).values():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options"):
                yield operation


def _is_fastapi_422(response: dict[str, Any] | None) -> bool:
    if response is None:
        return False
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))
