"""The one flow every provider adapter shares; each adapter module holds only its wire mapping.

The five providers are asynchronous JSON APIs of one shape (docs/wire-formats.md): POST a task,
GET it until it ends, download a result URL. :class:`JsonAdapter` runs that flow once, sending
through ``workers.providers.http.JsonApi`` so that every failure is translated at the boundary,
once. A subclass says only what differs on the wire:

- where: ``submit_request`` (path, body, what a later poll needs) and ``poll_route``;
- callbacks: ``accepts_callback`` (whether the submit carries vidqueue's callback URL) and
  ``callback_option`` (the ``spec.options`` key by which a producer sets the provider's own);
- who: ``headers`` (auth) and ``secret`` (what error messages must never show);
- errors: ``business`` (the provider's own error codes; the generic status rules take the rest)
  and ``body_failure`` (an error a 2xx answer carries in its body);
- reading: ``task_id``, ``poll_answer``, the status table (``statuses``, ``status_field``,
  ``status_key``), ``result_urls``, ``failure``, ``progress``, ``poll_after`` and
  ``finish_field``.

Cancel and reconcile default to "the format has none", download headers to none at all: an
adapter whose format offers more overrides them. Hooks are methods, not functions kept in class
attributes, because mypy cannot type a function stored on a class (it would be bound); where a
hook is a module's own function, the adapter names it with ``staticmethod``.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from config.providers import ApiKey, ProviderConfig
from workers.domain.errors import (
    CANCELLED,
    PROVIDER_PROTOCOL,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    VidqueueError,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.base import PollResult, ProviderTask, with_finish_time
from workers.providers.http import (
    BusinessCodes,
    HttpFailure,
    JsonApi,
    classify,
    redact,
    under_base_url,
    url_secrets,
)
from workers.providers.jwt import TokenCache


@dataclass(frozen=True)
class SubmitRequest:
    """What a submit sends: the path below the base URL, the content as httpx keyword arguments
    (``json=``, or ``data=`` and ``files=``), and what a later poll needs (``ProviderTask.extra``).
    """

    path: str
    content: dict[str, Any]
    extra: dict[str, str] = field(default_factory=dict)


def text(value: object) -> str | None:
    """``value`` when it is a non-empty string: how every format's ids and URLs are read."""
    return value if isinstance(value, str) and value else None


