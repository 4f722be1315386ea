"""The API tokens file (``VIDQUEUE_API_TOKENS_FILE``): a bad one refuses to start with an
error naming the field; a token's tenants decide a job's fair-share key."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from producer import tokens
from producer.tokens import Caller
from workers.domain.errors import ConfigError, TenantNotAllowed
from workers.domain.jobs import JobSpec


def document(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"tokens": list(entries)}


def spec(tenant: str | None = None) -> JobSpec:
    labels = {"tenant": tenant} if tenant else {}
    return JobSpec(provider="zhipu", model="cogvideox-flash", prompt="p", labels=labels)


def test_a_token_is_known_by_its_name_and_tenants() -> None:
    digest = hashlib.sha256(b"secret-b").hexdigest()
    [a, b] = tokens.parse(
        document(
            {"name": "team-a", "token": "secret-a", "tenants": ["shop-1"]},
            {"name": "team-b", "sha256": digest.upper()},
        )
    )
    found = tokens.Tokens((a, b))
    assert found.find("secret-a") == Caller("team-a", frozenset({"shop-1"}))
    assert found.find("secret-b") == Caller("team-b", frozenset())
    assert found.find("secret-c") is None
    assert "secret-a" not in repr(a)


@pytest.mark.parametrize(
    ("entries", "field"),
    [
        ([], "tokens"),
        ([{"token": "x"}], "tokens.0.name"),
        ([{"name": "a", "token": "x", "colour": "red"}], "tokens.0.colour"),
        ([{"name": "a"}], "tokens.0"),
        ([{"name": "a", "token": "x", "sha256": "0" * 64}], "tokens.0"),
        ([{"name": "a", "sha256": "not-hex"}], "tokens.0.sha256"),
        ([{"name": "a", "token": "x", "tenants": "shop"}], "tokens.0.tenants"),
        ([{"name": "a", "token": "x", "tenants": [""]}], "tokens.0"),
        ([{"name": "a", "token": "x"}, {"name": "a", "token": "y"}], "tokens.1.name"),
        ([{"name": "a", "token": "x"}, {"name": "b", "token": "x"}], "tokens.1.token"),
    ],
)
def test_a_bad_entry_is_a_config_error_naming_the_field(
    entries: list[dict[str, Any]], field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"tokens file: {field}(:| )"):
        tokens.parse(document(*entries))


def test_a_bad_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text("[[tokens]]\nname = ")
    with pytest.raises(ConfigError, match="tokens file"):
        tokens.read(str(path))
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        tokens.read(str(tmp_path / "missing.toml"))


def test_plain_tokens_keep_their_identity_next_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[[tokens]]\nname = "team-a"\ntoken = "secret-a"\n')
    known = tokens.load(" tok-1 , tok-2,", str(path))
    assert known.find("tok-1") == Caller(tokens.identity("tok-1"))
    assert known.find("secret-a") == Caller("team-a")
    assert tokens.load("", "").known == ()


def test_the_fair_key_is_the_token_s_unless_it_may_name_the_tenant() -> None:
    caller = Caller("team-a", frozenset({"shop-1"}))
    assert caller.fair_key(spec()) == "team-a"
    assert caller.fair_key(spec("team-a")) == "team-a"
    assert caller.fair_key(spec("shop-1")) == "shop-1"
    with pytest.raises(TenantNotAllowed) as refused:
        caller.fair_key(spec("shop-2"))
    assert refused.value.field == "labels.tenant"
    assert caller.default(spec("shop-1")) == "team-a"
    # Without tokens (no authentication) every caller is trusted, as direct clients are
    assert Caller("anonymous", None).fair_key(spec("anything")) == "anything"
