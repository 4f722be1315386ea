"""What operators watch: `GET /metrics` and `vidqueue top`, on the live stack after real jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import LiveStack


def _run_jobs(live: LiveStack, n: int) -> None:
    spec = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "x"}
    live.wait_all([live.client.enqueue(spec).id for _ in range(n)])


def test_metrics_expose_jobs_slots_rates_and_histograms(idle_stack: LiveStack) -> None:
    live = idle_stack
    _run_jobs(live, 3)
    text = httpx.get(f"{live.api_url}/metrics", timeout=10).text
    assert 'vidqueue_jobs{state="succeeded"}' in text
    assert 'vidqueue_waiting{provider="zhipu"} 0' in text
    assert 'vidqueue_key_cap{provider="zhipu",key="SIM_ZHIPU_KEY"} 3' in text
    assert 'vidqueue_key_in_flight{provider="zhipu",key="SIM_ZHIPU_KEY"}' in text
    submits = [
        line
        for line in text.splitlines()
        if line.startswith(
            'vidqueue_requests_per_minute{provider="zhipu",key="SIM_ZHIPU_KEY",kind="submit"}'
        )
    ]
    assert float(submits[0].split()[-1]) >= 3
    for metric in ("time_to_submit", "generation", "mirror"):
        count = next(
            line
            for line in text.splitlines()
            if line.startswith(f"vidqueue_{metric}_seconds_count")
        )
        assert int(count.split()[-1]) >= 3
    assert "sim-key-zhipu-test" not in text


def test_top_prints_each_provider_and_key(live: LiveStack) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "vidqueue"), "top", "--once"],
        env=dict(live.stack.env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for name in ("zhipu", "SIM_ZHIPU_KEY", "kling", "in flight", "submits/m"):
        assert name in done.stdout
