"""The providers catalogue: a TOML file with one table per configured provider.

Loading validates everything up front, so a typo stops the process at startup with an error
that names the field (``providers.zhipu.max_in_flight: must be at least 1``), never later in
the middle of a job. API keys are read from the environment variables the file names; the
key's *id* (the variable's name) is what Redis, logs and job records see, never the secret.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from config.errors import ConfigError

# One adapter module per kind: workers/providers/{kind}.py (see workers.providers).
KINDS: Final = frozenset({"zhipu", "openai", "gateway", "ark", "kling"})
# The longest wait before a step (a poll, a webhook retry). Scheduled steps wait in Redis, not in
# a broker message (workers.steps.due), so this bounds only how long a misconfigured provider
# can leave a job unlooked-at.
MAX_COUNTDOWN_S: Final = 3600.0


@dataclass(frozen=True)
class ApiKey:
    """One API key of a provider. ``id`` is safe to log; ``secret`` is not (hidden in repr)."""

    id: str
    secret: str = field(repr=False)
    max_in_flight: int = 1


class KeyOverride(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_in_flight: int = Field(ge=1)


class ProviderConfig(BaseModel):
    """One ``[providers.NAME]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str
    base_url: str
    api_key_env: list[str] = Field(min_length=1)
    max_in_flight: int = Field(default=1, ge=1)
    requests_per_second: float = Field(default=10.0, gt=0)
    first_poll_s: float = Field(default=30.0, gt=0, le=MAX_COUNTDOWN_S)
    min_poll_interval_s: float = Field(default=5.0, gt=0, le=MAX_COUNTDOWN_S)
    max_poll_interval_s: float = Field(default=30.0, gt=0, le=MAX_COUNTDOWN_S)
    timeout_s: float = Field(default=1800.0, gt=0)
    result_url_ttl_s: float = Field(default=86400.0, gt=0)
    request_timeout_s: float = Field(default=30.0, gt=0, le=300)
    keys: dict[str, KeyOverride] = Field(default_factory=dict)
    # "jwt": sign a short-lived token from an "<id>.<secret>" key (Zhipu's legacy mode)
    # instead of sending the key itself. Kling always signs JWTs from "ACCESS:SECRET" keys.
    auth: Literal["bearer", "jwt"] = "bearer"
    # Learn the first poll's timing from recent durations (else: first_poll_s, then backoff).
    adaptive_polling: bool = True
    # Model names this provider serves (the OpenAI-compatible facade routes by model name).
    models: list[str] = Field(default_factory=list)
    # Provider callbacks (docs/callbacks.md): this provider's own public base URL for them
    # (else VIDQUEUE_PUBLIC_BASE_URL), and how far apart the safety polls of a job whose
    # callbacks are armed are (a lost callback costs at most this much latency).
    callback_base_url: str = ""
    callback_safety_poll_s: float = Field(default=120.0, gt=0, le=MAX_COUNTDOWN_S)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown kind {value!r}; expected one of {sorted(KINDS)}")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _distinct_keys(cls, value: list[str]) -> list[str]:
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once")
        return value

    @field_validator("base_url", "callback_base_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "callback_base_url" and not value:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    def cap(self, key_id: str) -> int:
        override = self.keys.get(key_id)
        return override.max_in_flight if override else self.max_in_flight

    def key_ids(self) -> list[str]:
        return list(self.api_key_env)


@dataclass(frozen=True)
class Catalogue:
    """Every configured provider, by name."""

    providers: dict[str, ProviderConfig]

    def get(self, name: str) -> ProviderConfig:
        try:
            return self.providers[name]
        except KeyError:
            raise ConfigError(f"unknown provider {name!r}") from None

    def keys(self, name: str, environ: dict[str, str] | None = None) -> list[ApiKey]:
        """The provider's API keys, read from the environment; missing ones are an error."""
        env = os.environ if environ is None else environ
        config = self.get(name)
        keys = []
        for var in config.api_key_env:
            secret = env.get(var, "")
            if not secret:
                raise ConfigError(
                    f"providers.{name}.api_key_env: environment variable {var} is not set"
                )
            keys.append(ApiKey(id=var, secret=secret, max_in_flight=config.cap(var)))
        return keys

    def check_keys(self, environ: dict[str, str] | None = None) -> None:
        """Fail unless every provider's key variables are set (workers call this at startup)."""
        for name in self.providers:
            self.keys(name, environ)

    def check_callbacks(self, public_base_url: str, callback_secret: str) -> None:
        """Fail when callbacks are armed somewhere without the secret their tokens need."""
        if callback_secret:
            return
        armed = [
            f"providers.{name}.callback_base_url"
            for name, config in self.providers.items()
            if config.callback_base_url
        ]
        if public_base_url:
            armed.insert(0, "VIDQUEUE_PUBLIC_BASE_URL")
        if armed:
            raise ConfigError(
                f"VIDQUEUE_CALLBACK_SECRET must be set: provider callbacks are armed by "
                f"{', '.join(armed)} (docs/callbacks.md)"
            )


def resolve_path(path: str) -> Path:
    """A relative path is taken from the working directory, else from the installed package."""
    candidate = Path(path)
    if candidate.exists() or candidate.is_absolute():
        return candidate
    packaged = resources.files("config").joinpath(candidate.name)
    if candidate.parent.name == "config" and packaged.is_file():
        return Path(str(packaged))
    return candidate


def parse(document: dict[str, Any], source: str = "providers file") -> Catalogue:
    tables = document.get("providers")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{source}: needs at least one [providers.NAME] table")
    providers: dict[str, ProviderConfig] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"providers.{name}: must be a table")
        try:
            providers[name] = ProviderConfig.model_validate({**table, "name": name})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise ConfigError(f"providers.{name}.{where}: {message}") from None
        for key_id in providers[name].keys:
            if key_id not in providers[name].api_key_env:
                raise ConfigError(f"providers.{name}.keys.{key_id}: not listed in api_key_env")
    return Catalogue(providers)


def load(path: str) -> Catalogue:
    resolved = resolve_path(path)
    try:
        document = tomllib.loads(resolved.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"providers file not found: {resolved}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{resolved}: not valid TOML: {exc}") from None
    return parse(document, str(resolved))
