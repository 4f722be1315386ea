"""Each injected fault works as the chaos run relies on: the simulator's (Zhipu wire format)
and the S3 fault proxy's, each counted, each changeable at runtime.

The simulator's faults that only a socket shows (a stalled or dropped answer, a truncated or
slow download) run against a real uvicorn server; the rest in-process. The vidqueue adapter
reads each fault the way docs/design.md §4 and §7 want: a lost answer to a submit is an unknown
outcome (never blindly re-sent), everything else on a poll is retryable.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from config.providers import ApiKey, ProviderConfig
from devstack.ports import free_ports
from devstack.stack import Stack
from simulator import cli
from simulator.app import create_app
from simulator.faults import UNKNOWN_STATUS
from simulator.options import SimOptions
from tests.support.live import LiveStack
from tests.support.sim import ZHIPU, serving
from workers.domain.errors import (
    PROVIDER_PROTOCOL,
    PROVIDER_UNAVAILABLE,
    RATE_LIMITED,
    DuplicateSubmission,
    RetryableError,
    SubmitOutcomeUnknown,
)
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.io.storage import Storage
from workers.providers.base import ProviderTask
from workers.providers.zhipu import ZhipuProvider

KEY = ApiKey("SIM_KEY", "key-a")
SPEC = JobSpec(provider="sim", model="cogvideox-flash", prompt="a lighthouse at dusk")


def adapter(base: str, timeout_s: float = 0.5) -> ZhipuProvider:
    config = ProviderConfig(
        name="sim",
        kind="zhipu",
        base_url=f"{base}{ZHIPU}",
        api_key_env=["SIM_KEY"],
        request_timeout_s=timeout_s,
    )
    return ZhipuProvider(config, httpx.Client())


@pytest.fixture
def real_sim() -> Iterator[tuple[str, ZhipuProvider]]:
    """A simulator on a real socket (fast, seeded), and vidqueue's Zhipu adapter pointed at it."""
    app = create_app(SimOptions(gen_time_s=0.05, gen_jitter_s=0, seed=3, video_bytes=200_000))
    with serving(app) as base:
        yield base, adapter(base)


def set_sim(base: str, **options: Any) -> None:
    httpx.post(f"{base}/_sim/options", json=options, timeout=5).raise_for_status()


def sim_stats(base: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{base}/_sim/stats", timeout=5).json()
    return answer


def finished(base: str, provider: ZhipuProvider, job_id: str) -> ProviderTask:
    task = provider.submit(job_id, SPEC, KEY)
    time.sleep(0.1)
    return task


# -- submits ---------------------------------------------------------------------------------


def submit(base: str, **body: Any) -> httpx.Response:
    payload = {"model": "cogvideox-flash", "prompt": "a lighthouse at dusk", **body}
    headers = {"Authorization": f"Bearer {KEY.secret}"}
    return httpx.post(f"{base}{ZHIPU}/videos/generations", json=payload, headers=headers)


def test_a_submit_500_creates_nothing_and_is_counted(real_sim: tuple[str, ZhipuProvider]) -> None:
    base, _ = real_sim
    set_sim(base, submit_error_rate=1.0)
    assert submit(base).status_code == 500
    counters = sim_stats(base)
    assert counters["submissions"] == 0
    assert counters["faults"] == {"submit_500": 1}


def test_a_submit_429_carries_retry_after_and_creates_nothing(
    real_sim: tuple[str, ZhipuProvider],
) -> None:
    base, _ = real_sim
    set_sim(base, submit_429_rate=1.0, retry_after_s=3)
    answer = submit(base, request_id="req-429-1")
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "3"
    assert answer.json()["error"]["code"] == "1305"
    counters = sim_stats(base)
    assert counters["submissions"] == 0 and counters["faults"] == {"submit_429": 1}


def test_an_accepted_submit_whose_answer_stalls_is_an_unknown_outcome_never_paid_twice(
    real_sim: tuple[str, ZhipuProvider],
) -> None:
    # Given a provider that accepts every submit, then answers only after 2 s
    base, provider = real_sim
    set_sim(base, submit_stall_rate=1.0, stall_s=2.0)
    # When vidqueue (timeout 0.5 s) submits, the outcome is unknown, yet the task exists
    with pytest.raises(SubmitOutcomeUnknown):
        provider.submit("job-stalled-1", SPEC, KEY)
    counters = sim_stats(base)
    assert counters["submissions"] == 1 and counters["request_ids"] == {"job-stalled-1": 1}
    assert counters["faults"] == {"submit_stall": 1}
    # And re-sending with the same request id is refused (1231), never a second paid task
    set_sim(base, submit_stall_rate=0.0)
    with pytest.raises(DuplicateSubmission):
        provider.submit("job-stalled-1", SPEC, KEY)
    assert sim_stats(base)["request_ids"] == {"job-stalled-1": 1}


def test_an_accepted_submit_whose_connection_drops_is_an_unknown_outcome(
    real_sim: tuple[str, ZhipuProvider],
) -> None:
    base, provider = real_sim
    set_sim(base, submit_drop_rate=1.0)
    with pytest.raises(SubmitOutcomeUnknown):
        provider.submit("job-dropped-1", SPEC, KEY)
    counters = sim_stats(base)
    assert counters["submissions"] == 1 and counters["faults"] == {"submit_drop": 1}


# -- polls -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "code", "retry_after"),
    [("poll_error_rate", PROVIDER_UNAVAILABLE, None), ("poll_429_rate", RATE_LIMITED, 2.0)],
)
def test_a_poll_500_or_429_is_retryable(
    real_sim: tuple[str, ZhipuProvider], option: str, code: str, retry_after: float | None
) -> None:
    base, provider = real_sim
    task = finished(base, provider, f"job-{option}")
    set_sim(base, **{option: 1.0, "retry_after_s": 2})
    with pytest.raises(RetryableError) as raised:
        provider.poll(task, KEY)
    assert (raised.value.code, raised.value.retry_after_s) == (code, retry_after)
    assert sum(sim_stats(base)["faults"].values()) == 1


