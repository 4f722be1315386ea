"""``POST /v1/uploads``: image bytes in, a reference out that a job spec takes as its ``image``."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from simulator.media import cover_png
from tests.support.api import in_process_api
from tests.support.live import API_TOKEN, LiveStack
from workers.domain.jobs import JobSpec
from workers.io import uploads

AUTH = {"authorization": f"Bearer {API_TOKEN}"}
PNG = cover_png("upload-test")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4
I2V = {"provider": "zhipu", "model": "cogvideox-3", "prompt": "it comes alive"}


def _upload(live: LiveStack, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{live.api_url}/v1/uploads", headers=AUTH, timeout=10, **kwargs)


def test_raw_png_bytes_are_stored_and_referenced_by_type(live: LiveStack) -> None:
    answer = _upload(live, content=PNG)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["image"] == f"upload:{body['id']}.png"
    assert (body["content_type"], body["size"]) == ("image/png", len(PNG))
    assert body["sha256"] == hashlib.sha256(PNG).hexdigest()
    storage = live.storage()
    stored = storage.client.get_object(
        Bucket=storage.bucket, Key=f"{storage.prefix}uploads/{body['id']}.png"
    )
    assert stored["Body"].read() == PNG and stored["ContentType"] == "image/png"


def test_a_multipart_file_is_typed_by_its_bytes_not_its_name(live: LiveStack) -> None:
    answer = _upload(live, files={"file": ("holiday.png", JPEG, "image/png")})
    assert answer.status_code == 201, answer.text
    assert answer.json()["image"].endswith(".jpg")
    assert answer.json()["content_type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"content": b"GIF89a" + b"\x00" * 64}, 422),
        ({"content": b"just text, named .png"}, 422),
        ({"content": b""}, 422),
        ({"content": b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024)}, 413),
        ({"files": {"file": ("big.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024))}}, 413),
        ({"files": {"a": ("a.png", PNG), "b": ("b.png", PNG)}}, 422),
        ({"data": {"file": "not a file part"}, "files": {}}, 422),
    ],
)
def test_what_is_not_a_png_or_jpeg_up_to_5_mb_is_refused(
    live: LiveStack, kwargs: dict[str, Any], status: int
) -> None:
    answer = _upload(live, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == "file"


def test_a_job_with_an_uploaded_image_runs_end_to_end(idle_stack: LiveStack) -> None:
    live = idle_stack
    ref = _upload(live, content=PNG).json()["image"]
    job = httpx.post(
        f"{live.api_url}/v1/jobs", json={**I2V, "image": ref}, headers=AUTH, timeout=10
    )
    assert job.status_code == 202, job.text
    assert job.json()["spec"]["image"] == ref
    [done] = live.wait_all([job.json()["id"]])
    assert done.state == "succeeded"


def test_an_upload_is_usable_only_by_its_producer(live: LiveStack) -> None:
    with in_process_api(live) as (app, _):
        ref = app.post("/v1/uploads", content=PNG, headers={"authorization": "Bearer token-a"})
        image = ref.json()["image"]
        for token, expected in (("token-b", 422), ("token-a", 202)):
            answer = app.post(
                "/v1/jobs",
                json={**I2V, "image": image},
                headers={"authorization": f"Bearer {token}"},
            )
            assert answer.status_code == expected, answer.text
            if expected == 422:
                assert answer.json()["error"]["field"] == "image"


@pytest.mark.parametrize(
    "image", ["upload:" + "0" * 32 + ".png", "upload:abc.png", "upload:" + "a" * 32 + ".gif"]
)
def test_a_reference_that_names_no_upload_is_a_422_on_image(live: LiveStack, image: str) -> None:
    answer = httpx.post(
        f"{live.api_url}/v1/jobs", json={**I2V, "image": image}, headers=AUTH, timeout=10
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "image"


def test_resolve_turns_references_into_presigned_urls_that_serve_the_bytes(
    live: LiveStack,
) -> None:
    storage = live.storage()
    upload = uploads.save(storage, PNG, producer="resolver")
    spec = JobSpec.model_validate({**I2V, "image": [upload.ref, "https://example.com/last.png"]})
    resolved = uploads.resolve(spec, storage)
    first, last = resolved.images
    assert last == "https://example.com/last.png"
    assert first.startswith(live.settings.s3_presign_endpoint_url) and "X-Amz-Signature=" in first
    assert httpx.get(first, timeout=10).content == PNG
    assert uploads.resolve(JobSpec.model_validate(I2V), storage) == JobSpec.model_validate(I2V)
    assert uploads.owned(storage, upload.ref, "resolver")
    assert not uploads.owned(storage, upload.ref, "someone-else")
