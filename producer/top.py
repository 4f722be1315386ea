"""``vidqueue top``: the queue per provider and per API key, refreshed live in the terminal."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from config.settings import get_settings
from workers.deps import build
from workers.observe import Snapshot, snapshot

CLEAR = "\x1b[H\x1b[2J"


def render(snap: Snapshot) -> str:
    states = "  ".join(f"{s} {n}" for s, n in snap.jobs_by_state.items() if n)
    lines = [f"vidqueue  {time.strftime('%H:%M:%S')}   jobs: {states or 'none'}", ""]
    header = (
        f"{'provider':<12} {'key':<22} {'in flight':>11} {'waiting':>8} "
        f"{'submits/m':>9} {'polls/m':>8} {'429s/m':>7}"
    )
    lines += [header, "-" * len(header)]
    for p in snap.providers:
        for i, k in enumerate(p.keys):
            cap = f"{k.in_flight}/{k.cap}"
            if k.effective_cap < k.cap:
                cap += f" ({k.effective_cap:.1f})"
            if k.cooling:
                cap += " cool"
            waiting = str(p.waiting) if i == 0 else ""
            lines.append(
                f"{p.name if i == 0 else '':<12} {k.key_id:<22} {cap:>11} {waiting:>8} "
                f"{k.per_minute['submit']:>9.0f} {k.per_minute['poll']:>8.0f} "
                f"{k.per_minute['throttled']:>7.0f}"
            )
        if len(p.waiting_by_fair) > 1:
            shares = ", ".join(f"{f}: {n}" for f, n in sorted(p.waiting_by_fair.items()))
            lines.append(f"{'':<12} waiting by producer: {shares}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidqueue top", description=__doc__)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    args = parser.parse_args(argv)
    deps = build(get_settings())
    try:
        while True:
            text = render(snapshot(deps))
            if args.once:
                print(text)
                return 0
            sys.stdout.write(CLEAR + text + "\n")
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
