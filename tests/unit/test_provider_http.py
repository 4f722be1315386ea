"""Edge cases of the provider boundary helpers: HTTP error translation and image inputs.

Over 300 lines because it also holds the image-input checks of ``workers.domain.images``, which
have no test module of their own yet; they would move out cleanly.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.adapter_contract import GENERIC_STATUSES, MAYBE_SENT, NOT_SENT
from workers.domain import errors
from workers.domain.errors import InvalidSpec, PermanentError, RetryableError, SubmitOutcomeUnknown
from workers.domain.images import MAX_IMAGE_BYTES, check_image, check_images
from workers.providers.http import (
    HttpFailure,
    JsonApi,
    classify,
    json_object,
    parse_retry_after,
    raise_for_status,
    retry_after_s,
    transport_errors,
    under_base_url,
)

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def response(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "https://p.example/x"), **kwargs)


# --- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Sat, 21 Nov 2026 12:00:30 GMT", 30.0),
        ("Sat, 21 Nov 2026 11:59:00 GMT", 0.0),
        ("Saturday, 21-Nov-26 12:01:00 GMT", 60.0),  # obsolete RFC 850, still accepted
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_takes_seconds_or_an_http_date(
    value: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_retry_after_ms_wins_over_retry_after() -> None:
    headers = httpx.Headers({"retry-after-ms": "250", "retry-after": "9"})
    assert retry_after_s(headers) == 0.25


def test_retry_after_absent_gives_none() -> None:
    assert retry_after_s(httpx.Headers()) is None


# --- transport errors ----------------------------------------------------------------------


@pytest.mark.parametrize("failure", NOT_SENT, ids=lambda exc: type(exc).__name__)
def test_request_certainly_not_sent_is_retryable_even_for_submit(
    failure: httpx.TransportError,
) -> None:
    with pytest.raises(RetryableError) as caught, transport_errors("p", submitting=True):
        raise failure
    assert caught.value.code == errors.PROVIDER_UNAVAILABLE
    assert caught.value.__cause__ is failure
    assert caught.value.message.startswith("p: request not sent: ")


@pytest.mark.parametrize("failure", MAYBE_SENT, ids=lambda exc: type(exc).__name__)
def test_request_maybe_sent_is_unknown_for_submit_and_retryable_for_poll(
    failure: httpx.TransportError,
) -> None:
    with pytest.raises(SubmitOutcomeUnknown), transport_errors("p", submitting=True):
        raise failure
    with pytest.raises(RetryableError), transport_errors("p", submitting=False):
        raise failure


def test_non_http_errors_pass_through_untouched() -> None:
    with pytest.raises(KeyError), transport_errors("p", submitting=True):
        raise KeyError("not ours")


# --- status classification -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        *GENERIC_STATUSES,
        (408, RetryableError, errors.PROVIDER_UNAVAILABLE),
        (422, PermanentError, errors.INVALID_REQUEST),
        (302, PermanentError, errors.PROVIDER_PROTOCOL),  # a redirect is no answer to act on
    ],
)
def test_generic_status_classification(status: int, kind: type[Exception], code: str) -> None:
    with pytest.raises(kind) as caught:
        raise_for_status(response(status, text="nope"), "p")
    assert getattr(caught.value, "code", None) == code


def test_2xx_is_not_an_error() -> None:
    raise_for_status(response(204), "p")


def test_retryable_status_carries_retry_after() -> None:
    with pytest.raises(RetryableError) as caught:
        raise_for_status(response(503, headers={"Retry-After": "4"}), "p")
    assert caught.value.retry_after_s == 4.0


def test_non_json_error_body_is_shortened_into_the_message() -> None:
    page = "<html>" + "x " * 1000 + "</html>"
    with pytest.raises(RetryableError) as caught:
        raise_for_status(response(502, text=page), "p")
    assert caught.value.message.startswith("p: HTTP 502: <html>x x")
    assert len(caught.value.message) < 400


def test_error_body_without_a_message_falls_back_to_the_reason_phrase() -> None:
    with pytest.raises(PermanentError) as caught:
        raise_for_status(response(400, json={"error": {"code": "42"}}), "p")
    assert caught.value.message == "p: 42: Bad Request (HTTP 400)"


def test_flat_code_and_msg_body_is_understood() -> None:
    with pytest.raises(PermanentError) as caught:
        raise_for_status(response(400, json={"code": 7, "msg": "bad"}), "p")
    assert caught.value.message == "p: 7: bad (HTTP 400)"


def test_a_plain_string_error_is_the_message() -> None:
    with pytest.raises(PermanentError) as caught:
        raise_for_status(response(400, json={"error": "bad size"}), "p")
    assert caught.value.message == "p: HTTP 400: bad size"


def test_the_secret_is_redacted_from_provider_messages() -> None:
    body = {"error": {"code": "1", "message": "key sk-abc is wrong"}}
    with pytest.raises(PermanentError) as caught:
        raise_for_status(response(401, json=body), "p", secret="sk-abc")
    assert "sk-abc" not in caught.value.message


def test_business_hook_decides_first_and_none_falls_back() -> None:
    failure = HttpFailure("p", 429, "9", "busy", None)
    mine = PermanentError("mine")
    assert classify(failure, lambda f: mine) is mine
    fallback = classify(failure, lambda f: None)
    assert isinstance(fallback, RetryableError)
    assert fallback.code == errors.RATE_LIMITED


# --- JSON bodies ---------------------------------------------------------------------------


def test_json_object_returns_the_object() -> None:
    assert json_object(response(200, json={"a": 1}), "p", submitting=False) == {"a": 1}


@pytest.mark.parametrize("content", [b"{oops", b"[1, 2]", b"\xff\xfe\x00garbage"])
def test_unreadable_json_is_retryable_for_poll_and_unknown_for_submit(content: bytes) -> None:
    with pytest.raises(RetryableError) as caught:
        json_object(response(200, content=content), "p", submitting=False)
    assert caught.value.code == errors.PROVIDER_PROTOCOL
    with pytest.raises(SubmitOutcomeUnknown):
        json_object(response(200, content=content), "p", submitting=True)


# --- JsonApi: one call, every failure translated ------------------------------------------


def api_answering(handler: Callable[[httpx.Request], httpx.Response]) -> JsonApi:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return JsonApi("p", client, httpx.Timeout(7.0))


def test_call_sends_through_the_client_and_returns_the_answer_with_its_json_object() -> None:
    # Given a provider that records what it is sent
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"id": "t1"}, headers={"x-seen": "yes"})

    # When a submit is sent through the adapter's JsonApi
    response, payload = api_answering(handler).call(
        "POST",
        "https://p.example/tasks",
        headers={"Authorization": "Bearer k"},
        json={"prompt": "a cat"},
        secret="k",
        submitting=True,
    )

    # Then the request carried the method, body, headers and the adapter's timeout
    (request,) = sent
    assert (request.method, str(request.url)) == ("POST", "https://p.example/tasks")
    assert json.loads(request.content) == {"prompt": "a cat"}
    assert request.headers["authorization"] == "Bearer k"
    assert request.extensions["timeout"]["read"] == 7.0
    # And both the answer and its body come back
    assert payload == {"id": "t1"}
    assert response.headers["x-seen"] == "yes"


def test_call_classifies_an_error_answer_with_the_hook_and_redacts_the_secret() -> None:
    # Given a provider that answers 400 with a business code, echoing the key
    body = {"error": {"code": "1301", "message": "bad key sk-secret"}}
    api = api_answering(lambda request: httpx.Response(400, json=body))

    def hook(failure: HttpFailure) -> PermanentError | None:
        return PermanentError(failure.describe(), code=errors.CONTENT_POLICY)

    # When the call is made with the adapter's hook
    with pytest.raises(PermanentError) as caught:
        api.call("GET", "https://p.example/t", secret="sk-secret", submitting=False, business=hook)

    # Then the hook's classification is raised, without the secret
    assert caught.value.code == errors.CONTENT_POLICY
    assert "sk-secret" not in caught.value.message
    assert "[redacted]" in caught.value.message


def test_call_without_an_answer_is_unknown_for_submit_and_retryable_for_poll() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    api = api_answering(handler)
    with pytest.raises(SubmitOutcomeUnknown):
        api.call("POST", "https://p.example/t", secret="", submitting=True)
    with pytest.raises(RetryableError) as caught:
        api.call("GET", "https://p.example/t", secret="", submitting=False)
    assert caught.value.code == errors.PROVIDER_UNAVAILABLE


def test_call_with_a_2xx_that_is_not_a_json_object_is_unknown_for_submit() -> None:
    api = api_answering(lambda request: httpx.Response(200, json=["not", "an", "object"]))
    with pytest.raises(SubmitOutcomeUnknown):
        api.call("POST", "https://p.example/t", secret="", submitting=True)


def test_send_returns_an_error_answer_for_the_caller_to_judge() -> None:
    api = api_answering(lambda request: httpx.Response(404, json={"error": "gone"}))
    assert api.send("DELETE", "https://p.example/t", submitting=False).status_code == 404


# --- where a key may go ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example.com/v1/videos/x/content", True),
        ("https://API.example.com:443/v1/videos/x", True),
        ("https://api.example.com/v1", True),
        ("https://api.example.com/v10/x", False),
        ("http://api.example.com/v1/x", False),
        ("https://api.example.com:8443/v1/x", False),
        ("https://api.example.com.evil.io/v1/x", False),
        ("https://api.example.com@evil.io/v1/x", False),
        ("https://api.example.com:port/v1/x", False),
    ],
)
def test_under_base_url_allows_only_the_same_origin_below_the_base_path(
    url: str, allowed: bool
) -> None:
    assert under_base_url(url, "https://api.example.com/v1") is allowed


# --- images --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "https://example.com/a.png",
        "http://example.com/a.jpg?sig=1",
        "HTTPS://EXAMPLE.COM/A.PNG",
        data_uri("image/png", PNG),
        data_uri("image/jpeg", JPEG),
        data_uri("image/jpg", JPEG),
    ],
)
def test_urls_and_png_or_jpeg_data_uris_pass_unchanged(value: str) -> None:
    assert check_image(value) == value


def test_an_image_of_exactly_the_limit_is_accepted() -> None:
    image = PNG + b"\x00" * (MAX_IMAGE_BYTES - len(PNG))
    check_image(data_uri("image/png", image))


def test_oversized_data_uri_is_rejected() -> None:
    image = PNG + b"\x00" * (MAX_IMAGE_BYTES + 1 - len(PNG))
    with pytest.raises(InvalidSpec, match="larger than 5 MB") as caught:
        check_image(data_uri("image/png", image))
    assert caught.value.field == "image"


def test_hugely_oversized_data_uri_is_rejected_without_decoding() -> None:
    with pytest.raises(InvalidSpec, match="larger than 5 MB"):
        check_image("data:image/png;base64," + "!" * (8 * MAX_IMAGE_BYTES))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (data_uri("image/png", b"GIF89a not a png"), "not a PNG or JPEG"),
        (data_uri("image/png", b""), "not a PNG or JPEG"),
        (data_uri("image/png", JPEG), "says image/png but the bytes are jpeg"),
        (data_uri("image/jpeg", PNG), "says image/jpeg but the bytes are png"),
        ("data:image/png;base64,iVBOR*w0KGgo=", "not valid base64"),
        ("data:image/png;base64,iVBORw0KGgo", "not valid base64"),
        ("data:image/png;base64,iVBO\nRw0KGgo=", "not valid base64"),
        (data_uri("image/gif", b"GIF89a"), "data:image/png;base64"),
        ("data:image/png,rawbytes", "data:image/png;base64"),
        ("ftp://example.com/a.png", "http(s) URL"),
        ("https:///no-host.png", "http(s) URL"),
        ("/local/file.png", "http(s) URL"),
        ("upload:abc123", "http(s) URL"),
    ],
)
def test_bad_image_inputs_are_rejected_naming_the_field(value: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        check_image(value)
    assert e.value.field == "image"


def test_check_images_checks_every_image() -> None:
    with pytest.raises(InvalidSpec):
        check_images(["https://example.com/a.png", "nope"])
