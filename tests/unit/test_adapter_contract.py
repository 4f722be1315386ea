"""The adapter contract: what every provider adapter does alike, stated once for all five kinds.

Each kind's wire data is the ``CONTRACT`` of its own test file (docs/wire-formats.md §1–§5);
what only one adapter does is tested there. The HTTP seam is an ``httpx.MockTransport``, and the
last tests run each adapter against the in-process simulator.

Over 300 lines on purpose: this is the one place each shared behaviour (over thirty) is written,
so that the five adapter files hold only their own; split, the contract would be read in pieces.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.support.adapter_contract import (
    CALLBACK_TOKEN,
    CALLBACK_URL,
    GENERIC_STATUSES,
    JOB_ID,
    MAYBE_SENT,
    NOT_SENT,
    Contract,
    answer,
    assert_classified,
    over,
    raising,
    simulated,
)
from tests.support.contracts import ark, gateway, kling, openai, zhipu
from workers.domain import errors
from workers.domain.errors import (
    ConfigError,
    InvalidSpec,
    PermanentError,
    RetryableError,
    VidqueueError,
)
from workers.domain.jobs import ProviderStatus
from workers.providers import build, validator

CONTRACTS = (zhipu.CONTRACT, openai.CONTRACT, gateway.CONTRACT, ark.CONTRACT, kling.CONTRACT)
each = pytest.mark.parametrize("c", CONTRACTS, ids=str)


def rows(*tables: str, extra: tuple[Any, ...] = ()) -> Any:
    return over(CONTRACTS, *tables, extra=extra)


# --- submit ---------------------------------------------------------------------------------


@each
def test_submit_posts_json_with_auth_and_the_configured_timeout(c: Contract) -> None:
    request = c.submitted(c.spec(prompt="p"))
    assert (request.method, str(request.url)) == ("POST", c.base_url + c.submit_path)
    assert request.headers["content-type"] == "application/json"
    c.check_auth(request)
    assert request.extensions["timeout"] == dict.fromkeys(
        ("connect", "read", "write", "pool"), 12.5
    )


@each
def test_submit_returns_the_task_of_the_documented_answer(c: Contract) -> None:
    assert c.submit_answered(answer(200, c.submit_ok)) == c.task


@each
def test_submit_validates_before_sending_anything(c: Contract) -> None:
    sent: list[httpx.Request] = []
    with pytest.raises(InvalidSpec) as caught:
        c.provider(answer(200, c.submit_ok), sent).submit(JOB_ID, c.spec(prompt="p", fps=24), c.key)
    assert (caught.value.field, sent) == ("fps", [])


@each
def test_the_job_id_is_sent_only_where_the_format_has_a_place_for_it(c: Contract) -> None:
    request = c.submitted(c.spec(prompt="p"))
    assert (JOB_ID in request.content.decode()) is c.sends_job_id
    assert JOB_ID not in str(request.headers)


@rows("no_task_id", extra=("<html>oops",))
def test_a_2xx_submit_without_a_task_id_is_an_unknown_outcome(c: Contract, row: Any) -> None:
    with pytest.raises(errors.SubmitOutcomeUnknown, match=f"^{c.kind}: "):
        c.submit_answered(answer(200, row))


@rows(extra=MAYBE_SENT)
def test_a_submit_cut_off_after_sending_is_an_unknown_outcome(c: Contract, row: Any) -> None:
    with pytest.raises(errors.SubmitOutcomeUnknown) as caught:
        c.submit_answered(raising(row))
    assert caught.value.__cause__ is row


@rows(extra=NOT_SENT)
def test_a_submit_that_never_left_is_retryable(c: Contract, row: Any) -> None:
    with pytest.raises(RetryableError) as caught:
        c.submit_answered(raising(row))
    assert caught.value.code == errors.PROVIDER_UNAVAILABLE


@pytest.mark.parametrize("c", [c for c in CONTRACTS if c.duplicate], ids=str)
def test_a_repeated_job_id_is_refused_where_the_format_says_so(c: Contract) -> None:
    assert c.duplicate is not None
    status, body, kind, code = c.duplicate
    with pytest.raises(kind) as caught:
        c.submit_answered(answer(status, body))
    assert (type(caught.value), caught.value.code) == (kind, code)


# --- poll -----------------------------------------------------------------------------------


@each
def test_poll_gets_the_task_with_auth_and_the_configured_timeout(c: Contract) -> None:
    sent: list[httpx.Request] = []
    c.provider(answer(200, c.poll_answer(next(iter(c.statuses)))), sent).poll(c.task, c.key)
    assert (sent[0].method, str(sent[0].url)) == ("GET", c.base_url + c.poll_path)
    c.check_auth(sent[0])
    assert sent[0].extensions["timeout"]["read"] == 12.5


@rows(extra=MAYBE_SENT + NOT_SENT)
def test_a_poll_without_an_answer_is_retryable(c: Contract, row: Any) -> None:
    with pytest.raises(RetryableError) as caught:
        c.provider(raising(row)).poll(c.task, c.key)
    assert caught.value.code == errors.PROVIDER_UNAVAILABLE


@rows("statuses")
def test_every_documented_status_is_normalised(c: Contract, row: str) -> None:
    result = c.provider(answer(200, c.poll_answer(row))).poll(c.task, c.key)
    assert (result.status, result.raw_status) == (c.statuses[row], row)
    assert (result.video_url is None) is (result.status is not ProviderStatus.SUCCEEDED)


@rows("statuses")
def test_statuses_match_case_insensitively_only_where_the_format_says_so(
    c: Contract, row: str
) -> None:
    swapped = row.swapcase()
    result = c.provider(answer(200, c.poll_answer(swapped))).poll(c.task, c.key)
    # Matched exactly, another spelling is another word: unknown (running) unless listed too.
    exact = c.statuses.get(swapped, ProviderStatus.RUNNING)
    assert result.status is (c.statuses[row] if c.any_case else exact)


@each
def test_a_success_gives_the_result_urls_and_when_the_task_finished(c: Contract) -> None:
    body, video, cover = c.success
    result = c.provider(answer(200, body)).poll(c.task, c.key)
    assert result.status is ProviderStatus.SUCCEEDED
    assert (result.video_url, result.cover_url, result.finished_at) == (video, cover, c.finished_at)


@rows("no_video")
def test_a_success_without_a_video_url_is_a_permanent_protocol_error(c: Contract, row: Any) -> None:
    with pytest.raises(PermanentError) as caught:
        c.provider(answer(200, row)).poll(c.task, c.key)
    assert caught.value.code == errors.PROVIDER_PROTOCOL


@each
def test_a_failed_tasks_detail_never_shows_the_secret(c: Contract) -> None:
    body = c.failure_saying(f"rejected key {c.secret}")
    message = c.provider(answer(200, body)).poll(c.task, c.key).error_message
    assert c.secret not in message and "[redacted]" in message


@rows("failures")
def test_a_failed_task_reports_its_code_and_detail(c: Contract, row: Any) -> None:
    body, code, message = row
    result = c.provider(answer(200, body)).poll(c.task, c.key)
    assert (result.status, result.error_code, result.error_message) == (
        ProviderStatus.FAILED,
        code,
        message,
    )


@each
def test_an_unknown_status_is_running_with_a_warning_that_hides_the_key(
    c: Contract, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=f"vidqueue.providers.{c.kind}")
    result = c.provider(answer(200, c.poll_answer("paused"))).poll(c.task, c.key)
    assert (result.status, result.raw_status) == (ProviderStatus.RUNNING, "paused")
    [record] = caplog.records
    assert (record.name, record.levelno) == (f"vidqueue.providers.{c.kind}", logging.WARNING)
    assert "paused" in record.getMessage()
    assert not any(hidden in caplog.text for hidden in (c.key.secret, c.secret, *c.hidden))


@rows("no_status", extra=("{not json", ["a", "list"]))
def test_an_unreadable_poll_answer_is_a_retryable_protocol_error(c: Contract, row: Any) -> None:
    with pytest.raises(RetryableError) as caught:
        c.provider(answer(200, row)).poll(c.task, c.key)
    assert caught.value.code == errors.PROVIDER_PROTOCOL


# --- errors ---------------------------------------------------------------------------------


@rows(extra=GENERIC_STATUSES)
def test_without_a_business_code_the_status_decides(c: Contract, row: Any) -> None:
    status, kind, code = row
    body = c.error_body(None, "provider says no")
    assert_classified(
        c, status, body, kind, code, prefix=f"{c.kind}: HTTP {status}: provider says no"
    )


@rows("codes")
def test_the_providers_own_codes_are_classified(c: Contract, row: Any) -> None:
    """A row names a business code (sent in the kind's error envelope) or a whole body."""
    status, code, kind, job_code = row
    if isinstance(code, dict):
        body, shown = code, f"{c.kind}: "
    else:
        body = c.error_body(code, "provider says no")
        shown = f"{c.kind}: {code}: " if code else f"{c.kind}: HTTP {status}: "
    poll_only = not c.codes_on_submit
    assert_classified(c, status, body, kind, job_code, prefix=shown, poll_only=poll_only)


@rows(extra=(({"Retry-After": "7"}, 7.0), ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5)))
def test_a_rate_limit_honours_retry_after_ms_then_retry_after(c: Contract, row: Any) -> None:
    headers, wait_s = row
    with pytest.raises(RetryableError) as caught:
        c.submit_answered(answer(429, c.error_body(None, "slow down"), headers))
    assert (caught.value.code, caught.value.retry_after_s) == (errors.RATE_LIMITED, wait_s)


