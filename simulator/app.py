"""The ASGI app: one registry per app instance, with every wire format and the media mounted.

A new provider gets its own module exposing ``router(registry)`` and is included here under its
own path prefix; it shares the registry (tasks, counters, RNG), the media routes and the control
API with the others. Wire formats whose vendor calls back (Kling, Ark, the gateway) also share one
:class:`~simulator.callbacks.Callbacks`, stopped when the app shuts down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from simulator import ark, control, gateway, kling, media, openai, zhipu
from simulator.callbacks import Callbacks
from simulator.options import SimOptions
from simulator.state import Clock, Registry


def create_app(options: SimOptions | None = None, *, clock: Clock | None = None) -> FastAPI:
    """A fresh simulator with in-memory state; ``clock`` lets tests skip real waiting."""
    registry = Registry(options or SimOptions(), clock)
    callbacks = Callbacks(registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await callbacks.close()

    app = FastAPI(
        title="vidqueue provider simulator",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.callbacks = callbacks
    app.include_router(zhipu.router(registry), prefix=zhipu.PREFIX)
    app.include_router(openai.router(registry), prefix=openai.PREFIX)
    app.include_router(gateway.router(registry, callbacks), prefix=gateway.PREFIX)
    app.include_router(ark.router(registry, callbacks), prefix=ark.PREFIX)
    app.include_router(kling.router(registry, callbacks), prefix=kling.PREFIX)
    app.include_router(media.files_router(registry))
    app.include_router(control.router(registry, callbacks))
    return app
