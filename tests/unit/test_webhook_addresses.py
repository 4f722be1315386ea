"""The webhook SSRF guard (``workers.io.webhooks``): which addresses a callback may reach, that
every address a host resolves to is checked, and that the webhook goes to a checked address
with the URL's host as ``Host`` and as the TLS server name (verified against the certificate).

``socket.getaddrinfo`` is replaced where a host name must resolve to given addresses; the
expected kinds are written out here rather than taken from ``ipaddress`` (Python 3.11's
``is_global`` calls 224.0.0.1, ff02::1, fec0::1, 6to4 and NAT64 forms of 127.0.0.1 global).
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from workers.domain.errors import PermanentError
from workers.io import webhooks

TIMEOUT = httpx.Timeout(5.0)

KINDS: list[tuple[str, str]] = [
    # IPv4
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.10", "private"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("100.64.0.1", "shared"),
    ("100.127.255.254", "shared"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.254", "benchmarking"),
    ("192.0.0.8", "special-purpose"),
    ("93.184.215.14", "global"),
    ("8.8.8.8", "global"),
    ("100.128.0.1", "global"),
    ("172.32.0.1", "global"),
    # IPv6
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fe80::1%2", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("fec0::1", "special-purpose"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("2001::1", "special-purpose"),  # Teredo
    ("64:ff9b:1::a00:1", "special-purpose"),  # local-use NAT64
    ("100::1", "reserved"),  # discard-only
    ("::ffff:0:7f00:1", "reserved"),  # IPv4-translated
    ("2606:4700:4700::1111", "global"),
    # IPv6 forms of IPv4 addresses: the kind of the IPv4 address
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:224.0.0.1", "multicast"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("::ffff:100.64.0.1", "shared"),
    ("::ffff:192.0.2.1", "documentation"),
    ("::ffff:198.18.0.1", "benchmarking"),
    ("::ffff:8.8.8.8", "global"),
    ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ("::10.0.0.1", "private"),
    ("::224.0.0.1", "multicast"),
    ("::8.8.8.8", "global"),
    ("2002:7f00:1::1", "loopback"),  # 6to4
    ("2002:a9fe:a9fe::1", "link-local"),
    ("2002:e000:1::1", "multicast"),
    ("2002:c000:201::1", "documentation"),
    ("2002:808:808::1", "global"),
    ("64:ff9b::7f00:1", "loopback"),  # NAT64
    ("64:ff9b::a00:1", "private"),
    ("64:ff9b::6440:1", "shared"),
    ("64:ff9b::c612:1", "benchmarking"),
    ("64:ff9b::808:808", "global"),
]
ALLOWED_WHEN_PRIVATE = {"global", "private", "loopback"}


@pytest.mark.parametrize(("text", "expected"), KINDS)
def test_each_address_has_its_kind(text: str, expected: str) -> None:
    assert webhooks.kind(ipaddress.ip_address(text)) == expected


@pytest.mark.parametrize(("text", "expected"), KINDS)
def test_only_global_addresses_pass_and_private_ones_only_when_allowed(
    text: str, expected: str
) -> None:
    address = ipaddress.ip_address(text)
    assert (webhooks.refusal(address, allow_private=False) is None) == (expected == "global")
    allowed = webhooks.refusal(address, allow_private=True) is None
    assert allowed == (expected in ALLOWED_WHEN_PRIVATE)


@pytest.mark.parametrize(("text", "expected"), [k for k in KINDS if ":" not in k[0]])
def test_ip_literal_urls_are_checked_the_same(text: str, expected: str) -> None:
    url = f"https://{text}:8443/hook"
    if expected == "global":
        webhooks.check_public_url(url, allow_private=False)
    else:
        with pytest.raises(PermanentError, match=expected):
            webhooks.check_public_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://[2002:7f00:1::1]/hook",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[ff02::1]/hook",
        "http://[2001:db8::1]/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
        "http://0x7f000001/hook",  # ... and in hex
        "http://0/hook",
    ],
)
def test_ipv6_and_odd_ipv4_literals_are_refused(url: str) -> None:
    with pytest.raises(PermanentError):
        webhooks.check_public_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url", ["http://224.0.0.1/h", "http://0.0.0.0:9/h", "http://[::]/h", "http://240.0.0.1/h"]
)
def test_multicast_unspecified_and_reserved_are_refused_even_with_private_allowed(
    url: str,
) -> None:
    with pytest.raises(PermanentError, match="never allowed"):
        webhooks.check_public_url(url, allow_private=True)


@pytest.mark.parametrize("url", ["ftp://example.com/h", "file:///etc/passwd", "http:///h", "x"])
def test_what_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(PermanentError, match="not an http"):
        webhooks.check_public_url(url, allow_private=True)


# -- host names: every address is checked ---------------------------------------------------


def _info(text: str) -> tuple[Any, ...]:
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (text, 443))


Resolver = Callable[..., list[tuple[Any, ...]]]


def _resolver(*answers: list[str]) -> tuple[Resolver, list[str]]:
    """A ``getaddrinfo`` giving each call the next answer (the last one repeats)."""
    asked: list[str] = []

    def getaddrinfo(host: str, *_: Any, **__: Any) -> list[tuple[Any, ...]]:
        asked.append(host)
        return [_info(text) for text in answers[min(len(asked), len(answers)) - 1]]

    return getaddrinfo, asked


@pytest.mark.parametrize(
    "addresses",
    [
        ["93.184.215.14", "10.0.0.5"],
        ["2606:4700::1", "::1"],
        ["93.184.215.14", "224.0.0.1"],
        ["93.184.215.14", "::ffff:169.254.169.254"],
        ["2606:4700::1", "64:ff9b::a00:1"],
    ],
)
def test_a_host_is_refused_if_any_of_its_addresses_is(
    addresses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    getaddrinfo, _ = _resolver(addresses)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(PermanentError, match=r"'hooks\.example\.com' resolves to a"):
        webhooks.resolve("https://hooks.example.com/h", allow_private=False)


def test_a_host_that_does_not_resolve_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(*_: Any, **__: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(PermanentError, match="does not resolve"):
        webhooks.resolve("https://nowhere.example/h", allow_private=True)


def test_a_resolved_host_keeps_every_checked_address_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    getaddrinfo, asked = _resolver(["2606:4700::1", "93.184.215.14", "93.184.215.14"])
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    target = webhooks.resolve("https://Hooks.Example.com:8443/h?x=1", allow_private=False)
    assert asked == ["hooks.example.com"]
    assert target.addresses == (
        ipaddress.ip_address("2606:4700::1"),
        ipaddress.ip_address("93.184.215.14"),
    )
    assert str(target.pinned(target.addresses[0])) == "https://[2606:4700::1]:8443/h?x=1"


# -- sending: to the checked address, Host and SNI the URL's host --------------------------


class Capture:
    def __init__(self, status: int = 204, fail_on: tuple[str, ...] = ()) -> None:
        self.requests: list[httpx.Request] = []
        self.status = status
        self.fail_on = fail_on

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host in self.fail_on:
            raise httpx.ConnectError("unreachable", request=request)
        return httpx.Response(self.status, headers={"location": "http://127.0.0.1/"})


def _send(capture: Capture, target: webhooks.Target) -> httpx.Response:
    with httpx.Client(transport=httpx.MockTransport(capture)) as http:
        return webhooks.send(http, target, b"{}", {"webhook-id": "j.succeeded"}, TIMEOUT)


def test_a_rebinding_resolver_cannot_move_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a host whose first answer is public and every later one private
    getaddrinfo, asked = _resolver(["93.184.215.14"], ["127.0.0.1"])
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    # When it is checked, then sent
    target = webhooks.resolve("https://hooks.example.com/hook", allow_private=False)
    capture = Capture()
    assert _send(capture, target).status_code == 204
    # Then the host was resolved once, and the request went to the checked address
    assert asked == ["hooks.example.com"]
    [request] = capture.requests
    assert str(request.url) == "https://93.184.215.14/hook"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"


def test_the_pinned_request_keeps_host_port_sni_and_closes_its_connection() -> None:
    url = httpx.URL("https://Hooks.Example.com:8443/cb?job=1")
    target = webhooks.Target(url, (ipaddress.ip_address("2606:4700::1"),))
    capture = Capture()
    _send(capture, target)
    [request] = capture.requests
    assert str(request.url) == "https://[2606:4700::1]:8443/cb?job=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.headers["connection"] == "close"
    assert request.headers["webhook-id"] == "j.succeeded"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.content == b"{}"


def test_an_idn_host_is_sent_idna_encoded() -> None:
    target = webhooks.Target(
        httpx.URL("https://bücher.example/h"), (ipaddress.ip_address("8.8.8.8"),)
    )
    capture = Capture()
    _send(capture, target)
    [request] = capture.requests
    assert request.headers["host"] == "xn--bcher-kva.example"
    assert request.extensions["sni_hostname"] == "xn--bcher-kva.example"


def test_no_redirect_is_followed() -> None:
    target = webhooks.Target(
        httpx.URL("http://hooks.example.com/h"), (ipaddress.ip_address("8.8.8.8"),)
    )
    capture = Capture(status=302)
    assert _send(capture, target).status_code == 302
    assert len(capture.requests) == 1


def test_a_checked_address_that_cannot_be_reached_gives_way_to_the_next_checked_one() -> None:
    addresses = (ipaddress.ip_address("2606:4700::1"), ipaddress.ip_address("8.8.8.8"))
    target = webhooks.Target(httpx.URL("http://hooks.example.com/h"), addresses)
    capture = Capture(fail_on=("2606:4700::1",))
    assert _send(capture, target).status_code == 204
    assert [r.url.host for r in capture.requests] == ["2606:4700::1", "8.8.8.8"]
    with pytest.raises(httpx.ConnectError):
        _send(Capture(fail_on=("2606:4700::1", "8.8.8.8")), target)


# -- TLS: the certificate is verified against the URL's host, not the address --------------


class Hook(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        Hook.seen.append(self.headers["host"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def _certificate(tmp: Path, name: str) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_hook(tmp_path: Path) -> Iterator[tuple[int, Path, list[str | None]]]:
    """An HTTPS receiver on 127.0.0.1 with a certificate for ``hooks.test`` only; it records
    the server name each client asked for."""
    cert, key = _certificate(tmp_path, "hooks.test")
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    Hook.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, cert, names
    server.shutdown()
    server.server_close()


def _send_tls(host: str, port: int, cert: Path) -> httpx.Response:
    target = webhooks.Target(
        httpx.URL(f"https://{host}:{port}/hook"), (ipaddress.ip_address("127.0.0.1"),)
    )
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(verify=trust) as http:
        return webhooks.send(http, target, b"{}", {}, TIMEOUT)


def test_tls_to_the_pinned_address_verifies_the_url_host(
    tls_hook: tuple[int, Path, list[str | None]],
) -> None:
    port, cert, names = tls_hook
    assert _send_tls("hooks.test", port, cert).status_code == 204
    assert names == ["hooks.test"]
    assert Hook.seen == [f"hooks.test:{port}"]


def test_tls_to_the_pinned_address_refuses_a_certificate_for_another_host(
    tls_hook: tuple[int, Path, list[str | None]],
) -> None:
    port, cert, _ = tls_hook
    with pytest.raises(httpx.ConnectError, match=r"(?i)hostname|certificate"):
        _send_tls("other.test", port, cert)
    assert Hook.seen == []
