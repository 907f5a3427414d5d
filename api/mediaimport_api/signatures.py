"""Standard Webhooks v1 signatures (the scheme Replicate signs deliveries with).

Signed content: ``{webhook-id}.{webhook-timestamp}.{raw body}``; HMAC-SHA256 with
the key that is the base64 text after ``whsec_``; the header holds space-separated
``v1,<base64 signature>`` entries (several during key rotation). Any matching
``v1`` entry is accepted, compared in constant time; other schemes are ignored.
Timestamps more than five minutes away from now, in either direction, are
refused so a captured delivery cannot be replayed later.

Written out rather than taken from the reference package: it is these few lines,
and the package would bring an HTTP client and date libraries along.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

TOLERANCE_SECONDS = 5 * 60
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


class SignatureError(Exception):
    """The delivery is not signed by the holder of the secret (or not now)."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("the webhook secret is not whsec_ followed by base64") from error
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign_headers(secret: str, message_id: str, body: bytes, timestamp: int | None = None
                 ) -> dict[str, str]:
    """The three headers a sender puts on a delivery (tests, the demo, the benchmark)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": "v1," + signature(secret_key(secret), message_id, stamp, body),
    }


@dataclass(frozen=True)
class Verified:
    message_id: str
    timestamp: int


def verify(key: bytes, headers: Mapping[str, str], body: bytes, *, now: float | None = None
           ) -> Verified:
    """Check a delivery's headers against its raw body; raise SignatureError if not genuine."""
    message_id = headers.get("webhook-id", "")
    stamp_text = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (message_id and stamp_text and signatures):
        raise SignatureError(
            "missing webhook-id, webhook-timestamp or webhook-signature header"
        )
    try:
        stamp = int(stamp_text)
    except ValueError as error:
        raise SignatureError("webhook-timestamp is not a whole number of seconds") from error
    current = time.time() if now is None else now
    if stamp < current - TOLERANCE_SECONDS:
        raise SignatureError("webhook-timestamp is more than 5 minutes old")
    if stamp > current + TOLERANCE_SECONDS:
        raise SignatureError("webhook-timestamp is more than 5 minutes in the future")
    expected = signature(key, message_id, stamp, body).encode()
    matched = False
    for entry in signatures.split():
        scheme, _, value = entry.partition(",")
        if scheme == "v1":
            # Every entry is compared: the time taken does not tell which one matched.
            matched |= hmac.compare_digest(expected, value.encode())
    if not matched:
        raise SignatureError("no v1 signature matches the body")
    return Verified(message_id, stamp)
