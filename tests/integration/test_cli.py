"""The `vidqueue` command line against the live stack, as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.live import LiveStack

VIDQUEUE = str(Path(sys.executable).parent / "vidqueue")


def _run(live: LiveStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VIDQUEUE, *args], env=dict(live.stack.env), capture_output=True, text=True, timeout=120
    )


def test_submit_with_wait_prints_progress_and_the_finished_record(live: LiveStack) -> None:
    done = _run(
        live,
        "submit",
        "--provider",
        "zhipu",
        "--model",
        "cogvideox-3",
        "--prompt",
        "a fox",
        "--size",
        "1280x720",
        "--fps",
        "60",
        "--label",
        "team=growth",
        "--wait",
    )
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout and "s3://vidqueue-test/videos/" in done.stdout
    assert "[" in done.stderr and "#" in done.stderr  # the progress bar
    job_id = done.stdout.split()[0]
    status = _run(live, "status", job_id, "--json")
    record = json.loads(status.stdout)
    assert record["state"] == "succeeded" and record["spec"]["labels"] == {"team": "growth"}


def test_submit_rejects_a_bad_spec_naming_the_field(live: LiveStack) -> None:
    done = _run(
        live,
        "submit",
        "--provider",
        "zhipu",
        "--model",
        "cogvideox-flash",
        "--prompt",
        "x",
        "--quality",
        "quality",
    )
    assert done.returncode == 2
    assert "quality" in done.stderr and "cogvideox-flash" in done.stderr


def test_status_of_an_unknown_job_exits_2(live: LiveStack) -> None:
    done = _run(live, "status", "no-such-job")
    assert done.returncode == 2 and "no job" in done.stderr
