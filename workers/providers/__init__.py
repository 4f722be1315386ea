"""The provider registry: which adapter speaks a configured provider's wire format.

Each ``kind`` of the providers file (``config.providers.KINDS``) has one module,
``workers/providers/{kind}.py``, exposing ``ADAPTER`` (a class built with the provider's config
and the process's shared ``httpx.Client``) and ``validate(spec)`` (the per-model rules, needing no
HTTP client). Workers ``build`` adapters; the producer only needs a ``validator``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

import httpx

from config.providers import KINDS, ProviderConfig
from workers.domain.errors import ConfigError
from workers.domain.jobs import JobSpec
from workers.providers.base import VideoProvider

Factory = Callable[[ProviderConfig, httpx.Client], VideoProvider]
Validator = Callable[[JobSpec], None]


def build(config: ProviderConfig, client: httpx.Client) -> VideoProvider:
    """The adapter for ``config.kind``, sending its requests through ``client``."""
    factory: Factory = _module(config).ADAPTER
    return factory(config, client)


def validator(config: ProviderConfig) -> Validator:
    """A function raising ``InvalidSpec``, naming the field, for a spec ``config`` cannot take."""
    validate: Validator = _module(config).validate
    return validate


def _module(config: ProviderConfig) -> ModuleType:
    if config.kind not in KINDS:
        raise ConfigError(
            f"providers.{config.name}.kind: no adapter for {config.kind!r}; "
            f"known: {', '.join(sorted(KINDS))}"
        )
    return importlib.import_module(f"workers.providers.{config.kind}")