@each
def test_error_messages_never_contain_the_secret(c: Contract) -> None:
    with pytest.raises(PermanentError) as caught:
        c.submit_answered(answer(401, c.error_body(None, f"invalid key {c.secret}")))
    assert c.secret not in str(caught.value)
    assert "[redacted]" in str(caught.value)


# --- downloads, cancel, reconcile, registry, validation --------------------------------------


@each
def test_the_key_goes_only_to_the_providers_own_base_url_and_only_where_needed(c: Contract) -> None:
    provider, base = c.provider(answer(200, {})), urlsplit(c.base_url)
    own = {"Authorization": f"Bearer {c.key.secret}"} if c.download_key else {}
    host, path = base.netloc, base.path
    for url in (f"{c.base_url}/x/content?variant=video", f"https://{host}:443{path}/x"):
        assert provider.download_headers(url, c.key) == own, url
    for url in (
        "https://cdn.example.com/x.mp4",
        f"https://{host}.evil.example{path}/x",
        f"https://{host}@evil.example{path}/x",
        f"http://{host}{path}/x",
        f"https://{host}:8443{path}/x",
        f"https://{host}:port{path}/x",
        f"https://{host}{path}beta/x",
        *([f"https://{host}/x"] if path else []),  # outside the base path
    ):
        assert provider.download_headers(url, c.key) == {}, url


