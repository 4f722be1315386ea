"""Settings for a private stack on free ports, as every benchmark starts one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from config.settings import Settings
from devstack.env import LOCAL_DEFAULTS
from devstack.ports import free_ports


def bench_settings(prefix: str, providers: Callable[[str], str], **overrides: Any) -> Settings:
    """Settings of a stack of its own under a new temporary folder (its ``run_dir``).

    ``providers`` turns the simulator's base URL into the providers file's text. The local
    stack's S3 credentials are put into the environment, where boto3 reads them.
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    redis_port, s3_port, sim_port, api_port, flower_port = free_ports(5)
    (tmp / "providers.toml").write_text(providers(f"http://127.0.0.1:{sim_port}"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        os.environ[name] = LOCAL_DEFAULTS[name]
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        providers_file=str(tmp / "providers.toml"),
        s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
        sim_port=sim_port,
        api_port=api_port,
        flower_port=flower_port,
        run_dir=str(tmp / "run"),
        **overrides,
    )


def sim_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.sim_port}"
