"""``GET /metrics`` rendered by prometheus_client from figures in Redis: the page parses with
the client's own parser (and ``promtool check metrics`` when it is installed), counters end in
``_total``, histograms are cumulative with their ``le`` bounds spelled as before (the total
under its old name, unlabelled; the same per provider and model under ``*_by_model_seconds``),
and two API processes (two ``Deps`` on one Redis) serve the same figures. Real Redis (the unit
tier's)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from producer.metrics import RedisCollector, render_for
from tests.support.fakes import FakeZhipu, catalogue, fake_deps, job
from workers.deps import Deps
from workers.observe import render
from workers.redis.stats import BUCKETS, Stats


@pytest.fixture
def d(redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deps]:
    monkeypatch.setenv("KEY_A", "secret-a")
    deps = fake_deps(redis_db, catalogue(max_in_flight=3), FakeZhipu())
    deps.stats = Stats(redis_db, flush_interval_s=60)
    yield deps
    deps.stats.flush()


def figures(d: Deps) -> None:
    """What workers would have written: jobs, requests, histograms, mirrored bytes."""
    job(d.store, "j1", producer="A")
    job(d.store, "j2", producer="A")
    d.stats.count("sim", "KEY_A", "submit", 2)
    d.stats.count("sim", "KEY_A", "poll", 5)
    d.stats.count("sim", "KEY_A", "error")
    for seconds in (0.01, 0.7, 3, 45, 5000):
        model = "cogvideox-flash" if seconds < 10 else "cogvideox-3"
        d.stats.observe("generation", seconds, provider="sim", model=model)
    d.stats.count_mirrored("sim", 12_345, 2)
    d.stats.flush()


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_the_page_parses_and_counters_end_in_total(d: Deps) -> None:
    figures(d)
    text = render_for(d)
    parsed = list(text_string_to_metric_families(text))
    types = {f.name: f.type for f in parsed}
    assert types["vidqueue_jobs"] == "gauge"
    assert types["vidqueue_requests"] == "counter"
    assert types["vidqueue_generation_seconds"] == "histogram"
    assert types["vidqueue_generation_by_model_seconds"] == "histogram"
    for family in parsed:
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
    # Every name the page served before the move stays
    for name in (
        "vidqueue_jobs",
        "vidqueue_waiting",
        "vidqueue_key_in_flight",
        "vidqueue_key_cap",
        "vidqueue_key_effective_cap",
        "vidqueue_requests_per_minute",
        "vidqueue_callbacks_total",
        "vidqueue_time_to_submit_seconds_count",
        "vidqueue_generation_seconds_bucket",
        "vidqueue_mirror_seconds_sum",
        "vidqueue_detection_lag_seconds_count",
        "vidqueue_submit_unknown_released_total",
        "vidqueue_redis_rejected_writes_total",
        "vidqueue_jobs_reused_total",
        "vidqueue_mirrored_bytes_total",
        "vidqueue_mirrored_objects_total",
        # and the histograms per provider and model, new beside the totals
        "vidqueue_generation_by_model_seconds_bucket",
        "vidqueue_time_to_submit_by_model_seconds",
        "vidqueue_mirror_by_model_seconds",
        "vidqueue_detection_lag_by_model_seconds",
    ):
        assert f"\n{name}" in text or f"# TYPE {name}" in text, name
    assert sample(text, "vidqueue_jobs", state="queued") == 2
    assert sample(text, "vidqueue_key_cap", provider="sim", key="KEY_A") == 3
    assert sample(text, "vidqueue_requests_total", provider="sim", kind="submit") == 2
    assert sample(text, "vidqueue_requests_total", provider="sim", kind="poll") == 5
    assert sample(text, "vidqueue_requests_total", provider="sim", kind="throttled") == 0
    assert sample(text, "vidqueue_requests_total", provider="sim", kind="error") == 1
    assert sample(text, "vidqueue_requests_per_minute", provider="sim", kind="poll") >= 0
    assert sample(text, "vidqueue_mirrored_bytes_total", provider="sim") == 12_345
    assert sample(text, "vidqueue_mirrored_objects_total", provider="sim") == 2
    assert sample(text, "vidqueue_redis_rejected_writes_total", reason="oom") == 0
    assert "secret-a" not in text


def test_histograms_are_cumulative_with_the_old_bounds(d: Deps) -> None:
    figures(d)
    text = render_for(d)
    name = "vidqueue_generation_seconds"
    bounds = [str(b) for b in BUCKETS]
    assert f'{name}_bucket{{le="1"}}' in text  # spelled as BUCKETS has it, not "1.0"
    counts = [sample(text, f"{name}_bucket", le=b) for b in bounds]
    assert counts == sorted(counts)
    assert counts[bounds.index("0.05")] == 1
    assert counts[bounds.index("5")] == 3
    assert counts[-1] == 4  # 5000 s is above the last bound
    assert sample(text, f"{name}_bucket", le="+Inf") == 5
    assert sample(text, f"{name}_count") == 5
    assert sample(text, f"{name}_sum") == pytest.approx(0.01 + 0.7 + 3 + 45 + 5000)
    # Before any figure: zero buckets, still a valid histogram
    assert sample(text, "vidqueue_mirror_seconds_count") == 0


def test_histograms_by_provider_and_model_add_up_to_the_total(d: Deps) -> None:
    figures(d)
    text = render_for(d)
    name = "vidqueue_generation_by_model_seconds"
    flash = {"provider": "sim", "model": "cogvideox-flash"}
    big = {"provider": "sim", "model": "cogvideox-3"}
    assert sample(text, f"{name}_count", **flash) == 3
    assert sample(text, f"{name}_count", **big) == 2
    assert sample(text, f"{name}_bucket", le="5", **flash) == 3
    assert sample(text, f"{name}_bucket", le="60", **big) == 1
    assert sample(text, f"{name}_bucket", le="+Inf", **big) == 2
    assert sample(text, f"{name}_sum", **big) == pytest.approx(5045)
    for bound in [*map(str, BUCKETS), "+Inf"]:
        split = sum(sample(text, f"{name}_bucket", le=bound, **m) for m in (flash, big))
        assert split == sample(text, "vidqueue_generation_seconds_bucket", le=bound), bound
    # The total keeps its one unlabelled series
    totals = [
        s
        for f in text_string_to_metric_families(text)
        if f.name == "vidqueue_generation_seconds"
        for s in f.samples
    ]
    assert totals and all(set(s.labels) <= {"le"} for s in totals)
    # No observation yet: the family is declared, without series
    assert "# TYPE vidqueue_mirror_by_model_seconds histogram" in text
    assert "vidqueue_mirror_by_model_seconds_count" not in text


def test_two_api_processes_serve_the_same_figures(d: Deps, redis_db: redis.Redis) -> None:
    figures(d)
    other = fake_deps(redis_db, d.catalogue, FakeZhipu())
    other.stats = Stats(redis_db, flush_interval_s=60)
    # A worker's figures land in Redis; either API process reads them at scrape time
    worker = Stats(redis_db, flush_interval_s=60)
    worker.count("sim", "KEY_A", "submit", 7)
    worker.flush()
    first, second = render_for(d), render_for(other)
    assert first == second
    assert sample(first, "vidqueue_requests_total", provider="sim", kind="submit") == 9
    # The collector reads Redis on every collect: nothing is cached between scrapes
    worker.count("sim", "KEY_A", "submit", 1)
    worker.flush()
    collector = RedisCollector(lambda: other)
    assert sample(render(collector), "vidqueue_requests_total", kind="submit") == 10


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_page(d: Deps) -> None:
    figures(d)
    done = subprocess.run(
        ["promtool", "check", "metrics"],
        input=render_for(d),
        capture_output=True,
        text=True,
        timeout=30,
    )
    # promtool exits 0 when the page is valid; lint remarks (none expected) go to stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "", done.stdout
