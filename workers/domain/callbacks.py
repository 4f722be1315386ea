"""Provider callbacks: each job's callback URL and token, and what a callback's body hints.

A callback is a hint, never the truth (docs/callbacks.md): a valid one only makes vidqueue poll
the job now, through the normal poll step, and the job's state comes from that poll. So the body
is read for one thing only: whether it claims the task is still working, in which case polling
now would learn nothing (the safety polls still run). Anything else — a final status, a shape
we do not know (the providers' callback payloads are not confirmed by their documentation),
no JSON at all — polls now. Providers do not sign their callbacks; the per-job token in the URL
is what authenticates one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Final, Literal
from urllib.parse import quote

from config.providers import ProviderConfig
from config.settings import Settings

ROUTE: Final = "/v1/callbacks"
# Status words that mean "still working", as Kling, Ark, Vidu and the gateway write them.
WORKING: Final = frozenset(
    {"submitted", "queued", "queueing", "created", "pending", "processing", "running",
     "in_progress", "not_start"}
)  # fmt: skip
STATUS_KEYS: Final = ("task_status", "status", "state")

Hint = Literal["working", "poll"]


def base_url(config: ProviderConfig, settings: Settings) -> str:
    """Where providers reach this provider's callbacks ('' when callbacks are not armed)."""
    return config.callback_base_url or settings.public_base_url


def token(secret: str, provider: str, job_id: str) -> str:
    """The job's callback token: an HMAC of the provider and job id under the server secret
    (unguessable without it, and different for every job and provider)."""
    mac = hmac.new(secret.encode(), f"{provider}/{job_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def token_ok(secret: str, provider: str, job_id: str, given: str) -> bool:
    """Whether ``given`` is the job's token (compared in constant time)."""
    if not secret:
        return False
    return hmac.compare_digest(token(secret, provider, job_id).encode(), given.encode())


def url(base: str, provider: str, job_id: str, secret: str) -> str:
    """The URL a provider calls back: ``{base}/v1/callbacks/{provider}/{job id}/{token}``."""
    path = f"{quote(provider, safe='')}/{quote(job_id, safe='')}/{token(secret, provider, job_id)}"
    return f"{base.rstrip('/')}{ROUTE}/{path}"


def hint(body: bytes) -> Hint:
    """``working`` when the body says the task is still working; ``poll`` otherwise."""
    try:
        data = json.loads(body)
    except ValueError:
        return "poll"
    for obj in (data, data.get("data") if isinstance(data, dict) else None):
        if not isinstance(obj, dict):
            continue
        for name in STATUS_KEYS:
            value = obj.get(name)
            if isinstance(value, str):
                return "working" if value.strip().lower() in WORKING else "poll"
    return "poll"
