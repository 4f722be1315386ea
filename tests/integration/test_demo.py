"""`vidqueue demo` (what `make demo` runs) against the test stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.live import LiveStack


def test_the_demo_runs_twelve_jobs_to_success_and_checks_them_in_s3(
    idle_stack: LiveStack,
) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "vidqueue"), "demo", "--timeout", "120"],
        env=dict(idle_stack.stack.env),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 of 12 jobs succeeded" in done.stdout
    assert "12 videos downloaded back" in done.stdout
    assert done.stdout.count("succeeded ") >= 12
    assert "Flower: http://127.0.0.1:" in done.stdout
