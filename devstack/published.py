"""What a local stack tells its users: how to reach it, in ``{run_dir}/vidqueue.env``.

``vidqueue dev up`` writes it (``config.local_env``) once the stack is up; ``vidqueue dev env``
prints it as ``export`` lines. It holds everything a client on this machine needs: the API's
URL and a token it accepts, the webhook secret the workers sign with, Redis and S3 with their
credentials (for ``--direct`` and the Python ``Client``), the providers file, the run
directory itself (so ``vidqueue dev status|down`` find the stack from anywhere) and Flower.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from config import local_env
from config.settings import Settings
from devstack.catalogue import providers_path
from devstack.credentials import TOKEN_KEY, WEBHOOK_KEY
from devstack.ports import LOOPBACK, client_host

AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def api_url(settings: Settings) -> str:
    """Where a client on this machine reaches the stack's API."""
    return f"http://{client_host(settings.api_host)}:{settings.api_port}"


def flower_url(settings: Settings) -> str:
    return f"http://{LOOPBACK}:{settings.flower_port}/"


def values(settings: Settings, env: Mapping[str, str], run_dir: Path, cwd: Path) -> dict[str, str]:
    """The settings file's entries for a stack run with ``settings`` and ``env`` (the
    environment its services get, ``Stack.env``)."""
    tokens = sorted(settings.api_token_set)
    out = {
        "VIDQUEUE_API_URL": api_url(settings),
        TOKEN_KEY: tokens[0] if tokens else "",
        WEBHOOK_KEY: settings.webhook_secret,
        "VIDQUEUE_REDIS_URL": settings.redis_url,
        "VIDQUEUE_S3_ENDPOINT_URL": settings.s3_endpoint_url,
    }
    if settings.s3_public_endpoint_url:
        out["VIDQUEUE_S3_PUBLIC_ENDPOINT_URL"] = settings.s3_public_endpoint_url
    out |= {"VIDQUEUE_S3_BUCKET": settings.s3_bucket, "VIDQUEUE_S3_PREFIX": settings.s3_prefix}
    out |= {name: env.get(name, "") for name in AWS_KEYS}
    out |= {
        "VIDQUEUE_PROVIDERS_FILE": str(providers_path(settings, cwd)),
        "VIDQUEUE_RUN_DIR": str(run_dir.resolve()),
        "VIDQUEUE_FLOWER_URL": flower_url(settings),
        # The ports too, so what reads the settings (`vidqueue demo`, `dev status`) finds
        # this stack after `eval "$(vidqueue dev env)"`.
        "VIDQUEUE_API_HOST": settings.api_host,
        "VIDQUEUE_API_PORT": str(settings.api_port),
        "VIDQUEUE_SIM_PORT": str(settings.sim_port),
        "VIDQUEUE_FLOWER_PORT": str(settings.flower_port),
    }
    # Without a token or secret (``dev env`` before any ``dev up``) the line is left out.
    return {
        key: value for key, value in out.items() if value or key not in (TOKEN_KEY, WEBHOOK_KEY)
    }


def publish(settings: Settings, env: Mapping[str, str], run_dir: Path, cwd: Path) -> Path:
    """Write the settings file of this stack (mode 0600); returns its path."""
    return local_env.write(values(settings, env, run_dir, cwd), run_dir)
