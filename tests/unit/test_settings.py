"""Settings from the environment and the providers catalogue (docs/design.md §6, Configuration).

A wrong providers file must stop the process at start-up with a message that names the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from config import providers as provider_config
from config.providers import ApiKey
from config.settings import Settings
from workers.domain.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
VALID: dict[str, Any] = {
    "kind": "zhipu",
    "base_url": "https://open.bigmodel.cn/api/paas/v4",
    "api_key_env": ["ZHIPUAI_API_KEY"],
    "max_in_flight": 5,
}


def zhipu(**changes: Any) -> dict[str, Any]:
    """A providers document with one valid ``zhipu`` table, changed as given."""
    return {"providers": {"zhipu": {**VALID, **changes}}}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No VIDQUEUE_* variable from the outer environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("VIDQUEUE_"):
            monkeypatch.delenv(name)
    return monkeypatch


# -- settings ------------------------------------------------------------------------------


def test_settings_defaults_match_the_contract(clean_env: pytest.MonkeyPatch) -> None:
    # Given no VIDQUEUE_ variable set
    # When settings are read
    settings = Settings()
    # Then every default is the one docs/design.md §6 documents
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.providers_file == "config/providers.toml"
    assert settings.s3_bucket == "vidqueue"
    assert settings.s3_prefix == "videos/"
    assert settings.api_tokens == ""
    assert settings.api_token_set == frozenset()
    assert settings.webhook_secret == ""
    # And presigned URLs use the S3 endpoint unless a public one is given
    assert settings.s3_endpoint_url.startswith("http://127.0.0.1:")
    assert settings.s3_presign_endpoint_url == settings.s3_endpoint_url


def test_vidqueue_environment_variables_override_the_defaults(
    clean_env: pytest.MonkeyPatch,
) -> None:
    # Given every contract variable set in the environment
    env = {
        "VIDQUEUE_REDIS_URL": "redis://redis.internal:6380/2",
        "VIDQUEUE_PROVIDERS_FILE": "/etc/vidqueue/providers.toml",
        "VIDQUEUE_S3_ENDPOINT_URL": "http://s3.internal:9000",
        "VIDQUEUE_S3_PUBLIC_ENDPOINT_URL": "https://media.example.com",
        "VIDQUEUE_S3_BUCKET": "videos-prod",
        "VIDQUEUE_S3_PREFIX": "gen/",
        "VIDQUEUE_API_TOKENS": "tok-a, tok-b,,",
        "VIDQUEUE_WEBHOOK_SECRET": "whsec_abc",
    }
    for name, value in env.items():
        clean_env.setenv(name, value)
    # When settings are read
    settings = Settings()
    # Then each one wins over its default
    assert settings.redis_url == "redis://redis.internal:6380/2"
    assert settings.redis_port == 6380
    assert settings.providers_file == "/etc/vidqueue/providers.toml"
    assert settings.s3_endpoint_url == "http://s3.internal:9000"
    assert settings.s3_presign_endpoint_url == "https://media.example.com"
    assert settings.s3_bucket == "videos-prod"
    assert settings.s3_prefix == "gen/"
    assert settings.api_token_set == frozenset({"tok-a", "tok-b"})
    assert settings.webhook_secret == "whsec_abc"


def test_a_variable_without_the_prefix_is_ignored(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REDIS_URL", "redis://elsewhere:1/0")
    assert Settings().redis_url == "redis://127.0.0.1:6379/0"


def test_settings_are_frozen(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.redis_url = "redis://elsewhere:1/0"


def test_a_malformed_setting_is_refused_naming_it(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("VIDQUEUE_SWEEP_GRACE_S", "-1")
    with pytest.raises(ValidationError, match="sweep_grace_s"):
        Settings()


# -- the providers file --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["providers.toml", "providers.production.toml"])
def test_the_shipped_providers_files_load(name: str) -> None:
    catalogue = provider_config.load(str(ROOT / "config" / name))
    config = catalogue.get("zhipu")
    assert config.kind == "zhipu"
    assert config.base_url.startswith(("http://", "https://"))
    assert config.max_in_flight >= 1


def test_the_default_providers_path_loads_from_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    assert "zhipu" in provider_config.load("config/providers.toml").providers


def test_a_valid_table_fills_the_documented_defaults() -> None:
    config = provider_config.parse(zhipu()).get("zhipu")
    assert config.name == "zhipu"
    assert config.key_ids() == ["ZHIPUAI_API_KEY"]
    assert config.cap("ZHIPUAI_API_KEY") == 5
    assert (config.timeout_s, config.result_url_ttl_s) == (1800.0, 86400.0)


def test_a_key_override_sets_that_keys_cap_only() -> None:
    document = zhipu(
        api_key_env=["KEY_A", "KEY_B"], keys={"KEY_B": {"max_in_flight": 10}}, max_in_flight=5
    )
    config = provider_config.parse(document).get("zhipu")
    assert (config.cap("KEY_A"), config.cap("KEY_B")) == (5, 10)


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        pytest.param({"kind": "sora"}, "providers.zhipu.kind", id="unknown-kind"),
        pytest.param({"max_in_flight": 0}, "providers.zhipu.max_in_flight", id="zero-cap"),
        pytest.param({"base_url": "ftp://x/v4"}, "providers.zhipu.base_url", id="not-http"),
        pytest.param({"max_inflight": 5}, "providers.zhipu.max_inflight", id="unknown-field"),
        pytest.param({"api_key_env": []}, "providers.zhipu.api_key_env", id="no-keys"),
        pytest.param({"first_poll_s": 7200}, "providers.zhipu.first_poll_s", id="countdown"),
        pytest.param(
            {"keys": {"ZHIPUAI_API_KEY": {"max_in_flight": 0}}},
            "providers.zhipu.keys.ZHIPUAI_API_KEY.max_in_flight",
            id="zero-key-cap",
        ),
        pytest.param(
            {"keys": {"OTHER_KEY": {"max_in_flight": 2}}},
            "providers.zhipu.keys.OTHER_KEY",
            id="override-unlisted-key",
        ),
    ],
)
def test_a_bad_provider_table_is_refused_naming_the_field(
    changes: dict[str, Any], names: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        provider_config.parse(zhipu(**changes))
    assert str(refused.value).startswith(names + ":")


def test_a_file_without_providers_is_refused() -> None:
    with pytest.raises(ConfigError, match="providers"):
        provider_config.parse({})


def test_a_key_listed_twice_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^providers\.zhipu\.api_key_env"):
        provider_config.parse(zhipu(api_key_env=["ZHIPUAI_API_KEY", "ZHIPUAI_API_KEY"]))


def test_invalid_toml_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "providers.toml"
    path.write_text('[providers.zhipu]\nkind = "zhipu\n')
    with pytest.raises(ConfigError, match="not valid TOML") as refused:
        provider_config.load(str(path))
    assert str(path) in str(refused.value)


def test_a_missing_providers_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="providers file not found") as refused:
        provider_config.load(str(path))
    assert str(path) in str(refused.value)


def test_a_field_error_in_a_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(
        '[providers.zhipu]\nkind = "zhipu"\nbase_url = "https://x/v4"\n'
        'api_key_env = ["K"]\nmax_in_flight = 0\n'
    )
    with pytest.raises(ConfigError, match=r"^providers\.zhipu\.max_in_flight: "):
        provider_config.load(str(path))


# -- API keys ------------------------------------------------------------------------------


def test_keys_are_read_from_the_named_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalogue = provider_config.parse(
        zhipu(api_key_env=["KEY_A", "KEY_B"], keys={"KEY_B": {"max_in_flight": 9}})
    )
    monkeypatch.setenv("KEY_A", "sk-a")
    monkeypatch.setenv("KEY_B", "sk-b")
    keys = catalogue.keys("zhipu")
    assert [(k.id, k.secret, k.max_in_flight) for k in keys] == [
        ("KEY_A", "sk-a", 5),
        ("KEY_B", "sk-b", 9),
    ]


def test_a_missing_key_variable_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a provider whose second key variable is not set
    catalogue = provider_config.parse(zhipu(api_key_env=["KEY_A", "KEY_MISSING"]))
    monkeypatch.setenv("KEY_A", "sk-a")
    monkeypatch.delenv("KEY_MISSING", raising=False)
    # When its keys are read, then the error names the field and the variable
    with pytest.raises(ConfigError, match="KEY_MISSING") as refused:
        catalogue.keys("zhipu")
    assert str(refused.value).startswith("providers.zhipu.api_key_env")


def test_an_empty_key_variable_counts_as_missing() -> None:
    catalogue = provider_config.parse(zhipu(api_key_env=["KEY_A"]))
    with pytest.raises(ConfigError, match="KEY_A"):
        catalogue.keys("zhipu", {"KEY_A": ""})


def test_check_keys_covers_every_provider() -> None:
    # Given two providers, the second one's key not set
    document = {
        "providers": {
            "zhipu": {**VALID, "api_key_env": ["KEY_A"]},
            "other": {**VALID, "api_key_env": ["KEY_B"]},
        }
    }
    catalogue = provider_config.parse(document)
    # When a worker checks its keys at start-up, then the missing one is named
    with pytest.raises(ConfigError, match=r"^providers\.other\.api_key_env: .*KEY_B"):
        catalogue.check_keys({"KEY_A": "sk-a"})


def test_an_unknown_provider_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="'nope'"):
        provider_config.parse(zhipu()).get("nope")


def test_an_api_keys_repr_never_shows_the_secret() -> None:
    key = ApiKey(id="ZHIPUAI_API_KEY", secret="sk-VERY-SECRET-123", max_in_flight=5)
    for text in (repr(key), str(key), repr([key]), f"{key}", f"{key!r}"):
        assert "sk-VERY-SECRET-123" not in text
        assert "ZHIPUAI_API_KEY" in text
