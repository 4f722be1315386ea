"""The providers file of a local stack whose simulator is not on the default port.

The shipped local catalogue, ``config/providers.toml``, points every provider at the simulator
on 127.0.0.1:8090. A stack started on other ports (``VIDQUEUE_SIM_PORT``, as tests and a second
stack do) would send its jobs to whatever listens on 8090 — another developer's simulator, or
nothing. So for such a stack this writes a copy of that file with the simulator's port into the
run directory and points the stack at it. A providers file of the user's own is left as it is.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from config.providers import resolve_path
from config.settings import Settings
from devstack.ports import LOOPBACK

FILE_NAME: Final = "providers.toml"
DEFAULT_SIM_PORT: Final[int] = Settings.model_fields["sim_port"].default


def shipped() -> Path:
    """The local catalogue installed with the package."""
    return Path(str(resources.files("config").joinpath(FILE_NAME))).resolve()


def providers_path(settings: Settings, cwd: Path | None = None) -> Path:
    """The providers file ``settings`` name, as an absolute path (a relative one is taken from
    ``cwd`` where it exists there, else as ``config.providers`` resolves it)."""
    candidate = Path(settings.providers_file)
    if not candidate.is_absolute() and cwd is not None and (cwd / candidate).exists():
        return (cwd / candidate).resolve()
    return resolve_path(settings.providers_file).resolve()


def for_sim_port(
    settings: Settings, run_dir: Path, cwd: Path | None = None, *, write: bool = True
) -> Settings:
    """``settings``, pointed at a copy of the shipped catalogue for its simulator port when
    that is not the default and the settings name the shipped catalogue (``write=False``:
    only where that copy goes, without writing it)."""
    source = providers_path(settings, cwd)
    if settings.sim_port == DEFAULT_SIM_PORT or source != shipped():
        return settings
    target = run_dir.resolve() / FILE_NAME
    if not write:
        return settings.model_copy(update={"providers_file": str(target)})
    text = source.read_text(encoding="utf-8").replace(
        f"//{LOOPBACK}:{DEFAULT_SIM_PORT}/", f"//{LOOPBACK}:{settings.sim_port}/"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        f"# Written by `vidqueue dev up` from {source.name}: the simulator runs on port "
        f"{settings.sim_port} here.\n{text}",
        encoding="utf-8",
    )
    return settings.model_copy(update={"providers_file": str(target)})
