"""Where Redis is: one server, or a master that Redis Sentinel finds.

``VIDQUEUE_REDIS_URL`` takes redis-py's forms (``redis://``, ``rediss://``, ``unix://``) for one
server, and Celery's form for Sentinel: every Sentinel, each as its own ``sentinel://`` URL,
joined by ``;``::

    sentinel://:master-password@10.0.0.1:26379;sentinel://10.0.0.2:26379;sentinel://10.0.0.3:26379/0

As in Celery, the user and password in the URL are the *master's*; the database is the path of
any part (0 when none says). ``VIDQUEUE_REDIS_SENTINEL_MASTER`` names the master the Sentinels
watch, and ``VIDQUEUE_REDIS_SENTINEL_PASSWORD`` is the Sentinels' own password, when they have
one. One parser serves every reader (the broker, the job store, the API, the clients), so they
cannot disagree about what a URL means; it lives in ``config`` because the Celery app's
settings need it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from config.errors import ConfigError

SENTINEL_SCHEME: Final = "sentinel"
SENTINEL_PORT: Final = 26379


@dataclass(frozen=True)
class SentinelTarget:
    """A master found through Sentinels: where to ask, which master, and how to log in."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None

    def sentinel_kwargs(self) -> dict[str, object]:
        """The options of each connection to a Sentinel (redis-py's ``sentinel_kwargs``)."""
        options: dict[str, object] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        if self.sentinel_password:
            options["password"] = self.sentinel_password
        return options


def is_sentinel(url: str) -> bool:
    return url.strip().lower().startswith(f"{SENTINEL_SCHEME}://")


def sentinel_target(url: str, master: str, sentinel_password: str = "") -> SentinelTarget | None:
    """The Sentinel target ``url`` names, or None for a plain Redis URL.

    Raises ``ConfigError`` naming the setting when the URL or the master name is wrong: a worker
    that cannot find its Redis must say why at startup, not on its first job.
    """
    if not is_sentinel(url):
        return None
    parts = [part.strip() for part in url.split(";") if part.strip()]
    sentinels: list[tuple[str, int]] = []
    dbs: set[int] = set()
    username = password = None
    for part in parts:
        split = urlsplit(part)
        if split.scheme.lower() != SENTINEL_SCHEME or not split.hostname:
            raise ConfigError(
                f"VIDQUEUE_REDIS_URL: {_redacted(part)!r} is not a sentinel://host:port URL "
                "(a Sentinel URL lists every Sentinel as sentinel://host:port, joined by ';')"
            )
        try:
            port = split.port or SENTINEL_PORT
        except ValueError as exc:
            raise ConfigError(f"VIDQUEUE_REDIS_URL: bad port in {_redacted(part)!r}") from exc
        sentinels.append((split.hostname, port))
        if split.path.strip("/"):
            dbs.add(_db(split.path, part))
        if split.password is not None and password is None:
            username = unquote(split.username) if split.username else None
            password = unquote(split.password)
    if len(dbs) > 1:
        raise ConfigError(f"VIDQUEUE_REDIS_URL: its parts name different databases {sorted(dbs)}")
    if not master:
        raise ConfigError(
            "VIDQUEUE_REDIS_URL names Sentinels: set VIDQUEUE_REDIS_SENTINEL_MASTER to the name "
            "of the master they monitor (the name in `sentinel monitor <name> ...`)"
        )
    return SentinelTarget(
        sentinels=tuple(sentinels),
        master=master,
        db=dbs.pop() if dbs else 0,
        username=username,
        password=password,
        sentinel_password=sentinel_password or None,
    )


def _db(path: str, part: str) -> int:
    try:
        return int(path.strip("/"))
    except ValueError as exc:
        raise ConfigError(
            f"VIDQUEUE_REDIS_URL: the database in {_redacted(part)!r} must be a number"
        ) from exc


def _redacted(part: str) -> str:
    """``part`` without its password, for error messages."""
    split = urlsplit(part)
    if split.password is None:
        return part
    return part.replace(f":{split.password}@", ":***@", 1)
