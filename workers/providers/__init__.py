"""The provider registry: which adapter speaks a configured provider's wire format.

Workers ``build`` one adapter per provider with their shared HTTP client; the producer only needs
a ``validator`` to refuse a bad spec at enqueue time, without any HTTP client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

import httpx

from config.providers import ProviderConfig
from workers.errors import ConfigError
from workers.jobs import JobSpec
from workers.providers import zhipu
from workers.providers.base import VideoProvider

Factory = Callable[[ProviderConfig, httpx.Client], VideoProvider]
Validator = Callable[[JobSpec], None]
_T = TypeVar("_T")

# One entry per `kind` in the providers file (config.providers.KINDS).
_FACTORIES: Final[dict[str, Factory]] = {"zhipu": zhipu.ZhipuProvider}
_VALIDATORS: Final[dict[str, Validator]] = {"zhipu": zhipu.validate}


def build(config: ProviderConfig, client: httpx.Client) -> VideoProvider:
    """The adapter for ``config.kind``, sending its requests through ``client``."""
    return _lookup(_FACTORIES, config)(config, client)


def validator(config: ProviderConfig) -> Validator:
    """A function raising ``InvalidSpec``, naming the field, for a spec ``config`` cannot take."""
    return _lookup(_VALIDATORS, config)


def _lookup(table: dict[str, _T], config: ProviderConfig) -> _T:
    try:
        return table[config.kind]
    except KeyError:
        raise ConfigError(
            f"providers.{config.name}.kind: no adapter for {config.kind!r}; "
            f"known: {', '.join(sorted(table))}"
        ) from None
