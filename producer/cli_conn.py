"""Where the ``vidqueue`` job commands find the HTTP API, and with which token.

Each value comes from the first of: the flag (``--api-url``, ``--token``), the environment
(``VIDQUEUE_API_URL``, ``VIDQUEUE_API_TOKEN``: click reads both into the flag), the local
stack's settings file that ``vidqueue dev up`` writes (``config.local_env``), and lastly
``http://127.0.0.1:{VIDQUEUE_API_PORT}`` (8000) with no token.

The settings file's token is used only with the settings file's own URL: a token of the
local stack is never sent to another server someone pointed the command at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from config.settings import get_settings
from producer.cli_errors import BadArgument

URL_KEY: Final = "VIDQUEUE_API_URL"
TOKEN_KEY: Final = "VIDQUEUE_API_TOKEN"  # noqa: S105 (a variable name)


@dataclass(frozen=True)
class Connection:
    """The API's base URL and the bearer token (None: send none)."""

    api_url: str
    token: str | None

    def __repr__(self) -> str:  # the token never reaches a log or a traceback
        return f"Connection(api_url={self.api_url!r}, token={'***' if self.token else None})"


def local_settings() -> dict[str, str]:
    """The local stack's settings file (``{VIDQUEUE_RUN_DIR}/vidqueue.env``), or {}.

    Imported lazily: the module belongs to the local stack's tooling, and the command line
    must work (from flags and the environment) where it is absent or unreadable."""
    try:
        from config import local_env
    except ImportError:
        return {}
    try:
        return dict(local_env.read())
    except OSError:
        return {}
    except local_env.LocalEnvError as exc:  # a line it cannot read
        raise BadArgument(
            f"the local stack's settings file: {exc} (fix it, or set VIDQUEUE_API_URL)"
        ) from None


def resolve(api_url: str | None, token: str | None) -> Connection:
    """The connection from the flags (or their environment variables, already read into
    them by click), completed from the settings file, then the defaults."""
    api_url, token = (api_url or "").strip() or None, (token or "").strip() or None
    if api_url is not None and token is not None:
        return Connection(_base(api_url), token)
    saved = local_settings()
    saved_url = (saved.get(URL_KEY) or "").strip() or None
    saved_token = (saved.get(TOKEN_KEY) or "").strip() or None
    if api_url is None:
        api_url = saved_url or f"http://127.0.0.1:{get_settings().api_port}"
    if token is None and saved_url is not None and _base(saved_url) == _base(api_url):
        token = saved_token
    return Connection(_base(api_url), token)


def _base(url: str) -> str:
    return url.rstrip("/")
