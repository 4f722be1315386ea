"""``/docs`` and ``/redoc`` render in a real browser from the package's own assets: headless
Chromium (Debian's ``chromium``; the test is skipped without it) loads each page from the live
API, and the rendered DOM holds the operations. The screenshot of ``/docs`` is kept under the
test's tmp dir (its path is printed: ``pytest -s``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.live import LiveStack

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH")
OPERATIONS = ("/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/uploads", "/v1/videos/{video_id}")


def _chromium(url: str, profile: Path, *args: str) -> str:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # root in CI containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=20000",
        "--window-size=1280,2400",
        *args,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_swagger_ui_renders_the_operations(live: LiveStack, tmp_path: Path) -> None:
    url = f"{live.api_url}/docs"
    dom = _chromium(url, tmp_path / "profile", "--dump-dom")
    assert 'class="swagger-ui' in dom, dom[:2000]
    for path in OPERATIONS:
        assert f'data-path="{path}"' in dom, path
    assert "Authorize" in dom  # the bearer scheme
    shot = tmp_path / "docs.png"
    _chromium(url, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000
    print(f"screenshot of /docs: {shot}")


def test_redoc_renders_the_operations(live: LiveStack, tmp_path: Path) -> None:
    dom = _chromium(f"{live.api_url}/redoc", tmp_path / "profile", "--dump-dom")
    for path in OPERATIONS:
        assert path in dom, path
    assert "Redis or S3 is unavailable" in dom  # the documented error responses