@each
def test_cancel_and_reconcile_where_the_format_has_none_send_nothing(c: Contract) -> None:
    sent: list[httpx.Request] = []
    provider = c.provider(answer(200, {}), sent)
    if not c.cancels:
        assert provider.cancel(c.task, c.key) is False
    if not c.reconciles:
        assert provider.reconcile(JOB_ID, c.key) is None
    assert sent == []


@each
def test_the_registry_builds_the_adapter_and_a_validator_needing_no_client(c: Contract) -> None:
    with httpx.Client() as client:
        provider = build(c.config(), client)
    assert (type(provider), provider.idempotent_submit) == (c.adapter, c.idempotent)
    validator(c.config())(c.spec(prompt="p"))
    with pytest.raises(InvalidSpec):
        validator(c.config())(c.spec(prompt="p", fps=24))


def test_the_registry_refuses_a_kind_without_an_adapter() -> None:
    config = CONTRACTS[0].config().model_copy(update={"kind": "nope"})  # skips validation
    with pytest.raises(ConfigError, match="nope"):
        validator(config)


@rows("rejects")
def test_what_the_model_cannot_take_is_rejected_naming_the_field(c: Contract, row: Any) -> None:
    fields, field = row
    with pytest.raises(InvalidSpec) as caught:
        validator(c.config())(c.spec(**({"prompt": "p"} | fields)))
    assert caught.value.field == field


@rows("accepts")
def test_what_the_wire_format_allows_is_accepted(c: Contract, row: Any) -> None:
    validator(c.config())(c.spec(**({"prompt": "p"} | row)))


# --- provider callbacks: vidqueue's URL, only where the wire format has a place for it ---------

# The spec's own callback_url is the producer's webhook; options may set the provider's.
PRODUCER_WEBHOOK = "https://producer.example.com/webhook"
PRODUCER_PROVIDER_HOOK = "https://producer.example.com/provider-hook"
CALLBACK_CASES = [
    pytest.param(c, fields, at, id=f"{c.kind}-{i}-{fields.get('model', 'default')}")
    for c in CONTRACTS
    for i, (fields, at) in enumerate(c.callbacks)
]
by_callback = pytest.mark.parametrize(("c", "fields", "at"), CALLBACK_CASES)
taking_callback = pytest.mark.parametrize(
    ("c", "fields", "at"), [case for case in CALLBACK_CASES if case.values[2] is not None]
)


