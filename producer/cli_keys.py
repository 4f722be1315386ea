"""Quitting a live view on a key: ``q`` read from stdin in cbreak mode, on a thread.

rich has no keyboard input, and neither click nor the standard library waits for a key
without blocking the view's refresh, so this small reader does: when stdin is a terminal it
is put in cbreak mode (keys arrive one at a time, unechoed; Ctrl-C still interrupts) and
restored on exit, even after an error. Elsewhere (a pipe) no key is read.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty
from types import TracebackType
from typing import Any, Final

QUIT_KEYS: Final = frozenset(b"qQ")
# How often the reader checks whether the view has ended.
POLL_S: Final = 0.1


class QuitKey:
    """``with QuitKey() as quit: ... quit.wait(seconds)`` — true once ``q`` was pressed."""

    def __init__(self) -> None:
        self.pressed = threading.Event()
        self._ended = threading.Event()
        self._fd = sys.stdin.fileno() if sys.stdin and sys.stdin.isatty() else None
        self._saved: list[Any] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> QuitKey:
        if self._fd is not None:
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
            self._thread = threading.Thread(target=self._read, name="quit-key", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._ended.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._fd is not None and self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; true (at once) when ``q`` is pressed."""
        return self.pressed.wait(seconds)

    def _read(self) -> None:
        assert self._fd is not None
        while not self._ended.is_set():
            ready, _, _ = select.select([self._fd], [], [], POLL_S)
            if not ready:
                continue
            data = os.read(self._fd, 32)
            if not data or QUIT_KEYS.intersection(data):
                self.pressed.set()
                return
