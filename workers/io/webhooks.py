"""Webhooks to producers, signed per the Standard Webhooks scheme, and an SSRF guard.

Signing is the official ``standardwebhooks`` library's (``Webhook.sign``):
``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``.

The secret (``VIDQUEUE_WEBHOOK_SECRET``), and what a receiver passes to ``Webhook(...)``:

* ``whsec_<base64>``, the standard's form: the key is the base64-decoded part, as the library
  reads it. A receiver passes the same string.
* anything else (a plain secret, as vidqueue has always accepted): the key is its UTF-8 bytes,
  exactly as before, so existing receivers keep verifying. ``standard_secret`` gives its
  standard form, ``"whsec_" + base64(secret)``, which a receiver passes to the library (or,
  equivalently, ``Webhook(secret.encode())``: bytes are taken as the raw key). Passing the
  plain string itself would not work: the library base64-decodes every string secret.

SSRF guard: a callback URL's host is resolved once (``resolve``); every address it resolves
to must be global (``kind``; ``allow_private`` lets private and loopback ones through, never
anything else); the webhook is then sent to a checked address (``send``), with the URL's host
as the ``Host`` header and as the TLS server name, so a second DNS answer is never used.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import httpx
from standardwebhooks import Webhook

from workers.domain.errors import PermanentError

TOLERANCE_S: Final = 300
PREFIX: Final = "whsec_"


def standard_secret(secret: str) -> str:
    """The secret in the standard's ``whsec_<base64>`` form, signing with the same key: as
    given when it has the prefix, else ``whsec_`` + base64 of its UTF-8 bytes."""
    if secret.startswith(PREFIX):
        return secret
    return PREFIX + base64.b64encode(secret.encode("utf-8")).decode("ascii")


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC>``, by the library. ``body`` is the event's JSON, always UTF-8."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(standard_secret(secret)).sign(msg_id, when, body.decode("utf-8"))


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    out = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
    }
    if secret:
        out["webhook-signature"] = signature(secret, msg_id, timestamp, body)
    return out


def verify(secret: str, headers: dict[str, str], body: bytes, now: int) -> bool:
    """A receiver's check at a given ``now`` (the library's ``Webhook.verify`` reads the clock
    itself and raises): the timestamp within ``TOLERANCE_S``, then the library's signature
    compared in constant time with each one offered."""
    msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not stamp.isdigit() or abs(now - int(stamp)) > TOLERANCE_S:
        return False
    expected = signature(secret, msg_id, int(stamp), body)
    offered = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, sig) for sig in offered)


# -- the SSRF guard ------------------------------------------------------------------------

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

GLOBAL: Final = "global"
# What VIDQUEUE_ALLOW_PRIVATE_CALLBACKS=true lets through; every other kind is always refused.
PRIVATE_KINDS: Final = frozenset({"private", "loopback"})


def _table(*rows: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(net), kind) for net, kind in rows)


# First match wins. Then: ``is_reserved`` is "reserved", and what ``is_global`` calls
# non-global is "special-purpose" (3.11's ``is_global`` alone misses multicast and more).
V4_KINDS: Final = _table(
    ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 itself reaches the local host
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # and 255.255.255.255, broadcast
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),  # cloud metadata services live here
    ("100.64.0.0/10", "shared"),  # carrier-grade NAT
    ("192.0.2.0/24", "documentation"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("198.18.0.0/15", "benchmarking"),
    ("192.0.0.0/24", "special-purpose"),  # IETF protocol assignments
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
)
V6_KINDS: Final = _table(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("ff00::/8", "multicast"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "special-purpose"),  # site-local (deprecated)
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("2001:2::/48", "benchmarking"),
    ("fc00::/7", "private"),  # unique local
    ("64:ff9b:1::/48", "special-purpose"),  # local-use NAT64: any IPv4 address behind it
    ("2001::/32", "special-purpose"),  # Teredo
)
NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: IPv4-mapped, IPv4-compatible, NAT64, 6to4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64 or (int(address) >> 32 == 0 and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def kind(address: Address) -> str:
    """``"global"``, or why the address is not: ``"private"``, ``"loopback"``,
    ``"link-local"``, ``"multicast"``, ``"unspecified"``, ``"reserved"``, ``"shared"``,
    ``"documentation"``, ``"benchmarking"`` or ``"special-purpose"``. An IPv6 address that
    carries an IPv4 one (mapped, compatible, NAT64, 6to4) is the kind of the IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # without a %zone
        inner = embedded_ipv4(address)
        if inner is not None:
            return kind(inner)
    table = V4_KINDS if isinstance(address, ipaddress.IPv4Address) else V6_KINDS
    for network, name in table:
        if address in network:
            return name
    if address.is_reserved:
        return "reserved"
    return GLOBAL if address.is_global else "special-purpose"


