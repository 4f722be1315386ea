"""The HTTP API in process (FastAPI's TestClient) on the live stack's Redis, and request helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from fastapi.testclient import TestClient

from config.settings import get_settings
from devstack.env import settings_env
from producer import api, web
from tests.support.live import API_TOKEN, KEYS, LiveStack

AUTH = {"authorization": f"Bearer {API_TOKEN}"}


GOOD = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a lighthouse at dusk"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@contextmanager
def in_process_api(
    live: LiveStack, db: int = 15, tokens_file: str = ""
) -> Iterator[tuple[TestClient, redis.Redis]]:
    """The API app in this process, on database ``db`` of the live Redis, the live S3 and the
    live providers file, accepting ``TOKENS`` (each a producer) and those of ``tokens_file``
    (``VIDQUEUE_API_TOKENS_FILE``). The database is emptied."""
    base = live.settings.redis_url.rsplit("/", 1)[0]
    plain = ",".join((API_TOKEN, *TOKENS))
    settings = live.settings.model_copy(
        update={"redis_url": f"{base}/{db}", "api_tokens": plain, "api_tokens_file": tokens_file}
    )
    store = redis.Redis.from_url(settings.redis_url)
    store.flushdb()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**settings_env(settings), **KEYS}.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        web._client = None
        try:
            yield TestClient(api.app, raise_server_exceptions=False), store
        finally:
            get_settings.cache_clear()
            web._client = None
            store.flushdb()


TOKENS = ("token-a", "token-b")
