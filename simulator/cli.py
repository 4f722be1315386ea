"""``python -m simulator`` / ``vidqueue sim``: run the simulator under uvicorn.

One flag per :class:`SimOptions` field is derived from the model, so options are declared once.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError

from simulator.app import create_app
from simulator.options import SimOptions


def _flag_type(annotation: object) -> type[int] | type[float]:
    """``int`` for integer fields (including ``int | None``), ``float`` for the rest."""
    return int if annotation in (int, int | None) else float


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidqueue sim",
        description="A fake video-generation provider speaking each provider's wire format.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--json", action="store_true", help="print where it serves and its options as one JSON line"
    )
    parser.add_argument("--port", type=int, default=8090, help="bind port (default 8090)")
    for name, info in SimOptions.model_fields.items():
        flag, text = f"--{name.replace('_', '-')}", f"{info.description} (default {info.default})"
        if info.annotation is bool:  # --callback-reorder / --no-callback-reorder
            action = argparse.BooleanOptionalAction
            parser.add_argument(flag, dest=name, action=action, default=None, help=text)
        else:
            kind = _flag_type(info.annotation)
            parser.add_argument(flag, dest=name, type=kind, default=None, help=text)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[str, int, SimOptions]:
    """Host, port and validated options; exits with a usage error on a bad value."""
    host, port, options, _ = _parse(argv)
    return host, port, options


def _parse(argv: Sequence[str] | None) -> tuple[str, int, SimOptions, bool]:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    given = {name: args[name] for name in SimOptions.model_fields if args.get(name) is not None}
    try:
        options = SimOptions.model_validate(given)
    except ValidationError as exc:
        parser.error(str(exc))
    return str(args["host"]), int(args["port"]), options, bool(args["json"])


def main(argv: list[str] | None = None) -> int:
    """Say where it serves (``--json``: one JSON line), then serve until interrupted; single
    process, warnings only, no access log."""
    host, port, options, as_json = _parse(argv)
    url = f"http://{host}:{port}"
    if as_json:
        print(json.dumps({"url": url, "options": options.model_dump(mode="json")}), flush=True)
    else:
        print(f"simulator on {url} (every provider's wire format; Ctrl-C stops it)", flush=True)
    uvicorn.run(create_app(options), host=host, port=port, log_level="warning", access_log=False)
    return 0
