"""The OpenAPI document says what the API really does (``producer.openapi``): the bearer scheme
where a token is needed, the real error bodies, the facade's request and response models; and
``/docs`` / ``/redoc`` load only the package's own assets."""

from __future__ import annotations

import re
from typing import Any

import httpx

from producer.api import app
from tests.support.live import API_TOKEN, LiveStack

AUTH = {"authorization": f"Bearer {API_TOKEN}"}
OPEN = {"/healthz", "/readyz", "/metrics", "/v1/callbacks/{provider}/{job_id}/{token}"}
METHODS = {"get", "post", "put", "delete", "patch"}


def _doc() -> dict[str, Any]:
    return app.openapi()


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in _doc()["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def _ref(response: dict[str, Any]) -> str:
    return str(response["content"]["application/json"]["schema"]["$ref"]).rsplit("/", 1)[-1]


def test_the_bearer_scheme_guards_every_route_but_the_open_ones() -> None:
    doc = _doc()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for path, method, op in _operations():
        if path in OPEN:
            assert "security" not in op, (method, path)
            assert "401" not in op["responses"], (method, path)
        else:
            assert op["security"] == [{"bearerAuth": []}], (method, path)
            assert "401" in op["responses"], (method, path)
        names = [p["name"].lower() for p in op.get("parameters", [])]
        assert "authorization" not in names, (method, path)


def test_every_error_status_is_documented_in_the_real_shape() -> None:
    doc = _doc()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's ``detail`` shape is never sent
    assert set(schemas["ErrorBody"]["required"]) == {"error"}
    assert set(schemas["ErrorDetail"]["properties"]) == {"code", "message", "field"}
    assert set(schemas["OpenAIErrorDetail"]["properties"]) == {"message", "type", "param", "code"}
    for path, method, op in _operations():
        if path.startswith("/v1/callbacks") or path in OPEN:
            continue
        statuses = {s for s in op["responses"] if s.startswith(("4", "5"))}
        assert {"401", "503"} <= statuses, (method, path)
        want = "OpenAIErrorBody" if path.startswith("/v1/videos") else "ErrorBody"
        for status in statuses:
            assert _ref(op["responses"][status]) == want, (method, path, status)
        if path.startswith("/v1/videos"):
            assert "422" not in statuses, (method, path)  # the facade answers 400
    paths = doc["paths"]
    assert "404" in paths["/v1/jobs/{job_id}"]["get"]["responses"]
    assert "409" in paths["/v1/jobs/{job_id}"]["delete"]["responses"]
    assert {"400", "403", "409", "413", "422"} <= set(paths["/v1/jobs"]["post"]["responses"])
    assert "404" in paths["/v1/videos/{video_id}"]["get"]["responses"]


def test_the_videos_routes_have_request_and_response_models() -> None:
    doc = _doc()
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    create = paths["/v1/videos"]["post"]
    content = create["requestBody"]["content"]
    assert content["application/json"]["schema"]["$ref"].endswith("/VideoCreate")
    assert content["multipart/form-data"]["schema"]["$ref"].endswith("/VideoCreateForm")
    assert schemas["VideoCreate"]["required"] == ["prompt"]
    assert schemas["VideoCreate"]["additionalProperties"] is False
    reference = schemas["VideoCreateForm"]["properties"]["input_reference"]
    assert reference["format"] == "binary"
    assert _ref(create["responses"]["200"]) == "Video"
    assert _ref(paths["/v1/videos"]["get"]["responses"]["200"]) == "VideoList"
    assert _ref(paths["/v1/videos/{video_id}"]["get"]["responses"]["200"]) == "Video"
    assert _ref(paths["/v1/videos/{video_id}"]["delete"]["responses"]["200"]) == "VideoDeleted"
    download = paths["/v1/videos/{video_id}/content"]["get"]["responses"]["200"]["content"]
    assert download["video/mp4"]["schema"]["format"] == "binary"
    video = schemas["Video"]
    assert {"id", "object", "status", "progress", "seconds", "size"} <= set(video["required"])


def test_the_served_document_and_pages_use_only_local_assets(live: LiveStack) -> None:
    served = httpx.get(f"{live.api_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert "bearerAuth" in served.json()["components"]["securitySchemes"]
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{live.api_url}{page}", timeout=10).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
        assert urls, page
        for url in urls:
            assert url.startswith("/docs-assets/"), (page, url)
            asset = httpx.get(f"{live.api_url}{url}", timeout=10)
            assert asset.status_code == 200 and asset.content, url
        assert "cdn" not in html.lower() and "fonts.googleapis" not in html


def test_the_documented_error_shape_is_what_a_route_answers(live: LiveStack) -> None:
    missing = httpx.get(f"{live.api_url}/v1/jobs/nope", headers=AUTH, timeout=10)
    assert missing.status_code == 404
    assert set(missing.json()) == {"error"} and {"code", "message"} <= set(missing.json()["error"])
    unknown = httpx.get(f"{live.api_url}/v1/videos/nope", headers=AUTH, timeout=10)
    assert unknown.status_code == 404
    assert set(unknown.json()["error"]) == {"message", "type", "param", "code"}
    bad = httpx.get(f"{live.api_url}/v1/jobs", params={"limit": 0}, headers=AUTH, timeout=10)
    assert bad.status_code == 422 and "detail" not in bad.json()
