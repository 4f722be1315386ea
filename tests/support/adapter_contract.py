"""The provider adapter contract, written once: what one kind's wire data must say, and the
harness every adapter test shares (a mock transport, the in-process simulator, a JWT check).

Each adapter's test file declares its kind's :class:`Contract`, the documented submit and poll
answers of docs/wire-formats.md §1–§5, its error envelope and which optional features it has, and
uses it for what only that adapter does; ``tests/unit/test_adapter_contract.py`` runs every
behaviour the five adapters share over all five contracts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from config.providers import ApiKey, ProviderConfig
from simulator.app import create_app
from simulator.options import SimOptions
from workers.domain import errors
from workers.domain.errors import PermanentError, RetryableError, VidqueueError
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.adapter import JsonAdapter
from workers.providers.base import ProviderTask

Handler = Callable[[httpx.Request], httpx.Response]
JOB_ID = "job-0f1e2d3c4b5a"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
# vidqueue's callback URL: its last path segment is the job's token, a secret.
CALLBACK_TOKEN = "Zk3v9QpLw0-Tn_5bYc2RxH8mJd4sAe7uFg1oKi6yWqE"
CALLBACK_URL = f"https://vidqueue.example.com/v1/callbacks/p/{JOB_ID}/{CALLBACK_TOKEN}"
# Transport failures after the request may have reached the provider, and before it could.
MAYBE_SENT = (
    httpx.ReadTimeout("timed out"),
    httpx.WriteTimeout("timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.ReadError("Connection reset by peer"),
    httpx.WriteError("Broken pipe"),
)
NOT_SENT = (
    httpx.ConnectError("Connection refused"),
    httpx.ConnectTimeout("timed out"),
    httpx.PoolTimeout("no connection available"),
    httpx.ProxyError("proxy down"),
)
# With no business code, every format falls back to the generic status rules.
GENERIC_STATUSES = (
    (400, PermanentError, errors.INVALID_REQUEST),
    (401, PermanentError, errors.AUTH_FAILED),
    (403, PermanentError, errors.PERMISSION_DENIED),
    (404, PermanentError, errors.INVALID_REQUEST),
    (429, RetryableError, errors.RATE_LIMITED),
    (500, RetryableError, errors.PROVIDER_UNAVAILABLE),
    (502, RetryableError, errors.PROVIDER_UNAVAILABLE),
    (503, RetryableError, errors.PROVIDER_UNAVAILABLE),
)


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    """Every request gets this answer; a ``str`` body is sent as it is, anything else as JSON."""
    if isinstance(body, str):
        return lambda request: httpx.Response(status, text=body, headers=headers)
    return lambda request: httpx.Response(status, json=body, headers=headers)


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def verified_jwt(request: httpx.Request, secret: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of the request's bearer JWT, its HS256 signature checked with ``hmac``
    (not with the code under test)."""
    scheme, token = request.headers["authorization"].split(" ")
    assert scheme == "Bearer"
    head, body, signature = token.split(".")
    digest = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert signature == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return _unb64(head), _unb64(body)


