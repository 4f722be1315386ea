"""The local stack's own API token and webhook secret, generated once per run directory.

Without ``VIDQUEUE_API_TOKENS`` the API would accept anyone on loopback, and without
``VIDQUEUE_WEBHOOK_SECRET`` webhooks would go unsigned; neither is how vidqueue runs anywhere
else. So ``vidqueue dev up`` fills in whichever is unset with a value generated at the first
``dev up`` (``secrets.token_urlsafe``; the webhook secret in the Standard Webhooks form,
``whsec_`` + base64 of 32 random bytes) and kept in ``{run_dir}/credentials.env`` (mode 0600),
so it stays the same across restarts. A value set in the environment always wins and is never
written there.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Final

from config import local_env
from config.settings import Settings

FILE_NAME: Final = "credentials.env"
TOKEN_KEY: Final = "VIDQUEUE_API_TOKEN"  # noqa: S105 (a variable name)
WEBHOOK_KEY: Final = "VIDQUEUE_WEBHOOK_SECRET"
WEBHOOK_SECRET_BYTES: Final = 32  # the standard asks for 24 to 64


def new_api_token() -> str:
    return secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(WEBHOOK_SECRET_BYTES)).decode()


def stored(run_dir: Path) -> dict[str, str]:
    """What earlier ``dev up`` runs generated in ``run_dir`` ({} before the first)."""
    try:
        text = (run_dir / FILE_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return local_env.parse(text, str(run_dir / FILE_NAME))


def ensure(settings: Settings, run_dir: Path) -> Settings:
    """``settings`` with an API token and a webhook secret: the environment's where set, else
    the run directory's, generated and stored there the first time."""
    kept = stored(run_dir)
    wanted: dict[str, str] = {}
    if not settings.api_token_set:
        wanted[TOKEN_KEY] = kept.get(TOKEN_KEY) or new_api_token()
    if not settings.webhook_secret:
        wanted[WEBHOOK_KEY] = kept.get(WEBHOOK_KEY) or new_webhook_secret()
    if any(kept.get(key) != value for key, value in wanted.items()):
        _store(run_dir, {**kept, **wanted})
    return with_values(settings, wanted)


def with_values(settings: Settings, values: dict[str, str]) -> Settings:
    """``settings`` with the token added to ``api_tokens`` and the webhook secret set."""
    update: dict[str, str] = {}
    if values.get(TOKEN_KEY):
        update["api_tokens"] = ",".join(filter(None, (settings.api_tokens, values[TOKEN_KEY])))
    if values.get(WEBHOOK_KEY):
        update["webhook_secret"] = values[WEBHOOK_KEY]
    return settings.model_copy(update=update) if update else settings


def existing(settings: Settings, run_dir: Path) -> Settings:
    """Like :func:`ensure`, but only with what is already stored: nothing is generated."""
    kept = stored(run_dir)
    values: dict[str, str] = {}
    if not settings.api_token_set and kept.get(TOKEN_KEY):
        values[TOKEN_KEY] = kept[TOKEN_KEY]
    if not settings.webhook_secret and kept.get(WEBHOOK_KEY):
        values[WEBHOOK_KEY] = kept[WEBHOOK_KEY]
    return with_values(settings, values)


def _store(run_dir: Path, values: dict[str, str]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    local_env.write_file(run_dir / FILE_NAME, values)
