"""Signed webhook contexts: who a webhook URL imports for, until when, with what metadata.

``POST /api/v1/webhooks/replicate/urls`` issues a URL whose ``context`` query
parameter is ``<base64url JSON>.<base64url HMAC-SHA256>``; the receiver trusts
the user id and metadata in it only when the MAC matches (constant time) and the
expiry has not passed. The MAC covers a purpose prefix, so a context can never be
confused with another value signed by the same key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

_PURPOSE = b"mediaimport.webhook-context.v1:"
MAX_CONTEXT_CHARS = 8192


class ContextError(Exception):
    """The context is missing, altered, forged or expired."""


@dataclass(frozen=True)
class WebhookContext:
    user_id: str
    expires_at: int  # Unix seconds
    metadata: dict[str, Any] = field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, _PURPOSE + payload.encode(), hashlib.sha256).digest())


def issue(key: bytes, context: WebhookContext) -> str:
    document = {"u": context.user_id, "e": context.expires_at}
    if context.metadata:
        document["m"] = context.metadata
    payload = _b64(json.dumps(document, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_mac(key, payload)}"


def read(key: bytes, token: str | None, *, now: float | None = None) -> WebhookContext:
    if not token:
        raise ContextError("the context query parameter is missing")
    if len(token) > MAX_CONTEXT_CHARS:
        raise ContextError("the context is too long")
    payload, dot, mac = token.partition(".")
    if not dot or not hmac.compare_digest(_mac(key, payload).encode(), mac.encode()):
        raise ContextError("the context's signature does not match")
    try:
        document = json.loads(_unb64(payload))
        user, expires = document["u"], document["e"]
        metadata = document.get("m") or {}
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise ContextError("the context is malformed") from error
    if not isinstance(user, str) or not isinstance(expires, int) or not isinstance(metadata, dict):
        raise ContextError("the context is malformed")
    if expires <= (time.time() if now is None else now):
        raise ContextError("the context has expired")
    return WebhookContext(user, expires, metadata)
