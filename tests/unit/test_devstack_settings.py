"""What ``vidqueue dev up`` runs a local stack with, and what it publishes: its generated API
token and webhook secret (``devstack.credentials``), the providers file for a simulator on
another port (``devstack.catalogue``), and the settings file's entries (``devstack.published``).
No service is started here."""

from __future__ import annotations

import base64
import stat
import tomllib
from pathlib import Path

from config.providers import parse
from config.settings import Settings
from devstack import catalogue, credentials, published
from devstack.env import project_root, stack_env


def test_first_up_generates_a_token_and_a_standard_webhooks_secret(tmp_path: Path) -> None:
    settings = credentials.ensure(Settings(), tmp_path)
    (token,) = settings.api_token_set
    assert len(token) >= 32
    secret = settings.webhook_secret
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24
    stored = tmp_path / credentials.FILE_NAME
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert credentials.stored(tmp_path) == {
        "VIDQUEUE_API_TOKEN": token,
        "VIDQUEUE_WEBHOOK_SECRET": secret,
    }


def test_later_ups_reuse_them_and_other_run_dirs_get_their_own(tmp_path: Path) -> None:
    first = credentials.ensure(Settings(), tmp_path / "a")
    again = credentials.ensure(Settings(), tmp_path / "a")
    other = credentials.ensure(Settings(), tmp_path / "b")
    assert (again.api_tokens, again.webhook_secret) == (first.api_tokens, first.webhook_secret)
    assert other.api_tokens != first.api_tokens
    assert other.webhook_secret != first.webhook_secret


def test_values_from_the_environment_win_and_are_never_stored(tmp_path: Path) -> None:
    mine = Settings(api_tokens="mine-1,mine-2", webhook_secret="whsec_bWluZQ==")
    assert credentials.ensure(mine, tmp_path) == mine
    assert not (tmp_path / credentials.FILE_NAME).exists()
    # With only a webhook secret set, the token is generated and the secret left out of the file
    half = credentials.ensure(Settings(webhook_secret="whsec_bWluZQ=="), tmp_path)
    assert half.webhook_secret == "whsec_bWluZQ=="
    assert set(credentials.stored(tmp_path)) == {"VIDQUEUE_API_TOKEN"}


def test_existing_generates_nothing(tmp_path: Path) -> None:
    assert credentials.existing(Settings(), tmp_path) == Settings()
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    made = credentials.ensure(Settings(), tmp_path)
    assert credentials.existing(Settings(), tmp_path) == made


def test_a_stack_on_another_sim_port_gets_a_providers_file_for_it(tmp_path: Path) -> None:
    settings = catalogue.for_sim_port(Settings(sim_port=18123), tmp_path, project_root())
    written = Path(settings.providers_file)
    assert written == tmp_path.resolve() / "providers.toml"
    document = tomllib.loads(written.read_text())
    urls = [table["base_url"] for table in document["providers"].values()]
    assert urls and all(url.startswith("http://127.0.0.1:18123/") for url in urls)
    shipped = tomllib.loads(catalogue.shipped().read_text())
    assert {n: t["models"] for n, t in document["providers"].items()} == {
        n: t["models"] for n, t in shipped["providers"].items()
    }


def test_planning_the_providers_file_writes_nothing(tmp_path: Path) -> None:
    planned = catalogue.for_sim_port(Settings(sim_port=18123), tmp_path, write=False)
    assert planned.providers_file == str(tmp_path.resolve() / "providers.toml")
    assert not (tmp_path / "providers.toml").exists()


def test_the_default_port_and_a_users_own_file_are_left_alone(tmp_path: Path) -> None:
    assert catalogue.for_sim_port(Settings(), tmp_path, project_root()) == Settings()
    own = tmp_path / "mine.toml"
    own.write_text(catalogue.shipped().read_text())
    settings = Settings(sim_port=18123, providers_file=str(own))
    assert catalogue.for_sim_port(settings, tmp_path, project_root()) == settings
    assert not (tmp_path / "providers.toml").exists()


def test_every_shipped_provider_lists_the_models_it_serves_once() -> None:
    for name in ("providers.toml", "providers.production.toml", "providers.production.all.toml"):
        document = tomllib.loads((project_root() / "config" / name).read_text())
        providers = parse(document, name).providers
        models = [m for p in providers.values() for m in p.models]
        assert all(p.models for p in providers.values()), name
        assert len(models) == len(set(models)), name
    local = parse(tomllib.loads(catalogue.shipped().read_text())).providers
    assert "cogvideox-3" in local["zhipu"].models  # the README's OpenAI SDK example


def test_the_published_settings_name_the_stack(tmp_path: Path) -> None:
    settings = credentials.ensure(
        Settings(api_port=18001, flower_port=18002, sim_port=18003, s3_bucket="b"), tmp_path
    )
    env = stack_env(settings, tmp_path, base={"AWS_ACCESS_KEY_ID": "ak"})
    values = published.values(settings, env, tmp_path, project_root())
    (token,) = settings.api_token_set
    assert values["VIDQUEUE_API_URL"] == "http://127.0.0.1:18001"
    assert values["VIDQUEUE_API_TOKEN"] == token
    assert values["VIDQUEUE_WEBHOOK_SECRET"] == settings.webhook_secret
    assert values["VIDQUEUE_FLOWER_URL"] == "http://127.0.0.1:18002/"
    assert values["VIDQUEUE_S3_BUCKET"] == "b"
    assert values["AWS_ACCESS_KEY_ID"] == "ak"
    assert values["AWS_SECRET_ACCESS_KEY"] == "vidqueue-local-secret"
    assert values["VIDQUEUE_RUN_DIR"] == str(tmp_path.resolve())
    assert Path(values["VIDQUEUE_PROVIDERS_FILE"]).is_absolute()
    for key in ("VIDQUEUE_REDIS_URL", "VIDQUEUE_S3_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        assert values[key]
    # Settings read back from the published values point at the same stack
    fields = {k.removeprefix("VIDQUEUE_").lower(): v for k, v in values.items()}
    again = Settings.model_validate({k: v for k, v in fields.items() if k in Settings.model_fields})
    assert (again.api_port, again.sim_port, again.flower_port) == (18001, 18003, 18002)


def test_without_credentials_the_token_lines_are_left_out(tmp_path: Path) -> None:
    values = published.values(Settings(), stack_env(Settings(), tmp_path), tmp_path, tmp_path)
    assert "VIDQUEUE_API_TOKEN" not in values and "VIDQUEUE_WEBHOOK_SECRET" not in values
