"""HTTP errors translated to vidqueue's error tree, once, for every provider adapter.

Two questions decide what a failed call means:

- Did the request reach the provider? Connect errors and connect/pool timeouts mean it certainly
  did not, so any call may simply be retried (``RetryableError``). After the request was sent (read
  or write timeout, a connection reset, a garbled response) a *submit* may have created a paid
  task: that is ``SubmitOutcomeUnknown``, which the pipeline never re-sends blindly. For a poll the
  difference does not matter: every transport failure is retryable.
- What did the provider answer? A status code plus, for most providers, a business code in the
  body. Adapters pass a ``BusinessCodes`` hook that classifies the codes they know; anything it
  leaves alone gets the generic status-code classification below.

Messages carry the provider's name, its code and its message, never the API key nor vidqueue's
callback URL: callers pass the secrets in (``Secrets``; ``url_secrets`` for a secret-bearing URL)
so they can be redacted should a provider echo them back. Adapters send through ``JsonApi``,
which applies all of this to every call; ``under_base_url`` keeps a key on its provider's host.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import SplitResult, quote, urlsplit

import httpx

from workers.domain.errors import (
    AUTH_FAILED,
    INVALID_REQUEST,
    PERMISSION_DENIED,
    PROVIDER_PROTOCOL,
    PROVIDER_UNAVAILABLE,
    RATE_LIMITED,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.providers.retry_after import parse_retry_after as parse_retry_after
from workers.providers.retry_after import retry_after_s as retry_after_s

# Failures raised before a single byte of the request could reach the provider.
NOT_SENT: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)
# Long enough to say what went wrong, short enough for a job record (HTML error pages are long).
MAX_MESSAGE_CHARS: Final = 300
REDACTED: Final = "[redacted]"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# What error messages must never show: one secret (an API key) or several.
Secrets = str | tuple[str, ...]


@dataclass(frozen=True)
class HttpFailure:
    """A non-2xx answer, parsed: what a ``BusinessCodes`` hook classifies."""

    provider: str
    status: int
    code: str | None
    message: str
    retry_after_s: float | None

    def describe(self) -> str:
        """``zhipu: 1301: unsafe content (HTTP 400)``, or ``zhipu: HTTP 502: Bad Gateway``."""
        if self.code is None:
            return f"{self.provider}: HTTP {self.status}: {self.message}"
        return f"{self.provider}: {self.code}: {self.message} (HTTP {self.status})"


# Returns the error for a business code the adapter knows, or None for the generic rules.
BusinessCodes = Callable[[HttpFailure], VidqueueError | None]


@contextmanager
def transport_errors(provider: str, *, submitting: bool, secret: Secrets = "") -> Iterator[None]:
    """Translate httpx's request errors; ``submitting`` marks a call that may create a task."""
    try:
        yield
    except NOT_SENT as exc:
        raise RetryableError(
            f"{provider}: request not sent: {_describe(exc, secret)}", code=PROVIDER_UNAVAILABLE
        ) from exc
    except httpx.RequestError as exc:
        detail = _describe(exc, secret)
        if submitting:
            raise SubmitOutcomeUnknown(
                f"{provider}: no answer to a submit that was sent ({detail}); "
                "the provider may have accepted it"
            ) from exc
        raise RetryableError(f"{provider}: {detail}", code=PROVIDER_UNAVAILABLE) from exc


def raise_for_status(
    response: httpx.Response,
    provider: str,
    *,
    business: BusinessCodes | None = None,
    secret: Secrets = "",
) -> None:
    """Raise the classified error unless the response is a 2xx."""
    if response.is_success:
        return
    failure = parse_failure(response, provider, secret=secret)
    raise classify(failure, business)


def parse_failure(response: httpx.Response, provider: str, *, secret: Secrets = "") -> HttpFailure:
    """The answer's code and message, the secrets redacted before the message is shortened (a
    secret cut in two by the shortening would no longer match, and half of it would show)."""
    code, message = _error_body(response)
    return HttpFailure(
        provider=provider,
        status=response.status_code,
        code=None if code is None else redact(code, secret),
        message=_shorten(redact(message, secret)),
        retry_after_s=retry_after_s(response.headers),
    )


def classify(failure: HttpFailure, business: BusinessCodes | None = None) -> VidqueueError:
    """The adapter's hook first, then the generic status-code rules."""
    known = business(failure) if business is not None else None
    return known if known is not None else classify_status(failure)


def classify_status(failure: HttpFailure) -> VidqueueError:
    """Generic rules: 408, 429 and 5xx are retryable; other errors are permanent."""
    message, status = failure.describe(), failure.status
    if status >= 500 or status == 408:
        return RetryableError(
            message, code=PROVIDER_UNAVAILABLE, retry_after_s=failure.retry_after_s
        )
    if status == 429:
        return RetryableError(message, code=RATE_LIMITED, retry_after_s=failure.retry_after_s)
    if status == 401:
        return PermanentError(message, code=AUTH_FAILED)
    if status == 403:
        return PermanentError(message, code=PERMISSION_DENIED)
    if 400 <= status < 500:
        return PermanentError(message, code=INVALID_REQUEST)
    # A redirect or an informational status: not an answer vidqueue can act on.
    return PermanentError(f"{message} (unexpected status)", code=PROVIDER_PROTOCOL)