def dig(body: Any, at: tuple[str, ...]) -> Any:
    for key in at:
        body = body[key]
    return body


def without(body: dict[str, Any], at: tuple[str, ...]) -> dict[str, Any]:
    """``body`` without the field at ``at``, and without its parent if that is left empty (a
    metadata object holding only the callback is not sent at all without it)."""
    *parents, last = at
    del dig(body, tuple(parents))[last]
    if parents and not dig(body, tuple(parents)):
        del dig(body, tuple(parents[:-1]))[parents[-1]]
    return body


def leaks(text: str) -> bool:
    """Whether ``text`` shows the callback token, or any 8-character piece of it."""
    pieces = {CALLBACK_TOKEN[i : i + 8] for i in range(len(CALLBACK_TOKEN) - 7)}
    return any(piece in text for piece in pieces)


@by_callback
def test_the_callback_url_is_sent_exactly_where_and_when_the_format_takes_it(
    c: Contract, fields: dict[str, Any], at: tuple[str, ...] | None
) -> None:
    job = c.spec(**({"prompt": "p", "callback_url": PRODUCER_WEBHOOK} | fields))
    assert c.provider(answer(200, {})).accepts_callback(job) is (at is not None)
    content = c.submitted(job, callback_url=CALLBACK_URL).content
    assert PRODUCER_WEBHOOK.encode() not in content  # the producer's webhook is never sent
    if at is None:
        assert CALLBACK_TOKEN.encode() not in content
    else:
        assert content.count(CALLBACK_TOKEN.encode()) == 1
        assert dig(json.loads(content), at) == CALLBACK_URL


@by_callback
def test_without_a_callback_url_the_body_has_no_callback_and_is_otherwise_the_same(
    c: Contract, fields: dict[str, Any], at: tuple[str, ...] | None
) -> None:
    job = c.spec(**({"prompt": "p"} | fields))
    plain = c.submitted(job).content
    assert c.submitted(job, callback_url=None).content == plain
    assert b"callback" not in plain
    armed = json.loads(c.submitted(job, callback_url=CALLBACK_URL).content)
    assert (without(armed, at) if at else armed) == json.loads(plain)


@taking_callback
def test_a_producers_own_provider_callback_is_sent_only_without_vidqueues(
    c: Contract, fields: dict[str, Any], at: tuple[str, ...]
) -> None:
    assert c.callback_option is not None
    options = fields.get("options", {}) | {c.callback_option: PRODUCER_PROVIDER_HOOK}
    job = c.spec(**({"prompt": "p"} | fields | {"options": options}))
    # Without vidqueue's callback, the option lands where vidqueue's would have...
    assert dig(json.loads(c.submitted(job).content), at) == PRODUCER_PROVIDER_HOOK
    # ...with it, vidqueue's URL wins and the producer's is not sent at all.
    content = c.submitted(job, callback_url=CALLBACK_URL).content
    assert dig(json.loads(content), at) == CALLBACK_URL
    assert PRODUCER_PROVIDER_HOOK.encode() not in content


@by_callback
def test_producer_callback_field_names_the_option_setting_the_providers_callback(
    c: Contract, fields: dict[str, Any], at: tuple[str, ...] | None
) -> None:
    provider = c.provider(answer(200, {}))
    plain = c.spec(**({"prompt": "p", "callback_url": PRODUCER_WEBHOOK} | fields))
    assert provider.producer_callback_field(plain) is None  # the webhook is vidqueue's field
    option = c.callback_option or "callback_url"
    options = fields.get("options", {}) | {option: PRODUCER_PROVIDER_HOOK}
    job = c.spec(**({"prompt": "p"} | fields | {"options": options}))
    expected = f"options.{c.callback_option}" if c.callback_option else None
    assert provider.producer_callback_field(job) == expected


# How a provider might echo vidqueue's callback URL back in an error.
ECHOES = {
    "verbatim": f"bad callback_url {CALLBACK_URL}",
    "json-escaped": "bad body " + json.dumps({"callback_url": CALLBACK_URL}).replace("/", "\\/"),
    "percent-encoded": f"bad callback_url={quote(CALLBACK_URL, safe='')}",
    "token-only": f"unreachable token {CALLBACK_TOKEN}",
    # Long enough to be shortened, cut in the middle of the token unless redacted first.
    "cut-mid-token": "x" * (320 - len(CALLBACK_URL)) + CALLBACK_URL,
}