def test_a_poll_answering_malformed_json_is_a_retryable_protocol_error(
    real_sim: tuple[str, ZhipuProvider],
) -> None:
    base, provider = real_sim
    task = finished(base, provider, "job-malformed")
    set_sim(base, poll_malformed_rate=1.0)
    with pytest.raises(RetryableError) as raised:
        provider.poll(task, KEY)
    assert raised.value.code == PROVIDER_PROTOCOL
    assert sim_stats(base)["faults"] == {"poll_malformed": 1}


def test_an_unknown_status_is_taken_as_running_never_as_an_outcome(
    real_sim: tuple[str, ZhipuProvider],
) -> None:
    base, provider = real_sim
    task = finished(base, provider, "job-unknown-status")
    set_sim(base, poll_unknown_status_rate=1.0)
    result = provider.poll(task, KEY)
    assert (result.status, result.raw_status) == (ProviderStatus.RUNNING, UNKNOWN_STATUS)
    set_sim(base, poll_unknown_status_rate=0.0)
    assert provider.poll(task, KEY).status == ProviderStatus.SUCCEEDED


# -- downloads -------------------------------------------------------------------------------


def video_url(base: str, provider: ZhipuProvider, job_id: str) -> tuple[str, str]:
    task = finished(base, provider, job_id)
    result = provider.poll(task, KEY)
    assert result.video_url is not None
    return task.id, result.video_url


def test_a_truncated_download_promises_more_bytes_than_it_sends(
    real_sim: tuple[str, ZhipuProvider],
) -> None:
    base, provider = real_sim
    _, url = video_url(base, provider, "job-truncated")
    set_sim(base, download_truncate_rate=1.0)
    received: list[bytes] = []
    with httpx.stream("GET", url) as response:
        assert response.headers["content-length"] == "200000"
        with pytest.raises(httpx.RemoteProtocolError):
            received.extend(response.iter_bytes())
    assert sum(map(len, received)) < 200_000
    assert sim_stats(base)["faults"] == {"download_truncated": 1}


def test_a_slow_download_is_whole_but_slow(real_sim: tuple[str, ZhipuProvider]) -> None:
    base, provider = real_sim
    task_id, url = video_url(base, provider, "job-slow")
    set_sim(base, slow_download_rate=1.0, slow_download_bytes_per_s=400_000)
    started = time.monotonic()
    body = httpx.get(url, timeout=10).content
    assert time.monotonic() - started >= 0.4
    expected = httpx.get(f"{base}/_sim/tasks/{task_id}/sha256").json()["video"]
    assert hashlib.sha256(body).hexdigest() == expected
    assert sim_stats(base)["faults"] == {"download_slow": 1}


def test_a_download_500_is_counted(real_sim: tuple[str, ZhipuProvider]) -> None:
    base, provider = real_sim
    _, url = video_url(base, provider, "job-download-500")
    set_sim(base, download_error_rate=1.0)
    assert httpx.get(url).status_code == 500
    assert sim_stats(base)["faults"] == {"download_500": 1}


def test_faults_off_clears_every_rate_but_keeps_the_counts(
    real_sim: tuple[str, ZhipuProvider],
) -> None:
    base, _ = real_sim
    set_sim(base, submit_error_rate=1.0, poll_429_rate=0.5, fail_rate=0.25)
    submit(base)
    options = httpx.post(f"{base}/_sim/faults/off").json()
    assert options["submit_error_rate"] == 0 and options["poll_429_rate"] == 0
    assert options["fail_rate"] == 0.25  # an honest FAIL is not an injected fault
    assert submit(base).status_code == 200
    assert sim_stats(base)["faults"] == {"submit_500": 1}


