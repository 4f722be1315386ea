"""The ``vidqueue`` command line's shared flags (click options), and the job spec they describe.

``job_target`` adds the flags that choose the path (``--api-url``, ``--token``, ``--direct``,
``--producer``) and hands the command one ``Target``; ``json_flag`` is ``--json``;
``spec_flags`` are submit's. Labels take one syntax everywhere: ``--label key=value``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from producer.cli_backend import Jobs, Target
from producer.cli_errors import BadArgument
from workers.domain.errors import InvalidSpec

F = TypeVar("F", bound=Callable[..., Any])

SPEC_TEXT: Final = ("provider", "model", "prompt", "size", "quality", "negative_prompt")
SPEC_MORE: Final = ("callback_url", "idempotency_key")
INT_FLAGS: Final = ("duration", "fps", "seed", "priority")
URL_PREFIXES: Final = ("http://", "https://", "data:", "upload:")


def key_values(
    items: Sequence[str], *, flag: str, as_json: bool = False, example: str = "team=growth"
) -> dict[str, Any]:
    """``KEY=VALUE`` items as a dict (values parsed as JSON where they are, with ``as_json``);
    a malformed one is a ``BadArgument`` naming ``flag``."""
    out: dict[str, Any] = {}
    for item in items:
        key, found, value = item.partition("=")
        if not found or not key.strip():
            raise BadArgument(f"{flag} {item!r}: expected KEY=VALUE (e.g. {flag} {example})")
        if as_json:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value
        else:
            out[key] = value
    return out


def list_labels(items: Sequence[str]) -> dict[str, str]:
    """``--label`` of ``list``: as submit's; a key cannot hold ``:`` (the API's own syntax
    ``key:value`` splits there)."""
    labels = key_values(items, flag="--label")
    for key in labels:
        if ":" in key:
            raise BadArgument(f"--label {key!r}: a label key to filter on cannot contain ':'")
    return labels


# -- options -------------------------------------------------------------------------------


def json_flag(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")(f)


def job_target(f: F) -> F:
    """The path flags; the command receives them as one ``target: Target``."""

    @functools.wraps(f)
    def wrapper(
        *args: Any,
        api_url: str | None,
        token: str | None,
        direct: bool,
        producer: str | None,
        **kwargs: Any,
    ) -> Any:
        target = Target(api_url=api_url, token=token, direct=direct, producer=producer)
        return f(*args, target=target, **kwargs)

    options = [
        click.option(
            "--api-url",
            envvar="VIDQUEUE_API_URL",
            metavar="URL",
            help="The HTTP API [env VIDQUEUE_API_URL; else the local stack's .run/vidqueue.env;"
            " else http://127.0.0.1:8000].",
        ),
        click.option(
            "--token",
            envvar="VIDQUEUE_API_TOKEN",
            metavar="TOKEN",
            help="Bearer token for the API [env VIDQUEUE_API_TOKEN].",
        ),
        click.option(
            "--direct",
            is_flag=True,
            help="Use Redis and S3 directly (in-cluster, with the workers' settings), not the API.",
        ),
        click.option(
            "--producer",
            metavar="NAME",
            help="With --direct: the producer identity jobs belong to (default: cli).",
        ),
    ]
    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def timeout_flag(default: float) -> Callable[[F], F]:
    return click.option(
        "--timeout",
        type=float,
        default=default,
        show_default=True,
        metavar="SECONDS",
        help="Give up waiting after this long (exit 1).",
    )


def spec_flags(f: F) -> F:
    """submit's flags: the job spec."""
    options = [
        click.option("--provider", required=True, help="A provider of the providers file."),
        click.option("--model", required=True),
        click.option("--prompt"),
        click.option(
            "--image",
            multiple=True,
            metavar="PATH|URL",
            help="A local PNG/JPEG (uploaded), an http(s) URL or a data: URI; twice = first and"
            " last frame.",
        ),
        click.option("--size", metavar="WxH"),
        click.option("--quality"),
        click.option("--negative-prompt"),
        click.option("--callback-url", metavar="URL", help="Webhook for the job's end."),
        click.option("--idempotency-key", metavar="KEY", help="Makes a retried submit safe."),
        *(click.option(f"--{name}", type=int) for name in INT_FLAGS),
        click.option("--with-audio/--no-with-audio", default=None),
        click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Repeatable."),
        click.option(
            "--option",
            "options",
            multiple=True,
            metavar="KEY=JSON",
            help="Provider-specific pass-through; repeatable.",
        ),
    ]
    decorated: Any = f
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


# -- the spec ------------------------------------------------------------------------------


def spec_from_flags(flags: Mapping[str, Any], jobs: Jobs | None = None) -> dict[str, Any]:
    """The job spec ``spec_flags`` describe; a local ``--image`` file is uploaded with
    ``jobs`` (through the API, or to S3 with ``--direct``)."""
    spec: dict[str, Any] = {}
    for name in (*SPEC_TEXT, *SPEC_MORE, *INT_FLAGS):
        if flags.get(name) is not None:
            spec[name] = flags[name]
    images = [image_ref(value, jobs) for value in flags.get("image") or ()]
    if images:
        spec["image"] = images[0] if len(images) == 1 else images
    if flags.get("with_audio") is not None:
        spec["with_audio"] = flags["with_audio"]
    if flags.get("labels"):
        spec["labels"] = key_values(flags["labels"], flag="--label")
    if flags.get("options"):
        spec["options"] = key_values(
            flags["options"], flag="--option", as_json=True, example="user_id=42"
        )
    return spec


def image_ref(value: str, jobs: Jobs | None) -> str:
    """A URL as it is; a local file uploaded, as its ``upload:`` reference."""
    if value.startswith(URL_PREFIXES):
        return value
    path = Path(value)
    if not path.is_file():
        raise InvalidSpec("image", f"{value}: no such file (nor an http(s) or data: URL)")
    if jobs is None:
        raise InvalidSpec("image", "a local file needs uploading")
    return jobs.upload_image(path)