def echoing(status: int, c: Contract, text: str) -> Any:
    """Answers ``status`` with an error saying ``text`` and the whole request body."""

    def handler(request: httpx.Request) -> httpx.Response:
        message = f"{text}; request was {request.content.decode()}"
        return httpx.Response(status, json=c.error_body(None, message))

    return handler


@pytest.mark.parametrize("echo", ECHOES.values(), ids=ECHOES.keys())
@pytest.mark.parametrize("status", [400, 500])
@each
def test_a_failed_submit_never_shows_the_callback_url(
    c: Contract, status: int, echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fields, _ = c.callbacks[0]
    provider = c.provider(echoing(status, c, echo))
    with pytest.raises(VidqueueError) as caught:
        provider.submit(
            JOB_ID, c.spec(**({"prompt": "p"} | fields)), c.key, callback_url=CALLBACK_URL
        )
    shown = f"{caught.value} {caught.value.message!r} {caught.value!r}"
    assert not leaks(shown) and not leaks(caplog.text)
    assert "[redacted]" in shown and shown.startswith(f"{c.kind}: ")


@rows(extra=(httpx.ReadTimeout, httpx.ConnectError))
def test_a_submit_cut_off_never_shows_the_callback_url(c: Contract, row: Any) -> None:
    failure = row(f"failed sending to {CALLBACK_URL}")
    provider = c.provider(raising(failure))
    with pytest.raises(VidqueueError) as caught:
        provider.submit(JOB_ID, c.spec(prompt="p"), c.key, callback_url=CALLBACK_URL)
    assert not leaks(str(caught.value)) and "[redacted]" in str(caught.value)


# --- against the simulator ------------------------------------------------------------------


@each
def test_the_adapter_and_the_simulator_speak_the_same_format(c: Contract) -> None:
    with simulated(c) as sim:
        task = sim.provider.submit(JOB_ID, c.spec(prompt="p"), c.sim_key)
        assert sim.provider.poll(task, c.sim_key).status is c.sim_first
        sim.clock.advance(11)
        done = sim.provider.poll(task, c.sim_key)
        assert done.status is ProviderStatus.SUCCEEDED and done.video_url
        headers = sim.provider.download_headers(done.video_url, c.sim_key)
        video = sim.client.get(done.video_url, headers=headers)
        expected = sim.client.get(f"/_sim/tasks/{task.id}/sha256").json()["video"]
        assert hashlib.sha256(video.content).hexdigest() == expected


@by_callback
def test_the_simulator_takes_a_submit_carrying_the_callback_url(
    c: Contract, fields: dict[str, Any], at: tuple[str, ...] | None
) -> None:
    with simulated(c) as sim:
        job = c.spec(**({"prompt": "p"} | fields))
        task = sim.provider.submit(JOB_ID, job, c.sim_key, callback_url=CALLBACK_URL)
        assert sim.provider.poll(task, c.sim_key).status is c.sim_first


@each
def test_the_simulators_failures_and_injected_errors_read_as_the_providers_own(
    c: Contract,
) -> None:
    with simulated(c, fail_rate=1.0) as sim:
        task = sim.provider.submit(JOB_ID, c.spec(prompt="p"), c.sim_key)
        sim.clock.advance(11)
        failed = sim.provider.poll(task, c.sim_key)
        assert (failed.status, failed.error_message) == (ProviderStatus.FAILED, c.sim_failure)
        sim.client.post("/_sim/options", json={"poll_error_rate": 1.0, "submit_error_rate": 1.0})
        with pytest.raises(RetryableError):
            sim.provider.poll(task, c.sim_key)
        with pytest.raises(RetryableError):
            sim.provider.submit("job-0002", c.spec(prompt="p"), c.sim_key)


@each
def test_the_simulator_refuses_a_key_over_its_limit_as_the_provider_does(c: Contract) -> None:
    code, shown = c.sim_over_limit
    with simulated(c, concurrency_limit=1) as sim:
        sim.provider.submit(JOB_ID, c.spec(prompt="p"), c.sim_key)
        with pytest.raises(RetryableError) as caught:
            sim.provider.submit("job-0002", c.spec(prompt="p"), c.sim_key)
        assert caught.value.code == code and shown in caught.value.message
        assert sim.client.get("/_sim/stats").json()["rate_limited_429"] == 1
