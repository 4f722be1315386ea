"""vidqueue's workers: the pipeline, its Redis store and gate, provider adapters, Celery tasks.

The Celery app is reachable as ``workers.app`` so every role starts as ``celery -A workers …``.
It is imported lazily, so that the domain modules (``workers.domain.jobs``,
``workers.domain.errors`` …) can be used without building a Celery app.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from config.celery import app

        return app
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
