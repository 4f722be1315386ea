"""Loopback port checks: is a port free, and a few free ones at once."""

from __future__ import annotations

import contextlib
import random
import socket

LOOPBACK = "127.0.0.1"


def client_host(bind_host: str) -> str:
    """Where to reach a server bound to ``bind_host`` from this machine."""
    return LOOPBACK if bind_host in ("0.0.0.0", "", "::") else bind_host


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on ``host:port`` now.

    SO_REUSEADDR mirrors what servers set, so a port held only by TIME_WAIT connections of an
    earlier run counts as free while one with a listener (on this or any address) does not.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports that were free a moment ago (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port_pairs(count: int, offset: int = 10_000, low: int = 10_000) -> list[int]:
    """``count`` distinct ports ``p`` with both ``p`` and ``p + offset`` free.

    Taken from [low, low + offset), so no port of a pair can equal one of another pair, and
    below Linux's ephemeral range (32768+), where outgoing connections take their ports.
    """
    chosen: list[int] = []
    for _ in range(1000):
        port = random.randrange(low, low + offset)
        if port not in chosen and port_is_free(port) and port_is_free(port + offset):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise OSError(f"found only {len(chosen)} of {count} free port pairs above {low}")