def test_every_fault_has_a_cli_flag() -> None:
    _, _, options = cli.parse_args(
        ["--submit-stall-rate", "0.1", "--slow-download-bytes-per-s", "9"]
    )
    assert options.submit_stall_rate == 0.1 and options.slow_download_bytes_per_s == 9


# -- the S3 fault proxy ----------------------------------------------------------------------


@pytest.fixture
def proxy(live: LiveStack, tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    """A fault proxy in front of the live stack's S3 (started the way the chaos run starts it)."""
    [port] = free_ports(1)
    with Stack(live.settings, run_dir=tmp_path / "run") as stack:
        status = stack.start_s3_proxy(port)
        yield stack, status.address


def set_proxy(address: str, **options: Any) -> dict[str, Any]:
    answer = httpx.post(f"{address}/_proxy/options", json=options, timeout=5)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def proxy_stats(address: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{address}/_proxy/stats", timeout=5).json()
    return answer


def s3(endpoint: str, attempts: int = 1) -> Any:
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": attempts, "mode": "standard"},
        read_timeout=5,
    )
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def test_the_proxy_passes_signed_s3_requests_through_unchanged(
    live: LiveStack, proxy: tuple[Stack, str]
) -> None:
    # Given the proxy without faults, and a boto3 client pointed at it
    stack, address = proxy
    client, bucket = s3(address), live.settings.s3_bucket
    # When objects are written (a single PUT and a 2-part multipart upload) and read back
    client.put_object(Bucket=bucket, Key="proxy/small", Body=b"hello")
    assert client.get_object(Bucket=bucket, Key="proxy/small")["Body"].read() == b"hello"
    assert client.head_object(Bucket=bucket, Key="proxy/small")["ContentLength"] == 5
    storage = Storage(live.settings.model_copy(update={"s3_endpoint_url": address}))
    big = bytes(range(256)) * (9 * 4096)
    stored = storage.upload_stream("proxy/big", iter([big]), "video/mp4")
    # Then S3 holds exactly those bytes, and the proxy counted every request
    assert stored.sha256 == hashlib.sha256(big).hexdigest()
    direct = s3(live.settings.s3_endpoint_url).get_object(Bucket=bucket, Key="proxy/big")
    assert hashlib.sha256(direct["Body"].read()).hexdigest() == stored.sha256
    assert proxy_stats(address)["requests"] >= 6
    # And services started after the proxy reach S3 through it, presigned URLs bypass it
    assert stack.env["VIDQUEUE_S3_ENDPOINT_URL"] == address
    assert stack.env["VIDQUEUE_S3_PUBLIC_ENDPOINT_URL"] == live.settings.s3_endpoint_url


def test_an_injected_500_is_s3s_internal_error(live: LiveStack, proxy: tuple[Stack, str]) -> None:
    _, address = proxy
    set_proxy(address, error_rate=1.0)
    with pytest.raises(ClientError) as raised:
        s3(address).head_bucket(Bucket=live.settings.s3_bucket)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    answer = httpx.get(f"{address}/{live.settings.s3_bucket}")
    assert (answer.status_code, b"<Code>InternalError</Code>" in answer.content) == (500, True)
    counted = proxy_stats(address)
    assert counted["faults"]["error_500"] == counted["requests"] >= 2


def test_an_injected_reset_breaks_the_connection(live: LiveStack, proxy: tuple[Stack, str]) -> None:
    _, address = proxy
    set_proxy(address, reset_rate=1.0, seed=1)
    for _ in range(4):  # before and after the request reached S3
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{address}/{live.settings.s3_bucket}", timeout=5)
    assert proxy_stats(address)["faults"]["reset"] == 4


def test_an_injected_stall_delays_the_request(live: LiveStack, proxy: tuple[Stack, str]) -> None:
    _, address = proxy
    set_proxy(address, stall_rate=1.0, stall_s=0.6)
    started = time.monotonic()
    s3(address).head_bucket(Bucket=live.settings.s3_bucket)
    assert time.monotonic() - started >= 0.6
    assert proxy_stats(address)["faults"] == {"reset": 0, "error_500": 0, "stall": 1}


def test_the_proxy_options_are_validated_and_its_counters_reset(
    proxy: tuple[Stack, str],
) -> None:
    _, address = proxy
    assert httpx.post(f"{address}/_proxy/options", json={"error_rate": 2}).status_code == 422
    assert httpx.post(f"{address}/_proxy/options", json={"no_such": 1}).status_code == 422
    set_proxy(address, error_rate=1.0)
    httpx.get(f"{address}/anything")
    assert proxy_stats(address)["faults"]["error_500"] == 1
    httpx.post(f"{address}/_proxy/reset")
    assert proxy_stats(address)["requests"] == 0
    assert proxy_stats(address)["options"]["error_rate"] == 1.0
