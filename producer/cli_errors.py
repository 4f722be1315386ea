"""What every ``vidqueue`` command says when it fails: one line on stderr, and an exit code.

``EXITS`` is the one table, from an error class to the message (after ``vidqueue: ``) and the
exit code; ``guard`` runs a command through it. The Python client keeps raising the raw
redis/botocore/httpx errors (callers may catch them): only the command line translates them,
here. A traceback is printed only with ``--debug``.

Exit codes: 0 ok, 1 a job failed (or timed out, or cannot be cancelled; or anything else went
wrong), 2 bad input or unknown id, 3 a service is unavailable (Redis or S3 cannot be reached
or refuses writes, the API cannot be reached or answers 502/503/504, no S3 credentials).

The HTTP API's refusals are raised by ``producer.cli_http`` as the classes below, one per
meaning, so this one table decides their message and code too: a 401 (the token refused) is
bad input, exit 2, like a wrong flag: trying again without changing the token cannot help,
whereas exit 3 says "try again when the service is back".
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Final
from urllib.parse import urlsplit

import botocore.exceptions as boto
import httpx
import kombu.exceptions
import pydantic
import redis.exceptions

from config.settings import Settings, get_settings
from producer.client import CancelRefused, IdempotencyConflict
from workers.domain.errors import InvalidSpec, JobNotFound, VidqueueError

FAILED: Final = 1
BAD_INPUT: Final = 2
UNAVAILABLE: Final = 3
DEBUG_FLAG: Final = "--debug"

Template = str | Callable[[BaseException], str]


class BadArgument(VidqueueError):
    """A flag the command line cannot use (``--label team:red``, ``--all`` without
    ``--direct``): the message names the flag and what it takes."""


class ApiRefused(VidqueueError):
    """An HTTP API answer that is not a success, and not one ``producer.aio`` already raises as
    a domain error (``InvalidSpec``, ``JobNotFound``, ``CancelRefused``...)."""

    def __init__(self, message: str, *, url: str, status: int = 0) -> None:
        super().__init__(message)
        self.url, self.status = url, status


class ApiUnreachable(ApiRefused):
    """No answer: refused connection, unknown host, timeout."""


class ApiBadToken(ApiRefused):
    """401: no token, or one the API does not know."""


class ApiForbidden(ApiRefused):
    """403: the token may not do this (e.g. name that tenant)."""


class ApiBadInput(ApiRefused):
    """400/413/422 without a job field to name (the request itself is wrong)."""


class ApiUnavailable(ApiRefused):
    """502/503/504: the API (or what it needs: Redis, S3) is down for now."""


class NotReady(VidqueueError):
    """A job's files asked for before it succeeded."""


UP = "is the stack up? run `vidqueue dev up`"


def _settings() -> Settings | None:
    try:
        return get_settings()
    except Exception:  # the message must not fail in turn
        return None


def _host_port(url: str) -> str:
    """``host:port`` of a URL, without any password in it."""
    return urlsplit(url).netloc.rpartition("@")[2] or url


def _redis_at() -> str:
    settings = _settings()
    return _host_port(settings.redis_url) if settings else "VIDQUEUE_REDIS_URL"


def _s3_at() -> str:
    settings = _settings()
    return settings.s3_endpoint_url if settings else "VIDQUEUE_S3_ENDPOINT_URL"


def _redis_down(exc: BaseException) -> str:
    return f"cannot reach Redis at {_redis_at()}: {UP} (or set VIDQUEUE_REDIS_URL)"


def _redis_readonly(exc: BaseException) -> str:
    return (
        f"Redis at {_redis_at()} refuses writes (READONLY: it is a replica): point "
        "VIDQUEUE_REDIS_URL at the master, or at Sentinel with a sentinel:// URL"
    )


def _redis_oom(exc: BaseException) -> str:
    return (
        f"Redis at {_redis_at()} refuses writes (OOM: it reached its maxmemory): raise "
        "maxmemory or free memory, then try again"
    )


def _no_credentials(exc: BaseException) -> str:
    return (
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        '(for the local stack: eval "$(vidqueue dev env)")'
    )


def _s3_down(exc: BaseException) -> str:
    return f"cannot reach S3 at {_s3_at()}: {UP} (or set VIDQUEUE_S3_ENDPOINT_URL)"


def _http_down(exc: BaseException) -> str:
    try:
        url = exc.request.url if isinstance(exc, httpx.RequestError) else None
    except RuntimeError:  # no request attached
        url = None
    where = f"{url.scheme}://{url.netloc.decode()}" if url else "the server"
    settings = _settings()
    what = "the API"
    if url and settings and url.port == settings.sim_port:
        what = "the provider simulator"
    elif url and settings and url.port != settings.api_port:
        what = "the server"
    return f"cannot reach {what} at {where}: {UP}"


