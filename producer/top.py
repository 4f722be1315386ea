"""``vidqueue top``: the queue per provider and API key, and what waits per tenant, live.

It reads Redis directly (``workers.observe.snapshot``, the same figures as ``/metrics``), as
operators run it in-cluster: it needs the workers' ``VIDQUEUE_REDIS_URL`` and providers file,
no API token, and keeps working while the API is down, which is when it is most wanted.

On a terminal the view redraws every ``--interval`` seconds (rich.live, on the alternate
screen) until ``q`` or Ctrl-C; elsewhere, or with ``--once``, one snapshot is printed.
``--json`` prints snapshots as JSON (one object per line without ``--once``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import click
from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from config.settings import get_settings
from producer.cli_keys import QuitKey
from producer.progress import console
from workers.deps import build
from workers.observe import Snapshot, snapshot


def keys_table(snap: Snapshot) -> Table:
    """One row per provider and key: slots in use of the cap, waiting jobs, request rates."""
    table = Table(box=box.SIMPLE_HEAD, title="per provider and key", title_justify="left")
    for name in ("provider", "key"):
        table.add_column(name, no_wrap=True)
    for name in ("in flight", "waiting", "submits/m", "polls/m", "429s/m"):
        table.add_column(name, justify="right", no_wrap=True)
    for p in snap.providers:
        for i, k in enumerate(p.keys):
            cap = f"{k.in_flight}/{k.cap}"
            if k.effective_cap < k.cap:
                cap += f" ({k.effective_cap:.1f})"
            if k.cooling:
                cap += " cool"
            table.add_row(
                p.name if i == 0 else "",
                k.key_id,
                cap,
                str(p.waiting) if i == 0 else "",
                f"{k.per_minute.get('submit', 0):.0f}",
                f"{k.per_minute.get('poll', 0):.0f}",
                f"{k.per_minute.get('throttled', 0):.0f}",
                end_section=i == len(p.keys) - 1,
            )
    return table


def tenants_table(snap: Snapshot) -> Table:
    """Waiting jobs per provider and tenant (the fair-share key: a token's name, or the job's
    ``labels.tenant``)."""
    table = Table(box=box.SIMPLE_HEAD, title="waiting per tenant", title_justify="left")
    table.add_column("provider", no_wrap=True)
    table.add_column("tenant", no_wrap=True)
    table.add_column("waiting", justify="right", no_wrap=True)
    for p in snap.providers:
        for tenant, n in sorted(p.waiting_by_fair.items()):
            if n:
                table.add_row(p.name, tenant, str(n))
    if not table.row_count:
        table.caption = "nothing waiting"
    return table


def render(snap: Snapshot, *, live: bool = False) -> RenderableType:
    states = "  ".join(f"{s} {n}" for s, n in snap.jobs_by_state.items() if n)
    head = f"vidqueue top  {time.strftime('%H:%M:%S')}   jobs: {states or 'none'}"
    parts: list[RenderableType] = [Text(head), keys_table(snap), tenants_table(snap)]
    if live:
        parts.append(Text("q or Ctrl-C quits", style="dim"))
    return Group(*parts)


def as_json(snap: Snapshot) -> str:
    """The snapshot as one JSON object (its dataclasses' fields; tuple keys as ``a/b``)."""
    return json.dumps(_plain(dataclasses.asdict(snap)), sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            "/".join(map(str, k)) if isinstance(k, tuple) else str(k): _plain(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@click.command(short_help="The queue per provider, key and tenant, live.")
@click.option(
    "--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
    metavar="SECONDS", help="Seconds between refreshes.",
)  # fmt: skip
@click.option("--once", is_flag=True, help="Print one snapshot and exit.")
@click.option(
    "--json", "json_out", is_flag=True, help="Print JSON: one snapshot (with --once), or a line"
    " per refresh.",
)  # fmt: skip
def top(interval: float, once: bool, json_out: bool) -> int:
    """The queue per provider and key, and waiting jobs per tenant, live (q quits).

    Reads Redis directly, with the workers' settings (VIDQUEUE_REDIS_URL, the providers
    file).
    """
    deps = build(get_settings())
    out = console()
    try:
        if json_out:
            while True:
                print(as_json(snapshot(deps)), flush=True)
                if once:
                    return 0
                time.sleep(interval)
        if once or not out.is_terminal:
            out.print(render(snapshot(deps, metrics=False)))
            return 0
        with (
            QuitKey() as quit_key,
            Live(render(snapshot(deps, metrics=False), live=True), console=out, screen=True,
                 auto_refresh=False) as view,
        ):  # fmt: skip
            while not quit_key.wait(interval):
                view.update(render(snapshot(deps, metrics=False), live=True), refresh=True)
    except KeyboardInterrupt:
        pass
    return 0
