"""Who a bearer token is, and which fair-share tenants it may name.

A producer writes its own job specs, so a spec's ``labels.tenant`` cannot be trusted on its
own: a producer could spread its jobs over many tenants (many fair shares) or join another
producer's tenant. So on the HTTP API a token carries a name (its producer identity, and its
default tenant) and a list of the other tenants it may name; anything else is refused
(``TenantNotAllowed``). Tokens come from ``VIDQUEUE_API_TOKENS`` (each its own producer,
named by a hash of the token, as before) and from the TOML file ``VIDQUEUE_API_TOKENS_FILE``::

    [[tokens]]
    name = "team-a"                 # the producer's name (and its default tenant)
    token = "secret-a"              # or: sha256 = "<hex of the token>"
    tenants = ["shop-1", "shop-2"]  # optional: other tenants this token may name

A bad file refuses to start the API with a ``ConfigError`` naming the field, like the
providers file. A presented token is compared against every known one in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workers.domain.errors import ConfigError, TenantNotAllowed
from workers.domain.jobs import JobSpec


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def identity(token: str) -> str:
    """The producer identity of a ``VIDQUEUE_API_TOKENS`` token: a short hash of it."""
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Caller:
    """Who sent a request: its producer identity, and the tenants it may name besides that
    one (``None``: any — only without tokens, where every caller is trusted anyway)."""

    producer: str
    tenants: frozenset[str] | None = frozenset()

    def fair_key(self, spec: JobSpec) -> str:
        """The fair-share key of a job this caller sends: the spec's ``labels.tenant`` when the
        caller may name it, else the caller itself; any other tenant is ``TenantNotAllowed``."""
        tenant = spec.labels.get("tenant")
        if not tenant or tenant == self.producer:
            return self.producer
        if self.tenants is None or tenant in self.tenants:
            return tenant
        raise TenantNotAllowed("labels.tenant", f"this token may not use the tenant {tenant!r}")

    def default(self, _: JobSpec) -> str:
        """The caller's own fair-share key, whatever the spec says (the OpenAI facade)."""
        return self.producer


@dataclass(frozen=True)
class Token:
    """One known token: only its SHA-256 is kept."""

    digest: bytes = field(repr=False)
    caller: Caller


class _Entry(BaseModel):
    """One ``[[tokens]]`` table of the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    token: str | None = Field(default=None, min_length=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    tenants: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_secret(self) -> _Entry:
        if (self.token is None) == (self.sha256 is None):
            raise ValueError("give exactly one of 'token' and 'sha256'")
        if any(not t for t in self.tenants):
            raise ValueError("a tenant must not be empty")
        return self

    def known(self) -> Token:
        secret = bytes.fromhex(self.sha256) if self.sha256 else digest(self.token or "")
        return Token(secret, Caller(self.name, frozenset(self.tenants)))


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tokens: list[_Entry] = Field(min_length=1)


def parse(document: dict[str, Any], source: str = "tokens file") -> list[Token]:
    """The tokens of a parsed tokens file, or ``ConfigError`` naming the first bad field
    (``tokens.0.sha256: ...``); names and tokens must be unique."""
    try:
        entries = _File.model_validate(document).tokens
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "tokens"
        raise ConfigError(f"{source}: {where}: {first['msg']}") from None
    tokens = [entry.known() for entry in entries]
    names: set[str] = set()
    secrets: set[bytes] = set()
    for index, token in enumerate(tokens):
        if token.caller.producer in names:
            raise ConfigError(f"{source}: tokens.{index}.name: used twice")
        if token.digest in secrets:
            raise ConfigError(f"{source}: tokens.{index}.token: the same token is used twice")
        names.add(token.caller.producer)
        secrets.add(token.digest)
    return tokens


def read(path: str) -> list[Token]:
    """The tokens of the file at ``path`` (``ConfigError`` when it is unreadable or bad)."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"tokens file {path}: {exc}") from None
    return parse(document, f"tokens file {path}")


@dataclass(frozen=True)
class Tokens:
    """Every token the API accepts; empty means no authentication (loopback only)."""

    known: tuple[Token, ...]

    def find(self, token: str) -> Caller | None:
        """The caller a presented token is, or None. Every known token is compared, each in
        constant time, so the answer's timing tells nothing about how close a guess was."""
        presented, found = digest(token), None
        for candidate in self.known:
            if hmac.compare_digest(presented, candidate.digest):
                found = candidate.caller
        return found


@lru_cache(maxsize=4)
def load(api_tokens: str, tokens_file: str) -> Tokens:
    """The tokens of ``VIDQUEUE_API_TOKENS`` (each its own producer, as before) and of the
    tokens file; loaded once per pair of settings."""
    plain = [t.strip() for t in api_tokens.split(",") if t.strip()]
    known = [Token(digest(t), Caller(identity(t))) for t in plain]
    return Tokens(tuple(known + (read(tokens_file) if tokens_file else [])))
