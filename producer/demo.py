"""``vidqueue demo``: 12 jobs (text- and image-to-video) through the HTTP API of the local stack.

It shows progress while the jobs run, then a table of results, checks every video is in S3,
and says where Flower is. Exit status 0 only when all jobs succeeded.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx

from config import local_env
from config.settings import Settings, get_settings

TERMINAL = {"succeeded", "failed", "cancelled"}
DESCRIPTION = (
    "Run 12 jobs (text- and image-to-video) through the local stack's HTTP API, show their"
    " progress and results, and check every video in S3. Exit status 0 only when all jobs"
    " succeeded."
)
LOCAL_FLOWER_AUTH = Settings.model_fields["flower_basic_auth"].default


def demo_specs(sim_url: str, png: bytes) -> list[dict[str, Any]]:
    """Four kinds of job, three of each: flash text, cogvideox-3 text, image URL, image data URI."""
    data_uri = "data:image/png;base64," + base64.b64encode(png).decode()
    kinds: list[dict[str, Any]] = [
        {"model": "cogvideox-flash", "prompt": "A paper boat drifting down a rainy street"},
        {
            "model": "cogvideox-3",
            "prompt": "Sunrise over terraced rice fields, drone shot",
            "size": "1920x1080",
            "fps": 30,
            "quality": "quality",
            "with_audio": True,
        },
        {
            "model": "cogvideox-2",
            "prompt": "Make the picture come alive",
            "image": f"{sim_url}/_sim/image.png",
        },
        {
            "model": "cogvideox-3",
            "prompt": "The scene slowly zooms in",
            "image": data_uri,
            "duration": 5,
        },
    ]
    specs = []
    for i in range(12):
        spec = {"provider": "zhipu", **kinds[i % len(kinds)], "labels": {"demo": str(i + 1)}}
        spec["priority"] = 5 if i < 4 else 0
        specs.append(spec)
    return specs


def _headers(settings: Settings) -> dict[str, str]:
    """The first of the API tokens set, else the token ``vidqueue dev up`` gave the local
    stack (its settings file, ``config.local_env``)."""
    tokens = sorted(settings.api_token_set)
    token = tokens[0] if tokens else local_env.read(settings.run_dir).get("VIDQUEUE_API_TOKEN")
    return {"authorization": f"Bearer {token}"} if token else {}


def run(settings: Settings, timeout_s: float, report: dict[str, Any] | None = None) -> int:
    """Run the demo, printing as it goes; ``report`` (``--json``) receives the results."""
    api = f"http://{settings.api_host}:{settings.api_port}"
    sim = f"http://127.0.0.1:{settings.sim_port}"
    with httpx.Client(base_url=api, headers=_headers(settings), timeout=30) as http:
        png = httpx.get(f"{sim}/_sim/image.png", timeout=10).content
        started = time.monotonic()
        jobs = []
        for spec in demo_specs(sim, png):
            answer = http.post("/v1/jobs", json=spec)
            if answer.status_code != 202:
                print(f"enqueue refused: {answer.status_code} {answer.text}", file=sys.stderr)
                return 1
            jobs.append(answer.json())
        print(
            f"enqueued {len(jobs)} jobs through {api}/v1/jobs in {time.monotonic() - started:.2f}s"
        )
        records = _watch(http, [j["id"] for j in jobs], started, timeout_s)
    elapsed = time.monotonic() - started
    _table(records)
    ok = _check_s3(records)
    done = sum(r["state"] == "succeeded" for r in records)
    if report is not None:
        report.update(api=api, elapsed_s=round(elapsed, 2), total=len(records), succeeded=done,
                      verified_in_s3=ok, jobs=records)  # fmt: skip
    print(
        f"\n{done} of {len(records)} jobs succeeded in {elapsed:.1f}s "
        f"({len(records) / elapsed:.2f} jobs/s); {ok} videos downloaded back from "
        f"s3://{settings.s3_bucket}/{settings.s3_prefix} and checked by sha256"
    )
    user, _, password = settings.flower_basic_auth.partition(":")
    shown = (
        password
        if settings.flower_basic_auth == LOCAL_FLOWER_AUTH
        else "(VIDQUEUE_FLOWER_BASIC_AUTH)"
    )
    print(f"Flower: http://127.0.0.1:{settings.flower_port}/  user {user}, password {shown}")
    token = _headers(settings).get("authorization", "").removeprefix("Bearer ")
    login = f"log in with the token {token}" if token else "no API tokens: leave the token empty"
    print(f"Dashboard: {api}/ui  ({login})")
    return 0 if done == len(records) == ok else 1


def _watch(
    http: httpx.Client, ids: list[str], started: float, timeout_s: float
) -> list[dict[str, Any]]:
    last = ""
    while True:
        records = [http.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
        counts = Counter(r["state"] for r in records)
        line = "  ".join(f"{state} {n}" for state, n in sorted(counts.items()))
        if line != last:
            print(f"  {time.monotonic() - started:6.1f}s  {line}", flush=True)
            last = line
        if all(r["state"] in TERMINAL for r in records):
            return records
        if time.monotonic() - started > timeout_s:
            print("timed out waiting for the jobs", file=sys.stderr)
            return records
        time.sleep(0.5)


def _seconds(record: dict[str, Any]) -> str:
    from workers.domain.jobs import parse_iso

    if not record.get("completed_at"):
        return "-"
    taken = parse_iso(record["completed_at"]) - parse_iso(record["created_at"])
    return f"{taken.total_seconds():.1f}"


def _table(records: list[dict[str, Any]]) -> None:
    print(f"\n{'#':>2}  {'model':<16} {'state':<10} {'secs':>5}  {'S3 key':<50} presigned URL")
    for i, r in enumerate(records, 1):
        video = (r.get("result") or {}).get("video") or {}
        error = r.get("error") or {}
        where = video.get("key") or f"({error.get('code', '')})"
        print(
            f"{i:>2}  {r['model']:<16} {r['state']:<10} {_seconds(r):>5}  {where:<50} "
            f"{video.get('url', '')}"
        )


def _check_s3(records: list[dict[str, Any]]) -> int:
    """Download each video through its presigned URL; count those whose sha256 matches."""
    verified = 0
    for r in records:
        video = (r.get("result") or {}).get("video")
        if not video:
            continue
        digest, size = hashlib.sha256(), 0
        with httpx.stream("GET", video["url"], timeout=60) as answer:
            for chunk in answer.iter_bytes():
                digest.update(chunk)
                size += len(chunk)
        if answer.status_code == 200 and (digest.hexdigest(), size) == (
            video["sha256"],
            video["size"],
        ):
            verified += 1
    return verified


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidqueue demo", description=DESCRIPTION)
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the jobs (300)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results as one JSON object on stdout (the progress goes to stderr)",
    )
    args = parser.parse_args(argv)
    if not args.json:
        return run(get_settings(), args.timeout)
    report: dict[str, Any] = {}
    with contextlib.redirect_stdout(sys.stderr):
        code = run(get_settings(), args.timeout, report)
    print(json.dumps({"ok": code == 0, **report}))
    return code
