"""``GET /metrics`` on the live stack after real jobs, read with prometheus_client's parser (the
page is the library's exposition: labels sorted by name, values written as floats): jobs,
slots, provider requests as counters, histograms (the unlabelled totals and the same per
provider and model), what was mirrored; and ``promtool check metrics`` accepts it when promtool
is installed."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.live import LiveStack
from workers.redis.stats import BUCKETS

ZHIPU = {"provider": "zhipu", "key": "SIM_ZHIPU_KEY"}


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    found = [v for n, got, v in samples(text) if n == name and labels.items() <= got.items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def page(live: LiveStack, n: int) -> httpx.Response:
    """/metrics once the workers' last figures are written (they flush about every second)."""
    deadline = time.monotonic() + 10
    while True:
        answer = httpx.get(f"{live.api_url}/metrics", timeout=10)
        counts = [
            value(answer.text, f"vidqueue_{m}_seconds_count") for m in ("generation", "mirror")
        ]
        if min(counts) >= n or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_the_live_page_parses_with_counters_and_histograms(idle_stack: LiveStack) -> None:
    live = idle_stack
    before = httpx.get(f"{live.api_url}/metrics", timeout=10).text
    submits_before = value(before, "vidqueue_requests_total", kind="submit", **ZHIPU)
    spec = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "x"}
    live.wait_all([live.client.enqueue(spec).id for _ in range(3)])
    answer = page(live, 3)
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types["vidqueue_requests"] == types["vidqueue_mirrored_bytes"] == "counter"
    assert types["vidqueue_generation_seconds"] == "histogram"
    assert value(text, "vidqueue_jobs", state="succeeded") >= 3
    assert value(text, "vidqueue_waiting", provider="zhipu") == 0
    assert value(text, "vidqueue_key_cap", **ZHIPU) == 3
    assert value(text, "vidqueue_key_in_flight", **ZHIPU) >= 0
    submits = value(text, "vidqueue_requests_total", kind="submit", **ZHIPU)
    assert submits - submits_before >= 3
    assert value(text, "vidqueue_requests_per_minute", kind="submit", **ZHIPU) >= 3
    assert value(text, "vidqueue_requests_total", kind="poll", **ZHIPU) >= 3
    assert value(text, "vidqueue_mirrored_objects_total", provider="zhipu") >= 3
    for metric in ("time_to_submit", "generation", "mirror"):
        name = f"vidqueue_{metric}_seconds"
        count = value(text, f"{name}_count")
        assert count >= 3
        assert value(text, f"{name}_bucket", le="+Inf") == count
        buckets = [value(text, f"{name}_bucket", le=str(b)) for b in BUCKETS]
        assert buckets == sorted(buckets)  # cumulative
        assert buckets[-1] <= count
        # The same observations per provider and model, in a family of its own
        labelled = f"vidqueue_{metric}_by_model_seconds"
        model = {"provider": "zhipu", "model": "cogvideox-flash"}
        assert types[labelled] == "histogram"
        assert 3 <= value(text, f"{labelled}_count", **model) <= count
        assert value(text, f"{labelled}_bucket", le="+Inf", **model) == value(
            text, f"{labelled}_count", **model
        )
    assert value(text, "vidqueue_requests_total", kind="error", **ZHIPU) >= 0
    assert "sim-key-zhipu-test" not in text
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed: the parser's check only")
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
