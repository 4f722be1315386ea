"""Webhook signatures made with the official ``standardwebhooks`` library, checked with its own
``Webhook.verify`` as a receiver would: a ``whsec_`` secret is passed as is, a plain secret in
its standard form (``standard_secret``) or as raw bytes; and the key a plain secret signs with
has not changed (receivers that hash its UTF-8 bytes keep verifying)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from workers.io import webhooks

BODY = json.dumps({"type": "job.succeeded", "data": {"id": "j1", "prompt": "un café"}}).encode()
STANDARD = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
PLAIN = "a-plain-secret: not base64 at all!"


def signed(secret: str, body: bytes = BODY) -> dict[str, str]:
    return webhooks.headers(secret, "j1.succeeded", int(time.time()), body)


def test_a_standard_secret_verifies_with_the_library() -> None:
    sent = signed(STANDARD)
    assert Webhook(STANDARD).verify(BODY, sent) == json.loads(BODY)
    assert webhooks.standard_secret(STANDARD) == STANDARD


def test_a_plain_secret_verifies_in_its_standard_form_or_as_bytes() -> None:
    sent = signed(PLAIN)
    standard = webhooks.standard_secret(PLAIN)
    assert standard == "whsec_" + base64.b64encode(PLAIN.encode()).decode()
    Webhook(standard).verify(BODY, sent)
    Webhook(PLAIN.encode()).verify(BODY, sent)


def test_a_plain_secret_signs_with_its_bytes_as_before() -> None:
    sent = signed(PLAIN)
    data = f"{sent['webhook-id']}.{sent['webhook-timestamp']}.".encode() + BODY
    mac = hmac.new(PLAIN.encode(), data, hashlib.sha256).digest()
    assert sent["webhook-signature"] == "v1," + base64.b64encode(mac).decode()


def test_the_library_refuses_a_tampered_body_a_wrong_secret_and_a_stale_stamp() -> None:
    sent = signed(STANDARD)
    with pytest.raises(WebhookVerificationError):
        Webhook(STANDARD).verify(BODY.replace(b"j1", b"j2"), sent)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.standard_secret("another")).verify(BODY, sent)
    stale = webhooks.headers(STANDARD, "j1.succeeded", int(time.time()) - 3600, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(STANDARD).verify(BODY, stale)


def test_our_verify_agrees_with_the_library() -> None:
    now = int(time.time())
    for secret in (STANDARD, PLAIN):
        sent = signed(secret)
        assert webhooks.verify(secret, sent, BODY, now)
        assert not webhooks.verify(secret, sent, BODY + b" ", now)
        assert not webhooks.verify(secret, sent, BODY, now + webhooks.TOLERANCE_S + 60)


def test_without_a_secret_nothing_is_signed() -> None:
    assert "webhook-signature" not in signed("")
