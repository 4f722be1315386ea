"""A fault proxy for S3: a small asyncio HTTP/1.1 reverse proxy on loopback that resets
connections, answers 500 ``InternalError`` or stalls requests, at rates changeable at runtime.

    python -m devstack.faultproxy --port 9000 --upstream http://127.0.0.1:8333 --error-rate 0.05

The pipeline's S3 client talks to it (``VIDQUEUE_S3_ENDPOINT_URL``) while presigned URLs keep the
real endpoint (``VIDQUEUE_S3_PUBLIC_ENDPOINT_URL``); ``Stack.start_s3_proxy`` wires that up.
Requests go upstream byte for byte, ``Host`` included, so SigV4 signatures stay valid; each one
gets its own upstream connection (S3 servers close idle ones on their own schedule).

Faults, one roll per request:

- ``reset``: the client's connection is reset (RST), half the time before the request is
  forwarded, half the time after S3 has handled it (its answer is lost);
- ``error_500``: S3's ``InternalError`` without forwarding anything;
- ``stall``: the request waits ``stall_s`` before it is forwarded.

Control (never faulted; S3 bucket names cannot contain ``_``, so no bucket path collides):
``GET /_proxy/stats`` → ``{"requests", "faults": {kind: n}, "options"}``,
``POST /_proxy/options`` with a JSON object of options to change, ``POST /_proxy/reset``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devstack.ports import LOOPBACK

CONTROL: Final = "/_proxy/"
FAULTS: Final = ("reset", "error_500", "stall")
COPY_BYTES: Final = 64 * 1024
INTERNAL_ERROR: Final = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message>"
    b"<Resource>injected by the vidqueue fault proxy</Resource></Error>"
)


class ProxyOptions(BaseModel):
    """How often each fault is injected (probabilities per request) and how long a stall is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reset_rate: float = Field(default=0.0, ge=0, le=1, description="chance of a reset")
    error_rate: float = Field(default=0.0, ge=0, le=1, description="chance of a 500")
    stall_rate: float = Field(default=0.0, ge=0, le=1, description="chance of a stall")
    stall_s: float = Field(default=2.0, ge=0, description="how long a stalled request waits")
    seed: int | None = Field(default=None, description="seed for the RNG (default: random)")