def refusal(address: Address, *, allow_private: bool) -> str | None:
    """Why a callback may not go to ``address`` (None: it may)."""
    found = kind(address)
    if found == GLOBAL or (allow_private and found in PRIVATE_KINDS):
        return None
    if found in PRIVATE_KINDS:
        return f"a {found} address (set VIDQUEUE_ALLOW_PRIVATE_CALLBACKS=true to allow it)"
    return f"a {found} address, which is never allowed"


@dataclass(frozen=True)
class Target:
    """A callback URL and every address its host resolved to, each checked, in the
    resolver's order."""

    url: httpx.URL
    addresses: tuple[Address, ...]

    @property
    def server_name(self) -> str:
        """The URL's host (IDNA-encoded): the TLS server name the certificate must match."""
        return self.url.raw_host.decode("ascii")

    def pinned(self, address: Address) -> httpx.URL:
        """The URL with its host replaced by ``address``."""
        return self.url.copy_with(host=str(address))


def parse(url: str) -> httpx.URL:
    """The callback URL as httpx reads it (the reading the request is made from)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise PermanentError(f"callback_url {url!r} is not an http(s) URL")
    return parsed


def _addresses(host: str, port: int) -> tuple[Address, ...]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise PermanentError(f"callback_url host {host!r} does not resolve") from exc
    found: dict[Address, None] = {}
    for info in infos:
        text = str(info[4][0]).partition("%")[0]
        try:
            found[ipaddress.ip_address(text)] = None
        except ValueError:
            raise PermanentError(f"callback_url host {host!r} resolves to {text!r}") from None
    if not found:
        raise PermanentError(f"callback_url host {host!r} does not resolve")
    return tuple(found)


def resolve(url: str, *, allow_private: bool) -> Target:
    """Resolve the URL's host once and check every address; ``PermanentError`` if any is
    refused (or the URL is not http(s), or the host does not resolve)."""
    parsed = parse(url)
    host = parsed.raw_host.decode("ascii")
    addresses = _addresses(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    for address in addresses:
        why = refusal(address, allow_private=allow_private)
        if why is not None:
            raise PermanentError(f"callback_url host {host!r} resolves to {why}")
    return Target(parsed, addresses)


def check_public_url(url: str, *, allow_private: bool) -> None:
    """Refuse (``PermanentError``) a URL whose host resolves to any address ``refusal``
    refuses."""
    resolve(url, allow_private=allow_private)


def send(
    http: httpx.Client,
    target: Target,
    body: bytes,
    sent: Mapping[str, str],
    timeout: httpx.Timeout,
) -> httpx.Response:
    """POST ``body`` to the target's checked addresses in turn (the next one only when
    connecting fails), never following a redirect. The ``Host`` header and the TLS server
    name (SNI, and the name the certificate is verified against) are the URL's host; the
    connection is closed after the answer, so it never serves another host from the pool."""
    extras = {"Host": target.url.netloc.decode("ascii"), "Connection": "close"}
    failed: Exception = PermanentError(f"callback_url {target.server_name!r}: no address")
    for address in target.addresses:
        try:
            return http.post(
                target.pinned(address),
                content=body,
                headers={**sent, **extras},
                timeout=timeout,
                follow_redirects=False,
                extensions={"sni_hostname": target.server_name},
            )
        except httpx.ConnectError as exc:
            failed = exc
    raise failed