class JsonAdapter(ABC):
    """A provider adapter (``VideoProvider``); shares one thread-safe ``httpx.Client``."""

    # True only where a re-sent submit carrying the job id cannot create a second paid task.
    idempotent_submit: bool = False
    log: ClassVar[logging.Logger]
    # Where a task is polled, below the base URL; ``{id}`` is the task id, URL-quoted.
    poll_route: ClassVar[str]
    statuses: ClassVar[Mapping[str, ProviderStatus]]
    status_field: ClassVar[str] = "status"
    # How log lines name a task ("video" for OpenAI, whose tasks are Video objects).
    task_noun: ClassVar[str] = "task"
    no_task_id: ClassVar[str] = "submit answered HTTP 200 without a task id"
    no_video: ClassVar[str] = "succeeded without a video url"
    # The answer's field holding when the task finished, and whether it counts milliseconds.
    finish_field: ClassVar[str | None] = None
    finish_in_millis: ClassVar[bool] = False
    # True where results are served behind the key, below the provider's own base URL.
    download_needs_key: ClassVar[bool] = False
    # The ``spec.options`` key by which a producer sets the provider's callback URL itself.
    callback_option: ClassVar[str | None] = None

    def __init__(self, config: ProviderConfig, client: httpx.Client) -> None:
        self.config = config
        self._api = JsonApi(config.name, client, httpx.Timeout(config.request_timeout_s))

    # --- the flow ---------------------------------------------------------------------------

    def submit(
        self, job_id: str, spec: JobSpec, key: ApiKey, *, callback_url: str | None = None
    ) -> ProviderTask:
        """Validate, then create the task. A 2xx without a task id may still have created one,
        so it is ``SubmitOutcomeUnknown``, never a plain error. ``callback_url`` (vidqueue's,
        secret-bearing) goes where the format has a place for it, and into no error message."""
        self.validate(spec)
        request = self.submit_request(job_id, spec, callback_url)
        content, hidden = request.content, url_secrets(callback_url)
        _, payload = self.call("POST", request.path, key, submitting=True, hidden=hidden, **content)
        task_id = self.task_id(payload)
        if task_id is None:
            raise SubmitOutcomeUnknown(f"{self.config.name}: {self.no_task_id}")
        return ProviderTask(id=task_id, extra=request.extra)

    def poll(self, task: ProviderTask, key: ApiKey) -> PollResult:
        response, payload = self.call("GET", self.poll_path(task), key, submitting=False)
        answer = self.poll_answer(response, payload, key)
        result = self.poll_result(task, answer, key, self.poll_after(response))
        stamp = answer.get(self.finish_field) if self.finish_field else None
        return with_finish_time(result, stamp, millis=self.finish_in_millis)

    def cancel(self, task: ProviderTask, key: ApiKey) -> bool:
        """The format has no way to stop a task: it runs to its end and keeps its slot."""
        return False

    def reconcile(self, job_id: str, key: ApiKey) -> ProviderTask | None:
        """The format cannot find a task by the job id a lost submit carried."""
        return None

    def accepts_callback(self, spec: JobSpec) -> bool:
        """True exactly when ``submit(..., callback_url=…)`` puts the URL in the request; the
        default: the format has no callback."""
        return False

    def producer_callback_field(self, spec: JobSpec) -> str | None:
        """The spec field by which ``spec`` already sets the provider's callback URL itself
        (``options.callback_url``), if it does; None where it does not, or cannot."""
        option = self.callback_option
        return f"options.{option}" if option is not None and option in spec.options else None

    def download_headers(self, url: str, key: ApiKey) -> dict[str, str]:
        """The key only where results sit behind it, and only below this provider's own base
        URL: a public result URL, or any other host, must never see it."""
        if self.download_needs_key and under_base_url(url, self.config.base_url):
            return {"Authorization": f"Bearer {key.secret}"}
        return {}

    def call(
        self,
        method: str,
        path: str,
        key: ApiKey,
        *,
        submitting: bool,
        hidden: tuple[str, ...] = (),
        **request: Any,
    ) -> tuple[httpx.Response, dict[str, Any]]:
        """A 2xx answer below the base URL and its JSON object; any failure raised, translated
        (by ``JsonApi``, or from the body of a 2xx), with the secret and ``hidden`` redacted."""
        secret = (self.secret(key), *hidden)
        business: BusinessCodes = partial(self.business, submitting=submitting)
        response, payload = self._api.call(
            method,
            f"{self.config.base_url}{path}",
            headers=self.headers(key),
            secret=secret,
            submitting=submitting,
            business=business,
            **request,
        )
        failure = self.body_failure(response, payload)
        if failure is not None:
            code = None if failure.code is None else redact(failure.code, secret)
            redacted = replace(failure, code=code, message=redact(failure.message, secret))
            raise classify(redacted, business)
        return response, payload

    def poll_result(
        self, task: ProviderTask, answer: dict[str, Any], key: ApiKey, after_s: float | None
    ) -> PollResult:
        """The answer normalised; an unknown status is taken as running (with a warning)."""
        raw = answer.get(self.status_field)
        if not isinstance(raw, str) or not raw:
            message = f"{self.config.name}: poll answer has no {self.status_field}"
            raise RetryableError(message, code=PROVIDER_PROTOCOL)
        status, progress = self._status(task, raw), self.progress(answer)
        if status is ProviderStatus.SUCCEEDED:
            video, cover = self._urls(task, answer)
            return PollResult(
                status, video_url=video, cover_url=cover, progress=progress, raw_status=raw
            )
        if status is ProviderStatus.FAILED:
            code, detail = self.failure(answer, raw)
            message = redact(f"{self.config.name}: {detail}", self.secret(key))
            return PollResult(
                status, error_code=code, error_message=message, progress=progress, raw_status=raw
            )
        if status is ProviderStatus.CANCELLED:
            message = f"{self.config.name}: the task was cancelled at the provider"
            return PollResult(status, error_code=CANCELLED, error_message=message, raw_status=raw)
        return PollResult(status, progress=progress, poll_after_s=after_s, raw_status=raw)

    def _status(self, task: ProviderTask, raw: str) -> ProviderStatus:
        status = self.statuses.get(self.status_key(raw))
        if status is not None:
            return status
        name, noun, field_name = self.config.name, self.task_noun, self.status_field
        self.log.warning(
            "%s %s %s: unknown %s %r, taken as running", name, noun, task.id, field_name, raw
        )
        return ProviderStatus.RUNNING

    def _urls(self, task: ProviderTask, answer: dict[str, Any]) -> tuple[str, str | None]:
        video, cover = self.result_urls(task, answer)
        if text(video) is None:
            message = f"{self.config.name}: task {task.id} {self.no_video}"
            raise PermanentError(message, code=PROVIDER_PROTOCOL)
        return str(video), text(cover)

    # --- the wire mapping: what each adapter must say ----------------------------------------

    @abstractmethod
    def validate(self, spec: JobSpec) -> None:
        """Raise ``InvalidSpec`` naming the field (the module's rules, shared with the producer)."""

    @abstractmethod
    def submit_request(self, job_id: str, spec: JobSpec, callback_url: str | None) -> SubmitRequest:
        """The submit for a spec already validated; ``callback_url`` goes where the format has a
        place for it (and wins over ``spec.options``), and nowhere when it is None."""

    @abstractmethod
    def failure(self, answer: dict[str, Any], raw: str) -> tuple[str, str]:
        """``(error code, detail)`` of a failed task; the detail follows the provider's name."""

    @abstractmethod
    def result_urls(self, task: ProviderTask, answer: dict[str, Any]) -> tuple[object, object]:
        """``(video, cover)`` of a succeeded answer, as found; a missing video is an error."""

    # --- the wire mapping: defaults most formats share ----------------------------------------

    def headers(self, key: ApiKey) -> dict[str, str]:
        return {"Authorization": f"Bearer {key.secret}"}

    def secret(self, key: ApiKey) -> str:
        """What error messages and failure details must never show."""
        return key.secret

    def business(self, failure: HttpFailure, *, submitting: bool) -> VidqueueError | None:
        """The provider's own error codes; None leaves the generic status rules."""
        return None

    def body_failure(self, response: httpx.Response, payload: dict[str, Any]) -> HttpFailure | None:
        """The error a 2xx answer carries in its body, where the format has such errors; it is
        classified like the same code on an error answer."""
        return None

    def poll_path(self, task: ProviderTask) -> str:
        return self.poll_route.format(id=quote(task.id, safe=""))

    def task_id(self, payload: dict[str, Any]) -> str | None:
        return text(payload.get("id"))

    def poll_answer(
        self, response: httpx.Response, payload: dict[str, Any], key: ApiKey
    ) -> dict[str, Any]:
        """The object holding the task's fields, where the format wraps it in an envelope."""
        return payload

    def status_key(self, raw: str) -> str:
        """The status as the table spells it (formats matching case-insensitively fold it)."""
        return raw

    def progress(self, answer: dict[str, Any]) -> float | None:
        return None

    def poll_after(self, response: httpx.Response) -> float | None:
        """The provider's own hint for when to poll again."""
        return None


class SigningAdapter(JsonAdapter):
    """A JSON adapter whose bearer may be a short-lived HS256 JWT minted from the key (Kling;
    Zhipu's legacy keys): one token per key, reused until ``token_refresh_s`` before it expires.
    """

    token_refresh_s: ClassVar[float]

    def __init__(
        self,
        config: ProviderConfig,
        client: httpx.Client,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, client)
        self._tokens = TokenCache(refresh_s=self.token_refresh_s, clock=clock)
