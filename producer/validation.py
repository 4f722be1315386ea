"""What a job spec must pass before it is accepted: its shape, a configured provider and that
provider's model rules, a public callback URL, and uploaded images that are the producer's own.

Every refusal is an ``InvalidSpec`` naming the field, raised before anything is written or sent
to a provider; so is anything odd an adapter raises on strange input (it is logged: a spec
must never become a server error).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from config.providers import Catalogue, ProviderConfig
from config.settings import Settings
from workers.domain import callbacks
from workers.domain.errors import ConfigError, InvalidSpec, PermanentError, UploadTooLarge
from workers.domain.jobs import JobSpec
from workers.io import uploads, webhooks
from workers.providers import build, validator
from workers.providers.base import VideoProvider

log = logging.getLogger("vidqueue.client")

Check = Callable[[JobSpec], None]


def parse_spec(data: Mapping[str, Any]) -> JobSpec:
    """Validate a spec's shape; the error names the first offending field."""
    try:
        return JobSpec.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or _field_of_model_error(first["msg"])
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidSpec(where, message) from None


def _field_of_model_error(message: str) -> str:
    return "prompt" if "prompt" in message else "spec"


class Adapters:
    """Each provider's name and spec check (its adapter's rules), looked up once."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._found: dict[str, tuple[str, Check]] = {}
        self._adapters: dict[str, VideoProvider] = {}
        self._http: httpx.Client | None = None

    def get(self, provider: str) -> tuple[str, Check]:
        found = self._found.get(provider)
        if found is None:
            try:
                config = self.catalogue.get(provider)
            except ConfigError:
                known = ", ".join(sorted(self.catalogue.providers))
                raise InvalidSpec(
                    "provider", f"unknown provider {provider!r}; configured: {known}"
                ) from None
            found = self._found[provider] = (config.name, validator(config))
        return found

    def adapter(self, config: ProviderConfig) -> VideoProvider:
        """The provider's adapter, for questions about its wire format (it sends nothing
        from here: its HTTP client is never used)."""
        if config.name not in self._adapters:
            if self._http is None:
                self._http = httpx.Client()
            self._adapters[config.name] = build(config, self._http)
        return self._adapters[config.name]


def adapter_checks(provider: str, check: Check, spec: JobSpec) -> None:
    """The adapter's model rules. Whatever else an adapter raises on odd input is still the
    input's fault: it becomes ``InvalidSpec`` (and is logged), never a server error."""
    try:
        check(spec)
    except InvalidSpec:
        raise
    except Exception as exc:
        log.exception("%s: validating a spec failed", provider)
        raise InvalidSpec(
            "spec", f"{provider} cannot take this spec ({type(exc).__name__})"
        ) from None


def check_upload_size(data: bytes) -> None:
    """Refuse an upload over ``uploads.MAX_UPLOAD_BYTES`` with ``UploadTooLarge``."""
    if len(data) > uploads.MAX_UPLOAD_BYTES:
        limit = uploads.MAX_UPLOAD_BYTES // (1024 * 1024)
        raise UploadTooLarge("image", f"larger than {limit} MB")


class Validator:
    """Checks specs against one catalogue and settings. ``owned`` checks that a spec's uploads
    are the producer's; it asks S3, so it is called only when a spec names an upload (and is
    given by the caller, which bounds how long S3 may take: ``producer.files``)."""

    def __init__(
        self, catalogue: Catalogue, settings: Settings, owned: Callable[[JobSpec, str], None]
    ) -> None:
        self.adapters = Adapters(catalogue)
        self.settings = settings
        self.owned = owned

    def check(self, data: Mapping[str, Any] | JobSpec, producer: str) -> JobSpec:
        """The spec, valid for ``producer``; or ``InvalidSpec`` naming the first bad field."""
        spec = data if isinstance(data, JobSpec) else parse_spec(data)
        name, check = self.adapters.get(spec.provider)
        adapter_checks(name, check, spec)
        if spec.callback_url:
            try:
                webhooks.check_public_url(
                    spec.callback_url, allow_private=self.settings.allow_private_callbacks
                )
            except PermanentError as exc:
                raise InvalidSpec("callback_url", exc.message) from None
        if any(uploads.is_ref(image) for image in spec.images):
            self.owned(spec, producer)
        self._refuse_own_provider_callback(spec)
        return spec

    def _refuse_own_provider_callback(self, spec: JobSpec) -> None:
        """Where vidqueue arms the provider's callbacks, it sets the provider's callback URL
        itself: a spec that sets one too (in its options) is refused, naming the field."""
        config = self.adapters.catalogue.get(spec.provider)
        if not callbacks.base_url(config, self.settings):
            return
        adapter = self.adapters.adapter(config)
        field = adapter.producer_callback_field(spec) if adapter.accepts_callback(spec) else None
        if field:
            raise InvalidSpec(
                field,
                f"vidqueue sets {spec.provider}'s callback URL itself (provider callbacks are "
                "armed); leave it out. To be told when the job is done, set the spec's "
                "callback_url (vidqueue's webhook)",
            )