def _api_down(exc: BaseException) -> str:
    url = exc.url if isinstance(exc, ApiRefused) else "VIDQUEUE_API_URL"
    return f"cannot reach the API at {url} ({exc}): {UP} (or set VIDQUEUE_API_URL / --api-url)"


def _api_token(exc: BaseException) -> str:
    url = exc.url if isinstance(exc, ApiRefused) else "the API"
    return (
        f"the API at {url} refused the token ({exc}): set VIDQUEUE_API_TOKEN or --token "
        '(for the local stack: eval "$(vidqueue dev env)")'
    )


def _api_unavailable(exc: BaseException) -> str:
    url = exc.url if isinstance(exc, ApiRefused) else "the API"
    return f"the API at {url} is unavailable: {exc}; try again, or check `vidqueue dev status`"


def _bad_setting(exc: BaseException) -> str:
    if isinstance(exc, pydantic.ValidationError) and exc.errors():
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"])
        return f"bad setting VIDQUEUE_{name.upper()}: {first['msg']}"
    return f"bad setting: {exc}"


def _internal(exc: BaseException) -> str:
    return f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"


# The one mapping from an error to what a command says and its exit code. A class's row is that
# of the nearest class in its MRO (``JobNotFound`` before ``VidqueueError``). A service being
# unavailable (exit 3) anywhere in the chain of causes wins: the client wraps boto errors in
# its own (``storage: upload failed: ...``), and the cause is what the user can fix.
EXITS: Final[dict[type[BaseException], tuple[Template, int]]] = {
    BadArgument: ("{}", BAD_INPUT),
    ApiUnreachable: (_api_down, UNAVAILABLE),
    ApiBadToken: (_api_token, BAD_INPUT),
    ApiForbidden: ("the API refused: {}", BAD_INPUT),
    ApiBadInput: ("bad input: {}", BAD_INPUT),
    ApiUnavailable: (_api_unavailable, UNAVAILABLE),
    ApiRefused: ("the API failed: {}", FAILED),
    NotReady: ("{}", FAILED),
    InvalidSpec: ("invalid job: {}", BAD_INPUT),
    JobNotFound: ("{}", BAD_INPUT),
    CancelRefused: ("{}", FAILED),
    IdempotencyConflict: ("{}", FAILED),
    TimeoutError: ("{}", FAILED),
    VidqueueError: ("{}", FAILED),
    OSError: ("{}", FAILED),
    pydantic.ValidationError: (_bad_setting, BAD_INPUT),
    redis.exceptions.ReadOnlyError: (_redis_readonly, UNAVAILABLE),
    redis.exceptions.OutOfMemoryError: (_redis_oom, UNAVAILABLE),
    redis.exceptions.ConnectionError: (_redis_down, UNAVAILABLE),
    redis.exceptions.TimeoutError: (_redis_down, UNAVAILABLE),
    kombu.exceptions.OperationalError: (_redis_down, UNAVAILABLE),
    boto.NoCredentialsError: (_no_credentials, UNAVAILABLE),
    boto.PartialCredentialsError: (_no_credentials, UNAVAILABLE),
    boto.ConnectionError: (_s3_down, UNAVAILABLE),
    httpx.TransportError: (_http_down, UNAVAILABLE),
    Exception: (_internal, FAILED),
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _row(exc: BaseException) -> tuple[Template, int] | None:
    for kind in type(exc).__mro__:
        if kind in EXITS:
            return EXITS[kind]
    return None


def outcome(exc: BaseException) -> tuple[str, int]:
    """What the command prints for ``exc`` (one line) and the exit code it ends with."""
    chosen = None
    for link in _chain(exc):
        row = _row(link)
        if row is not None and row[1] == UNAVAILABLE:
            chosen = link, row
            break
    if chosen is None:
        row = _row(exc)
        if row is None:  # a BaseException that is no Exception: not ours to translate
            raise exc
        chosen = exc, row
    link, (template, code) = chosen
    text = template.format(link) if isinstance(template, str) else template(link)
    return "vidqueue: " + " ".join(text.split()), code


def take_debug(argv: Sequence[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` was given before the command (or, but for ``sim``, anywhere), and
    the arguments without it."""
    args = list(argv)
    debug = False
    while args and args[0] == DEBUG_FLAG:
        debug = True
        args.pop(0)
    if args and args[0] != "sim" and DEBUG_FLAG in args:
        debug = True
        args = [a for a in args if a != DEBUG_FLAG]
    return debug, args


def guard(run: Callable[[], int], *, debug: bool) -> int:
    """Run a command; a failure becomes one line on stderr (a traceback too with ``debug``)."""
    try:
        return run()
    except Exception as exc:  # every failure is translated, by EXITS
        message, code = outcome(exc)
        if debug:
            traceback.print_exc()
        print(message, file=sys.stderr)
        return code
