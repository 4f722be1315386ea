"""The mirror's throughput against boto3's ``upload_fileobj``, side by side in one run.

Starts its own SeaweedFS and a local HTTP source (a separate process serving a file of random
bytes with ``sendfile``), then copies the same bytes from the source into the same bucket
(after one warm-up copy), twice each, interleaved A B B A: (a) our path, ``mirror_url`` →
``Storage.upload_stream``; (b) boto3 ``upload_fileobj`` with its default ``TransferConfig`` on
the same client, reading the same source through httpx as a file object. Our peak RSS growth
for a 1 GiB object is measured in a fresh subprocess (``VmHWM`` against ``VmRSS`` before).

``python -m tests.bench_mirror [size_mib]`` prints the table; ``tests/bench.py`` calls
``mirror_vs_boto3``. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from config.settings import Settings
from devstack.ports import free_ports
from devstack.stack import Stack
from workers.io.storage import Storage
from workers.io.stream import mirror_url

MiB = 1024 * 1024
RSS_MIB = 1024
ROOT = Path(__file__).resolve().parents[1]
AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


class _Source(http.server.BaseHTTPRequestHandler):
    """GET /?bytes=N: the first N bytes of the served file, sent with sendfile."""

    path_to_serve = ""

    def do_GET(self) -> None:
        total = os.path.getsize(self.path_to_serve)
        size = min(int(self.path.partition("bytes=")[2] or total), total)
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with open(self.path_to_serve, "rb") as source:
            self.connection.sendfile(source, 0, size)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(path: str, port: int) -> None:
    _Source.path_to_serve = path
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Source)
    server.serve_forever()


class _HttpxFile:
    """An httpx response body as a read-only, non-seekable file (what upload_fileobj reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def read(self, n: int = -1) -> bytes:
        parts, have = [self._rest], len(self._rest)
        while n < 0 or have < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        if n < 0 or have <= n:
            self._rest = b""
            return b"".join(parts)
        last = parts[-1]
        cut = len(last) - (have - n)
        parts[-1], self._rest = last[:cut], last[cut:]
        return b"".join(parts)


def _ours(storage: Storage, url: str, expected: str) -> float:
    with httpx.Client() as http:
        started = time.perf_counter()
        stored = mirror_url(http, storage, url=url, headers={}, job_id="bench", what="video")
        elapsed = time.perf_counter() - started
    assert stored.sha256 == expected, "our upload stored other bytes"
    return stored.size / MiB / elapsed


def _boto3(storage: Storage, url: str, size: int) -> float:
    key = storage.object_key("bench-boto3", "video.mp4")
    with httpx.Client() as http:
        started = time.perf_counter()
        with http.stream("GET", url) as response:
            response.raise_for_status()
            storage.client.upload_fileobj(
                _HttpxFile(response.iter_bytes()),  # type: ignore[arg-type]
                storage.bucket,
                key,
                ExtraArgs={"ContentType": "video/mp4"},
            )
        elapsed = time.perf_counter() - started
    assert storage.head(key)["ContentLength"] == size, "boto3 stored another size"
    return size / MiB / elapsed


def _peak_rss_delta_mib(settings: Settings, url: str) -> float:
    """Our peak RSS growth while mirroring ``url``, in a fresh interpreter."""
    argv = [sys.executable, "-m", "tests.bench_mirror", "--rss", url]
    argv += [settings.s3_endpoint_url, settings.s3_bucket]
    answer = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    return float(json.loads(answer.stdout.strip().splitlines()[-1])["delta_mib"])


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def _rss_child(url: str, endpoint: str, bucket: str) -> None:
    storage = Storage(Settings(s3_endpoint_url=endpoint, s3_bucket=bucket))
    storage.ensure_bucket()
    with httpx.Client() as http:  # warm up: botocore's models and both upload paths loaded
        mirror_url(http, storage, url=f"{url}?bytes=1000", headers={}, job_id="w", what="video")
        two_parts = f"{url}?bytes={9 * MiB}"
        mirror_url(http, storage, url=two_parts, headers={}, job_id="w", what="video")
        before = _status_kib("VmRSS")
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # VmHWM := VmRSS from here on (else it counts the warm-up too)
        big = f"{url}?bytes={RSS_MIB * MiB}"
        mirror_url(http, storage, url=big, headers={}, job_id="r", what="video")
    peak = _status_kib("VmHWM")
    print(json.dumps({"before_kib": before, "peak_kib": peak, "delta_mib": (peak - before) / 1024}))


def _wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the HTTP source did not start")


def _fast_dir() -> str | None:
    """SeaweedFS's data goes to tmpfs when it has room: the bench compares two clients, and a
    disk flushing gigabytes of earlier runs would make the later ones slower, whichever ran."""
    try:
        shm = os.statvfs("/dev/shm")
    except OSError:
        return None
    return "/dev/shm" if shm.f_bavail * shm.f_frsize > 8 * 1024 * MiB else None


def _source(path: Path, size_mib: int) -> str:
    """Write enough random bytes for both measures; the sha256 of the first ``size_mib`` MiB."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for n in range(max(size_mib, RSS_MIB)):
            block = os.urandom(MiB)
            out.write(block)
            if n < size_mib:
                digest.update(block)
    return digest.hexdigest()


def _settings(run_dir: Path) -> Settings:
    redis_port, s3_port, sim_port, api_port, flower_port = free_ports(5)
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
        run_dir=str(run_dir),
        sim_port=sim_port,
        api_port=api_port,
        flower_port=flower_port,
    )


def mirror_vs_boto3(size_mib: int = 512) -> list[tuple[str, str, str]]:
    """Rows (measure, result, goal): ours and boto3 in MiB/s, their ratio, our RSS for 1 GiB."""
    tmp = Path(tempfile.mkdtemp(prefix="vidqueue-bench-mirror-"))
    run_dir = Path(tempfile.mkdtemp(prefix="vidqueue-bench-mirror-", dir=_fast_dir()))
    size, expected = size_mib * MiB, _source(tmp / "source.bin", size_mib)
    settings, [http_port] = _settings(run_dir), free_ports(1)
    argv = [sys.executable, "-m", "tests.bench_mirror", "--serve", str(tmp / "source.bin")]
    server = subprocess.Popen([*argv, str(http_port)], cwd=ROOT)
    try:
        with Stack(settings, {}, run_dir) as stack:
            os.environ.update({name: stack.env[name] for name in AWS})
            stack.start_s3()
            _wait_for_port(http_port)
            storage = Storage(settings)
            storage.ensure_bucket()
            source = f"http://127.0.0.1:{http_port}/source.bin"
            url = f"{source}?bytes={size}"
            _ours(storage, url, expected)  # warm-up: weed grows its first volumes
            # A B B A: a drift in the machine's load hits both paths alike.
            ours, boto = [_ours(storage, url, expected)], [_boto3(storage, url, size)]
            boto.append(_boto3(storage, url, size))
            ours.append(_ours(storage, url, expected))
            rss = _peak_rss_delta_mib(settings, source)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return _rows(size_mib, ours, boto, rss)


def _rows(
    size_mib: int, ours: list[float], boto: list[float], rss: float
) -> list[tuple[str, str, str]]:
    runs = ", ".join
    ratios = [o / b for o, b in zip(ours, boto, strict=True)]
    # Same bytes each time: the ratio of the total times, boto3's over ours.
    overall = sum(1 / v for v in boto) / sum(1 / v for v in ours)
    return [
        (
            f"mirror {size_mib} MiB: ours (mirror_url)",
            runs(f"{v:.0f}" for v in ours) + " MiB/s",
            "",
        ),
        (
            f"mirror {size_mib} MiB: boto3 upload_fileobj (default TransferConfig)",
            runs(f"{v:.0f}" for v in boto) + " MiB/s",
            "",
        ),
        (
            "mirror: ours ÷ boto3, run by run (both runs)",
            runs(f"{r:.2f}" for r in ratios) + f" ({overall:.2f})",
            "≥ 0.9",
        ),
        (f"mirror {RSS_MIB} MiB: our peak RSS growth", f"{rss:.0f} MiB", "≤ 96 MiB"),
    ]


def main(args: list[str]) -> int:
    if args[:1] == ["--serve"]:
        _serve(args[1], int(args[2]))
        return 0
    if args[:1] == ["--rss"]:
        _rss_child(*args[1:4])
        return 0
    rows = mirror_vs_boto3(int(args[0]) if args else 512)
    width = max(len(r[0]) for r in rows)
    for name, result, goal in rows:
        print(f"{name:<{width}}  {result:<22} {goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