def json_object(response: httpx.Response, provider: str, *, submitting: bool) -> dict[str, Any]:
    """The body of a 2xx answer as a JSON object.

    A garbled answer to a submit may still mean the task exists: ``SubmitOutcomeUnknown``.
    Otherwise it is treated as a passing glitch (``RetryableError``, ``provider_protocol_error``).
    """
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        return body
    message = f"{provider}: HTTP {response.status_code} answer is not a JSON object"
    if submitting:
        raise SubmitOutcomeUnknown(f"{message}; the provider may have accepted the submit")
    raise RetryableError(message, code=PROVIDER_PROTOCOL)


@dataclass(frozen=True)
class JsonApi:
    """One provider's calls through the process's shared client, every failure translated here.

    An adapter builds one from its config; what differs per call (auth headers, the secret to
    redact, the business-code hook) is passed per call.
    """

    provider: str
    client: httpx.Client
    timeout: httpx.Timeout

    def send(
        self, method: str, url: str, *, submitting: bool, secret: Secrets = "", **request: Any
    ) -> httpx.Response:
        """The answer, whatever its status: only transport errors are raised (translated)."""
        with transport_errors(self.provider, submitting=submitting, secret=secret):
            return self.client.request(method, url, timeout=self.timeout, **request)

    def call(
        self,
        method: str,
        url: str,
        *,
        secret: Secrets,
        submitting: bool,
        business: BusinessCodes | None = None,
        **request: Any,
    ) -> tuple[httpx.Response, dict[str, Any]]:
        """A 2xx answer and its JSON object body; any other answer raised, classified.

        ``request`` goes to httpx as it is (``headers=``, ``json=``, ``data=``/``files=``,
        ``params=``); ``secret`` (one or several) is redacted from error messages.
        """
        response = self.send(method, url, submitting=submitting, secret=secret, **request)
        raise_for_status(response, self.provider, business=business, secret=secret)
        return response, json_object(response, self.provider, submitting=submitting)


def redact(text: str, secret: Secrets) -> str:
    """``text`` with every non-empty secret replaced, the longest first (a URL before its token)."""
    secrets = (secret,) if isinstance(secret, str) else secret
    for value in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def url_secrets(url: str | None) -> tuple[str, ...]:
    """What must be hidden of a secret-bearing URL (vidqueue's callback URL, whose last path
    segment is a per-job token): the URL as sent and percent-encoded, and the token alone, which
    still matches where an echo escapes or re-encodes the rest (``https:\\/\\/…``)."""
    if not url:
        return ()
    try:
        path = urlsplit(url).path
    except ValueError:
        path = ""
    token = path.rstrip("/").rpartition("/")[2]
    return tuple(value for value in (url, quote(url, safe=""), token) if value)


def under_base_url(url: str, base_url: str) -> bool:
    """True only for a URL on the same scheme, host and port as ``base_url``, below its path:
    where a provider's own key may be sent along with a download.

    A prefix test on the string would pass ``https://api.openai.com.evil.com/…`` or
    ``https://api.openai.com@evil.com/…``; the key must never reach another host.
    """
    try:
        target, base = urlsplit(url), urlsplit(base_url)
        same_origin = target.hostname is not None and _origin(target) == _origin(base)
    except ValueError:  # a port that is not a number
        return False
    if not same_origin:
        return False
    prefix = base.path.rstrip("/")
    return target.path == prefix or target.path.startswith(prefix + "/")


def _origin(parts: SplitResult) -> tuple[str, str | None, int | None]:
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(scheme)


def _error_body(response: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from ``{"error": {"code", "message"}}`` or a flat ``{code, message}``."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, str) and inner.strip():
            return None, inner
        envelope = inner if isinstance(inner, dict) else body
        code = envelope.get("code")
        message = envelope.get("message") or envelope.get("msg")
        if isinstance(message, str) and message.strip():
            return _code_text(code), message
        return _code_text(code), response.reason_phrase or "error"
    return None, response.text or response.reason_phrase or "error"


def _code_text(code: object) -> str | None:
    """Codes come as strings on the wire, sometimes as ints; both give ``"1301"``."""
    if isinstance(code, bool) or code is None:
        return None
    if isinstance(code, int | str) and str(code).strip():
        return str(code).strip()
    return None


def _shorten(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_MESSAGE_CHARS else flat[: MAX_MESSAGE_CHARS - 1] + "…"


def _describe(exc: httpx.RequestError, secret: Secrets = "") -> str:
    detail = redact(str(exc), secret).strip()
    name = type(exc).__name__
    return f"{name}: {detail}" if detail else name
