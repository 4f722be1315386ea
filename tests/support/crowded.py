"""A stack of its own holding many queued jobs, for measuring the dashboard at scale.

Redis, S3 and the API only, on free ports in a temporary directory: no simulator and no
worker, so every job stays where enqueueing put it, and the shared ``live`` stack is not slowed
by thousands of extra jobs. The jobs go in through ``POST /v1/jobs/batch`` (1,000 per call),
as a producer would send them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack.stack import Stack
from producer.batch import MAX_BATCH
from tests.support.live import API_TOKEN, KEYS, stack_settings, use_local_s3_credentials

# A mix of providers and models, so the grid's cards are not all alike.
MODELS = (
    ("zhipu", "cogvideox-flash"),
    ("zhipu", "cogvideox-3"),
    ("openai", "sora-2"),
    ("ark", "doubao-seedance-1-0-pro-250528"),
    ("kling", "kling-v2-6"),
    ("gateway", "kling-v1"),
)


@dataclass(frozen=True)
class Crowded:
    """The running stack: where its API is, the token owning the jobs, and their ids."""

    api_url: str
    token: str
    job_ids: list[str]
    fill_s: float


def specs(count: int, start: int) -> list[dict[str, Any]]:
    """``count`` small text-to-video specs, numbered from ``start``."""
    chosen = itertools.islice(itertools.cycle(MODELS), start, start + count)
    return [
        {
            "provider": provider,
            "model": model,
            "prompt": f"scale test {start + i}: a lighthouse at dusk, waves, slow pan",
            "labels": {"suite": "ui-scale", "batch": str((start + i) // MAX_BATCH)},
        }
        for i, (provider, model) in enumerate(chosen)
    ]


def fill(api_url: str, token: str, total: int) -> list[str]:
    """Enqueue ``total`` jobs through the batch route; returns their ids in order."""
    ids: list[str] = []
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=120) as http:
        for start in range(0, total, MAX_BATCH):
            body = {"jobs": specs(min(MAX_BATCH, total - start), start)}
            answer = http.post("/v1/jobs/batch", json=body)
            assert answer.status_code == 202, answer.text[:500]
            ids.extend(job["id"] for job in answer.json()["jobs"])
    return ids


@contextmanager
def crowded_stack(tmp: Path, jobs: int) -> Iterator[Crowded]:
    """Start Redis, S3 and the API under ``tmp``, enqueue ``jobs`` jobs, yield; stop it all."""
    use_local_s3_credentials()
    settings = stack_settings(tmp)
    with Stack(settings, dict(KEYS), tmp / "run") as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_api()
        api_url = f"http://127.0.0.1:{settings.api_port}"
        started = time.monotonic()
        ids = fill(api_url, API_TOKEN, jobs)
        yield Crowded(api_url, API_TOKEN, ids, time.monotonic() - started)
