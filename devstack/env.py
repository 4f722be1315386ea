"""The environment and places every service of one stack shares."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from config.settings import Settings

# Credentials and keys of the local stack only; a real deployment sets its own.
LOCAL_DEFAULTS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "vidqueue-local",
    "AWS_SECRET_ACCESS_KEY": "vidqueue-local-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "SIM_ZHIPU_KEY": "sim-zhipu-key-1",
    "SIM_OPENAI_KEY": "sim-openai-key-1",
    "SIM_GATEWAY_KEY": "sim-gateway-key-1",
    "SIM_ARK_KEY": "sim-ark-key-1",
    "SIM_KLING_KEY": "sim-kling-access-1:sim-kling-secret-1",
    # Log lines reach the log file (and readiness checks) as they are written.
    "PYTHONUNBUFFERED": "1",
}


@dataclass(frozen=True)
class StackContext:
    """Where a stack keeps its state, where its services run, and the environment they get."""

    settings: Settings
    run_dir: Path
    cwd: Path
    env: Mapping[str, str]


def make_context(
    settings: Settings,
    run_dir: Path,
    overrides: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> StackContext:
    run_dir = run_dir.resolve()
    env = stack_env(settings, run_dir, overrides)
    return StackContext(settings=settings, run_dir=run_dir, cwd=cwd or project_root(), env=env)


def stack_env(
    settings: Settings,
    run_dir: Path,
    overrides: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``base`` (default: this process's environment), then ``overrides``, then the local
    defaults for whatever is still unset or empty, then every setting as ``VIDQUEUE_*``.

    Settings win over everything: the stack chose its ports from them, so its services must
    read the same values (a test stack must never reach the dev stack's Redis by accident).
    """
    env = dict(os.environ if base is None else base)
    env.update(overrides or {})
    for name, value in LOCAL_DEFAULTS.items():
        if not env.get(name):
            env[name] = value
    env.update(settings_env(settings))
    env["VIDQUEUE_RUN_DIR"] = str(run_dir)
    return env


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the ``VIDQUEUE_*`` variables that would reproduce them."""
    prefix = str(settings.model_config.get("env_prefix", "VIDQUEUE_"))
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        text = value if isinstance(value, str) else json.dumps(value)
        env[f"{prefix}{name.upper()}"] = text
    return env


def project_root() -> Path:
    """The source tree this package lives in (an editable install), else the current directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def venv_tool(name: str) -> tuple[str, ...]:
    """A console script of this interpreter's environment, or ``python -m name`` without one."""
    script = Path(sys.executable).parent / name
    return (str(script),) if script.is_file() else (sys.executable, "-m", name)