def _unb64(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@dataclass(frozen=True)
class Contract:
    """One provider kind's wire data; ``kind`` is also the configured provider's name."""

    kind: str
    adapter: type[JsonAdapter]
    base_url: str
    key: ApiKey
    spec_defaults: dict[str, Any]
    task: ProviderTask  # what a submit of ``submit_ok`` gives, and what polls ask for
    submit_path: str
    submit_ok: Any
    poll_path: str
    poll_answer: Callable[[str], Any]  # a whole poll answer with this raw status
    statuses: dict[str, ProviderStatus]
    any_case: bool  # whether the status table is matched case-insensitively
    error_body: Callable[[str | None, str], Any]  # (business code or None, message)
    success: tuple[Any, str, str | None]  # (answer, video url, cover url)
    finished_at: float | None  # when ``success`` says the task finished (unix s), if it can
    failures: tuple[tuple[Any, str, str], ...]  # (answer, job error code, error message)
    failure_saying: Callable[[str], Any]  # a failed-task answer whose detail is this text
    no_task_id: tuple[Any, ...]  # 2xx submit answers without a task id
    no_status: tuple[Any, ...]  # 2xx poll answers without a status
    no_video: tuple[Any, ...] = ()  # succeeded answers without a video URL
    # The provider's own error codes: (HTTP status, code or whole body, error type, job code).
    codes: tuple[tuple[int, Any, type[VidqueueError], str], ...] = ()
    codes_on_submit: bool = True  # False where a code means something else on a submit
    rejects: tuple[tuple[dict[str, Any], str], ...] = ()  # (spec fields, the field named)
    accepts: tuple[dict[str, Any], ...] = ()  # spec fields the wire format allows
    signs_with: str | None = None  # the JWT secret, where requests carry a JWT
    hidden: tuple[str, ...] = ()  # more that logs must never show
    sends_job_id: bool = False
    # A repeated job id: (HTTP status, body, error type, job error code), where one is refused.
    duplicate: tuple[int, Any, type[VidqueueError], str] | None = None
    idempotent: bool = False
    cancels: bool = False
    reconciles: bool = False
    download_key: bool = False
    # vidqueue's callback URL per spec: (spec fields, the JSON keys it lands under, or None).
    callbacks: tuple[tuple[dict[str, Any], tuple[str, ...] | None], ...] = ()
    callback_option: str | None = None  # the options key setting the provider's callback
    sim_path: str = ""
    sim_first: ProviderStatus = ProviderStatus.QUEUED  # what the simulator says first
    sim_failure: str = ""  # the error message of a task the simulator fails
    sim_over_limit: tuple[str, str] = ("", "")  # (job code, what the message shows) over the cap
    sim_key: ApiKey = field(default_factory=lambda: ApiKey(id="SIM", secret="sim-key-test"))

    def __str__(self) -> str:
        return self.kind

    @property
    def secret(self) -> str:
        """What error messages must never show: the key, or the secret a JWT is signed with."""
        return self.signs_with or self.key.secret

    def config(self, **overrides: Any) -> ProviderConfig:
        fields = {"name": self.kind, "kind": self.kind, "base_url": self.base_url}
        fields |= {"api_key_env": [self.key.id], "request_timeout_s": 12.5}
        return ProviderConfig(**(fields | overrides))

    def provider(
        self,
        handler: Handler,
        sent: list[httpx.Request] | None = None,
        *,
        config: ProviderConfig | None = None,
        **options: Any,
    ) -> Any:
        """The adapter on a mock transport answering with ``handler``; requests go to ``sent``;
        ``options`` go to the adapter (``clock=``)."""

        def record(request: httpx.Request) -> httpx.Response:
            if sent is not None:
                sent.append(request)
            return handler(request)

        client = httpx.Client(transport=httpx.MockTransport(record))
        return self.adapter(config or self.config(), client, **options)

    def spec(self, **fields: Any) -> JobSpec:
        return JobSpec(**({"provider": self.kind, **self.spec_defaults} | fields))

    def submitted(self, job: JobSpec, **options: Any) -> httpx.Request:
        """The one request a submit of ``job`` sends (answered with ``submit_ok``); a
        ``callback_url`` option goes to the submit, any other to the adapter."""
        sent: list[httpx.Request] = []
        callback = {key: options.pop(key) for key in ("callback_url",) if key in options}
        provider = self.provider(answer(200, self.submit_ok), sent, **options)
        provider.submit(JOB_ID, job, self.key, **callback)
        [request] = sent
        return request

    def submit_answered(self, handler: Handler) -> ProviderTask:
        """What a submit of a valid spec gives (or raises) when ``handler`` answers it."""
        return self.provider(handler).submit(JOB_ID, self.spec(prompt="p"), self.key)

    def body_sent(self, job: JobSpec) -> Any:
        return json.loads(self.submitted(job).content)

    def check_auth(self, request: httpx.Request) -> None:
        if self.signs_with is None:
            assert request.headers["authorization"] == f"Bearer {self.key.secret}"
        else:
            verified_jwt(request, self.signs_with)


def over(contracts: Sequence[Contract], *tables: str, extra: Sequence[Any] = ()) -> Any:
    """Parametrize ``(c, row)`` over each contract's rows of ``tables``, then ``extra``, which
    every contract shares; a row's id is the row itself where it is a short text."""
    cases = [
        pytest.param(c, row, id=f"{c.kind}-{row if isinstance(row, str) and len(row) < 20 else i}")
        for c in contracts
        for i, row in enumerate([*(r for table in tables for r in getattr(c, table)), *extra])
    ]
    return pytest.mark.parametrize(("c", "row"), cases)


class FakeClock:
    """Both clocks (the simulator's, an adapter's ``clock=time``), moved only by :meth:`advance`."""

    def __init__(self, wall: float = 1_800_000_000.0) -> None:
        self.mono, self.wall = 1000.0, wall

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@dataclass
class Simulated:
    """The adapter, the simulator's clocks, and a client for the simulator's own routes."""

    provider: Any
    clock: FakeClock
    client: httpx.Client


@contextmanager
def simulated(contract: Contract, **options: Any) -> Iterator[Simulated]:
    """The adapter against the in-process simulator (10 s generations, fake clocks). The
    simulator's TestClient is built on another HTTP library, so a transport forwards to it."""
    clock = FakeClock()
    settings = {"gen_time_s": 10, "gen_jitter_s": 0, "seed": 1, "video_bytes": 4096} | options
    app = create_app(SimOptions(**settings), clock=clock)
    with TestClient(app, base_url="http://sim.test") as backend:

        def forward(request: httpx.Request) -> httpx.Response:
            headers = list(request.headers.multi_items())
            url, content = str(request.url), request.content
            reply = backend.request(request.method, url, headers=headers, content=content)
            return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)

        client = httpx.Client(transport=httpx.MockTransport(forward), base_url="http://sim.test")
        config = contract.config(base_url=f"http://sim.test{contract.sim_path}")
        signing = {"clock": clock.time} if contract.signs_with else {}
        yield Simulated(contract.adapter(config, client, **signing), clock, client)


def assert_classified(
    contract: Contract,
    status: int,
    body: Any,
    kind: type[VidqueueError],
    error_code: str,
    *,
    prefix: str | None = None,
    poll_only: bool = False,
) -> None:
    """A poll (and, unless ``poll_only``, a submit) answered ``status`` with ``body`` raises
    exactly ``kind`` with ``error_code``, its message starting with ``prefix`` (else the name)."""
    provider = contract.provider(answer(status, body))
    calls = [lambda: provider.poll(contract.task, contract.key)]
    if not poll_only:
        calls.append(lambda: provider.submit(JOB_ID, contract.spec(prompt="p"), contract.key))
    for call in calls:
        with pytest.raises(kind) as caught:
            call()
        assert (type(caught.value), caught.value.code) == (kind, error_code)
        assert caught.value.message.startswith(prefix or f"{contract.kind}: ")
