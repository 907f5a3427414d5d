"""Standard Webhooks signatures: what is accepted and what is refused (pure)."""

from __future__ import annotations

import base64
import json

import pytest
from mediaimport_api.signatures import (
    SignatureError,
    secret_key,
    sign_headers,
    signature,
    verify,
)

SECRET = "whsec_" + base64.b64encode(b"a key of thirty-two bytes, exact").decode()
KEY = secret_key(SECRET)
BODY = json.dumps({"id": "p1", "status": "succeeded", "output": "https://x/y.mp4"}).encode()
NOW = 1_800_000_000


def headers(**changes: str) -> dict[str, str]:
    base = sign_headers(SECRET, "msg_1", BODY, timestamp=NOW)
    base.update(changes)
    return base


def test_a_genuine_delivery_is_accepted() -> None:
    verified = verify(KEY, headers(), BODY, now=NOW)
    assert (verified.message_id, verified.timestamp) == ("msg_1", NOW)


def test_any_matching_v1_entry_is_enough_and_other_schemes_are_ignored() -> None:
    good = headers()["webhook-signature"]
    other = "v1," + base64.b64encode(b"x" * 32).decode()
    rotated = f"v1a,{good.split(',', 1)[1]} {other} {good}"
    assert verify(KEY, headers(**{"webhook-signature": rotated}), BODY, now=NOW)


def test_a_signature_of_another_scheme_only_is_refused() -> None:
    good = headers()["webhook-signature"].split(",", 1)[1]
    with pytest.raises(SignatureError, match="no v1 signature"):
        verify(KEY, headers(**{"webhook-signature": f"v1a,{good}"}), BODY, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(missing: str) -> None:
    sent = headers()
    del sent[missing]
    with pytest.raises(SignatureError, match="missing"):
        verify(KEY, sent, BODY, now=NOW)


@pytest.mark.parametrize(("offset", "word"), [(-301, "old"), (301, "future")])
def test_stale_and_future_timestamps_are_refused(offset: int, word: str) -> None:
    sent = sign_headers(SECRET, "msg_1", BODY, timestamp=NOW + offset)
    with pytest.raises(SignatureError, match=word):
        verify(KEY, sent, BODY, now=NOW)


@pytest.mark.parametrize("offset", [-299, 299])
def test_timestamps_within_five_minutes_are_accepted(offset: int) -> None:
    assert verify(KEY, sign_headers(SECRET, "m", BODY, timestamp=NOW + offset), BODY, now=NOW)


def test_a_re_serialised_body_breaks_the_signature() -> None:
    reserialised = json.dumps(json.loads(BODY), indent=1).encode()
    assert reserialised != BODY
    with pytest.raises(SignatureError):
        verify(KEY, headers(), reserialised, now=NOW)


def test_an_altered_id_or_timestamp_breaks_the_signature() -> None:
    with pytest.raises(SignatureError):
        verify(KEY, headers(**{"webhook-id": "msg_2"}), BODY, now=NOW)
    with pytest.raises(SignatureError):
        verify(KEY, headers(**{"webhook-timestamp": str(NOW + 1)}), BODY, now=NOW)


def test_a_signature_made_with_another_key_is_refused() -> None:
    forged = "v1," + signature(b"another key", "msg_1", NOW, BODY)
    with pytest.raises(SignatureError):
        verify(KEY, headers(**{"webhook-signature": forged}), BODY, now=NOW)


def test_a_timestamp_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(SignatureError, match="whole number"):
        verify(KEY, headers(**{"webhook-timestamp": "soon"}), BODY, now=NOW)


def test_secrets_must_be_whsec_base64() -> None:
    with pytest.raises(ValueError, match="base64"):
        secret_key("whsec_not base64!")
    assert secret_key(SECRET) == b"a key of thirty-two bytes, exact"
