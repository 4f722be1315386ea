"""Filling providers' free slots after the API's enqueues, coalesced.

The create routes answer first and dispatch after (a dispatch is a Redis script and a Celery
message per provider): a burst of enqueues then costs one dispatch per provider, not one per
request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from weakref import WeakKeyDictionary

log = logging.getLogger("vidqueue.client")


class Dispatches:
    """Fills providers' free slots after enqueues, on the event loop, once for a burst: a
    dispatch asked for starts within ``linger_s``, after every enqueue that asked for it.
    (Should it fail, or the loop end first, the sweep fills free slots too.)"""

    def __init__(self, dispatch: Callable[[list[str]], None], linger_s: float = 0.005) -> None:
        self.dispatch = dispatch
        self.linger_s = linger_s
        self._pending: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, None]]
        self._pending = WeakKeyDictionary()

    async def soon(self, providers: Iterable[str]) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending.setdefault(loop, {})
        if not pending:
            loop.call_later(self.linger_s, self._run, loop)
        pending.update(dict.fromkeys(providers))

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        providers = list(self._pending.pop(loop, {}))
        try:
            self.dispatch(providers)
        except Exception:
            log.exception("dispatch after enqueue failed (providers %s)", providers)
