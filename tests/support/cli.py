"""Running the ``vidqueue`` command as a user would: a subprocess, with a chosen environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.live import API_TOKEN, LiveStack

VIDQUEUE = str(Path(sys.executable).parent / "vidqueue")
# What boto3 could find credentials in; ``no_aws`` removes every one.
AWS_PREFIXES = ("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION", "AWS_PROFILE")


def run(
    env: Mapping[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VIDQUEUE, *args], env=dict(env), capture_output=True, text=True, timeout=timeout
    )


def direct_env(live: LiveStack, **extra: str) -> dict[str, str]:
    """The stack's own environment (Redis, S3, credentials): what ``--direct`` needs."""
    return {**live.stack.env, **extra}


def http_env(live: LiveStack, token: str | None = API_TOKEN, **extra: str) -> dict[str, str]:
    """Only what a remote user has: the API's URL and a token. No Redis or S3 settings, no
    AWS credentials anywhere (boto3's files and instance metadata are out of reach too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDQUEUE_", *AWS_PREFIXES))}
    home = Path(live.stack.run_dir) / "cli-home"
    home.mkdir(exist_ok=True)
    env.update(
        VIDQUEUE_API_URL=live.api_url,
        VIDQUEUE_RUN_DIR=str(home),  # no local settings file here
        # Were the HTTP path to touch Redis or S3 by mistake, it would fail.
        VIDQUEUE_REDIS_URL="redis://127.0.0.1:1/0",
        VIDQUEUE_S3_ENDPOINT_URL="http://127.0.0.1:1",
        AWS_SHARED_CREDENTIALS_FILE=str(home / "none"),
        AWS_CONFIG_FILE=str(home / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        HOME=str(home),
    )
    if token is not None:
        env["VIDQUEUE_API_TOKEN"] = token
    env.update(extra)
    return env
