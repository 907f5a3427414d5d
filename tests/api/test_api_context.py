"""Signed webhook contexts: issued, read back, and refused when forged, altered or expired."""

from __future__ import annotations

import base64
import json

import pytest
from mediaimport_api.context import ContextError, WebhookContext, issue, read
from mediaimport_api.schemas import WebhookUrlRequest
from pydantic import ValidationError

KEY = b"k" * 32
NOW = 1_800_000_000


def test_a_context_reads_back_what_was_issued() -> None:
    token = issue(KEY, WebhookContext("user-1", NOW + 60, {"project": "p"}))
    assert read(KEY, token, now=NOW) == WebhookContext("user-1", NOW + 60, {"project": "p"})
    assert "=" not in token and "/" not in token and "+" not in token  # safe in a URL


def test_an_expired_context_is_refused() -> None:
    token = issue(KEY, WebhookContext("user-1", NOW, {}))
    with pytest.raises(ContextError, match="expired"):
        read(KEY, token, now=NOW)


def test_a_context_signed_with_another_key_is_refused() -> None:
    token = issue(b"x" * 32, WebhookContext("user-1", NOW + 60))
    with pytest.raises(ContextError, match="signature"):
        read(KEY, token, now=NOW)


def test_an_altered_user_is_refused() -> None:
    token = issue(KEY, WebhookContext("user-1", NOW + 60))
    payload, mac = token.split(".")
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    document["u"] = "user-2"
    altered = base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")
    with pytest.raises(ContextError, match="signature"):
        read(KEY, f"{altered}.{mac}", now=NOW)


@pytest.mark.parametrize("token", [None, "", "nodot", "a.b", "." * 9000])
def test_missing_and_malformed_contexts_are_refused(token: str | None) -> None:
    with pytest.raises(ContextError):
        read(KEY, token, now=NOW)


@pytest.mark.parametrize("raw", ["true", "3600.0", '"3600"'])
def test_a_lifetime_that_is_not_a_whole_number_of_seconds_is_refused(raw: str) -> None:
    # JSON true would otherwise count as 1 second and be refused as "at least 60".
    with pytest.raises(ValidationError, match="valid integer"):
        WebhookUrlRequest.model_validate_json(f'{{"expires_in": {raw}}}')
    assert WebhookUrlRequest.model_validate_json('{"expires_in": 3600}').expires_in == 3600