@dataclass(frozen=True)
class Head:
    """The start line and headers of one HTTP/1.1 message, as received."""

    start: str
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def without(self, name: str) -> Head:
        return Head(self.start, tuple((k, v) for k, v in self.headers if k.lower() != name))

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0].upper()

    @property
    def target(self) -> str:
        parts = self.start.split(" ")
        return parts[1] if len(parts) > 1 else ""

    @property
    def status(self) -> int:
        parts = self.start.split(" ")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    @property
    def closes(self) -> bool:
        return (self.get("connection") or "").lower() == "close"

    def encode(self) -> bytes:
        lines = [self.start, *(f"{k}: {v}" for k, v in self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """The next message head, or None at a clean end of the connection."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise
    start, *lines = raw[:-4].decode("latin-1").split("\r\n")
    pairs = (line.split(":", 1) for line in lines if ":" in line)
    return Head(start, tuple((k.strip(), v.strip()) for k, v in pairs))


async def copy_exact(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, n: int
) -> None:
    while n > 0:
        data = await reader.read(min(COPY_BYTES, n))
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(data)
        if writer is not None:
            writer.write(data)
            await writer.drain()


async def copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
    def put(data: bytes) -> None:
        if writer is not None:
            writer.write(data)

    while True:
        line = await reader.readuntil(b"\r\n")
        put(line)
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                put(trailer)
            put(b"\r\n")
            return
        await copy_exact(reader, writer, size + 2)


async def copy_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    head: Head,
    *,
    response: bool = False,
) -> bool:
    """Copy the body ``head`` announces (``writer`` None: discard it). True when the body ran
    to the end of the connection, which then cannot carry another message."""
    if "chunked" in (head.get("transfer-encoding") or "").lower():
        await copy_chunked(reader, writer)
        return False
    length = head.get("content-length")
    if length is not None:
        await copy_exact(reader, writer, int(length))
        return False
    if not response:
        return False
    while data := await reader.read(COPY_BYTES):
        if writer is not None:
            writer.write(data)
            await writer.drain()
    return True


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN, as a crashed load balancer would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _message(status: str, body: bytes, content_type: str, *, close: bool = False) -> bytes:
    head = [
        f"HTTP/1.1 {status}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
    ]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class FaultProxy:
    """One proxy: its upstream, its options and its counters (all on one event loop)."""

    def __init__(self, upstream: tuple[str, int], options: ProxyOptions | None = None) -> None:
        self.upstream = upstream
        self.options = options or ProxyOptions()
        self.rng = random.Random(self.options.seed)
        self.counters: Counter[str] = Counter()

    def stats(self) -> dict[str, object]:
        return {
            "requests": self.counters["requests"],
            "faults": {kind: self.counters[kind] for kind in FAULTS},
            "options": self.options.model_dump(),
        }

    def pick(self) -> str | None:
        """At most one fault for this request, counted."""
        o = self.options
        roll = self.rng.random()
        for kind, rate in zip(FAULTS, (o.reset_rate, o.error_rate, o.stall_rate), strict=True):
            if roll < rate:
                self.counters[kind] += 1
                return kind
            roll -= rate
        return None

    async def serve(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self.handle, host, port)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection, request after request."""
        try:
            while (request := await read_head(reader)) is not None:
                if request.target.startswith(CONTROL):
                    await self._control(request, reader, writer)
                elif not await self._forward(request, reader, writer):
                    return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a client or S3 went away mid-message: nothing more to do with this one
        finally:
            writer.close()

    async def _forward(
        self, request: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Pass one request upstream and its answer back; False when the connection is done."""
        self.counters["requests"] += 1
        fault = self.pick()
        expect = (request.get("expect") or "").lower() == "100-continue"
        if fault == "error_500":
            if not expect:
                await copy_body(reader, None, request)
            writer.write(
                _message("500 Internal Server Error", INTERNAL_ERROR, "application/xml", close=True)
            )
            await writer.drain()
            return False
        if fault == "reset" and self.rng.random() < 0.5:
            reset(writer)
            return False
        if fault == "stall":
            await asyncio.sleep(self.options.stall_s)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            await copy_body(reader, None, request)
            writer.write(
                _message("502 Bad Gateway", b"S3 is unreachable", "text/plain", close=True)
            )
            await writer.drain()
            return False
        try:
            if expect:  # answered here, so the body follows at once and S3 never waits for it
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request = request.without("expect")
            up_writer.write(request.encode())
            await copy_body(reader, up_writer, request)
            answer = await read_head(up_reader)
            while answer is not None and 100 <= answer.status < 200:
                answer = await read_head(up_reader)
            if answer is None:
                raise ConnectionResetError("S3 closed the connection without an answer")
            if fault == "reset":
                reset(writer)
                return False
            writer.write(answer.encode())
            no_body = request.method == "HEAD" or answer.status in (204, 304)
            to_eof = False if no_body else await copy_body(up_reader, writer, answer, response=True)
            await writer.drain()
        finally:
            up_writer.close()
        return not (to_eof or request.closes or answer.closes)

    async def _control(
        self, request: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        body = await reader.readexactly(int(request.get("content-length") or 0))
        path = request.target[len(CONTROL) :].split("?", 1)[0]
        status, answer = "200 OK", self.stats()
        if request.method == "POST" and path == "options":
            try:
                changes = json.loads(body or b"{}")
                self.options = ProxyOptions.model_validate({**self.options.model_dump(), **changes})
                if "seed" in changes:
                    self.rng = random.Random(self.options.seed)
                answer = self.stats()
            except (ValueError, TypeError, ValidationError) as exc:
                status, answer = "422 Unprocessable Entity", {"detail": str(exc)}
        elif request.method == "POST" and path == "reset":
            self.counters.clear()
            answer = self.stats()
        elif not (request.method == "GET" and path == "stats"):
            status, answer = "404 Not Found", {"detail": f"no control endpoint {path!r}"}
        writer.write(_message(status, json.dumps(answer).encode(), "application/json"))
        await writer.drain()


def upstream_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"upstream must be an http:// URL, got {url!r}")
    return parts.hostname, parts.port or 80


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.faultproxy", description="A fault-injecting proxy for S3."
    )
    parser.add_argument("--host", default=LOOPBACK, help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--upstream", required=True, help="the S3 endpoint, http://host:port")
    for name, info in ProxyOptions.model_fields.items():
        kind = int if name == "seed" else float
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                            help=f"{info.description} (default {info.default})")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    given = {k: args[k] for k in ProxyOptions.model_fields if args.get(k) is not None}
    try:
        options = ProxyOptions.model_validate(given)
        upstream = upstream_address(str(args["upstream"]))
    except (ValidationError, ValueError) as exc:
        parser.error(str(exc))
    proxy = FaultProxy(upstream, options)

    async def run() -> None:
        server = await proxy.serve(str(args["host"]), int(args["port"]))
        print(f"fault proxy on {args['host']}:{args['port']} -> {args['upstream']}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
