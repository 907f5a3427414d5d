"""Replicate webhooks over real HTTP: issued URLs, signed deliveries, redeliveries at
once and later, and every way a delivery is refused with nothing created."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from api_world import SIGNING_KEY, WEBHOOK_SECRET, ApiServer
from mediaimport_api.context import WebhookContext, issue
from mediaimport_api.replicate import asset_id, import_name
from mediaimport_api.signatures import sign_headers
from support.nesting import nested

pytestmark = pytest.mark.e2e

OUT = "https://replicate.delivery/pbxt/{n}/output-{i}.mp4"


def prediction(status: str = "succeeded", output: Any = None, **extra: Any) -> dict[str, Any]:
    pid = extra.pop("id", None) or uuid.uuid4().hex[:26]
    return {
        "id": pid, "version": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
        "model": "acme/text-to-video", "status": status,
        "input": {"prompt": "a lighthouse at dusk", "num_frames": 24},
        "output": OUT.format(n=pid, i=0) if output is None else output,
        "logs": "step 1/24\n" * 500, "error": None, "metrics": {"predict_time": 12.3},
        "created_at": "2026-12-03T14:00:00Z", **extra,
    }


def webhook_url(api: ApiServer, user: str, **body: Any) -> str:
    answer = api.request("POST", "/api/v1/webhooks/replicate/urls", user, json=body)
    assert answer.status_code == 200, answer.text
    url: str = answer.json()["url"]
    return url


def deliver(url: str, payload: bytes | dict[str, Any], *, headers: dict[str, str] | None = None,
            message_id: str | None = None, timestamp: int | None = None) -> requests.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = sign_headers(WEBHOOK_SECRET, message_id or f"msg_{uuid.uuid4().hex}", body,
                        timestamp=timestamp)
    sent["Content-Type"] = "application/json"
    sent.update(headers or {})
    return requests.post(url, data=body, headers=sent, timeout=30)


def test_issued_urls_point_at_the_receiver_with_a_signed_context(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    answer = quiet_api.request("POST", "/api/v1/webhooks/replicate/urls", user,
                               json={"metadata": {"project": "trailers"}, "expires_in": 600})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    parts = urlsplit(body["url"])
    assert f"{parts.scheme}://{parts.netloc}" == quiet_api.url
    assert parts.path == "/api/v1/webhooks/replicate"
    assert list(parse_qs(parts.query)) == ["context"]
    assert body["expires_at"]
    # No body at all is fine too (defaults).
    assert quiet_api.request("POST", "/api/v1/webhooks/replicate/urls", user).status_code == 200
    error = quiet_api.request("POST", "/api/v1/webhooks/replicate/urls", user,
                              json={"metadata": {"x": "y" * 5000}})
    assert error.status_code == 422 and error.json()["error"]["code"] == "validation_failed"


@pytest.mark.parametrize(
    ("output", "count"),
    [(None, 1), ([OUT.format(n="l", i=0), OUT.format(n="l", i=1), OUT.format(n="l", i=2)], 3),
     ({"video": OUT.format(n="o", i=0), "preview": OUT.format(n="o", i=1), "seed": 42}, 2)],
)
def test_a_succeeded_prediction_creates_one_import_per_output(
    quiet_api: ApiServer, output: Any, count: int
) -> None:
    user = quiet_api.new_user()
    url = webhook_url(quiet_api, user, metadata={"project": "trailers"})
    payload = prediction(output=output)
    started = time.monotonic()
    answer = deliver(url, payload)
    assert time.monotonic() - started < 1.0
    assert answer.status_code == 200, answer.text
    imports = answer.json()["imports"]
    assert len(imports) == count
    for index, item in enumerate(imports):
        assert item["import_job_id"] == import_name(user, payload["id"], index)
        assert item["id"] == asset_id(user, payload["id"], index)
    mis = {mi["metadata"]["name"]: mi for mi in quiet_api.mediaimports(user)}
    assert set(mis) == {item["import_job_id"] for item in imports}
    first = mis[imports[0]["import_job_id"]]
    assert first["spec"]["metadata"] == {
        "project": "trailers", "aiGenerated": True, "prompt": "a lighthouse at dusk",
        "model": "acme/text-to-video", "source": "ai_generation", "predictionId": payload["id"],
    }
    rows = quiet_api.rows(user)
    assert {str(row["id"]) for row in rows} == {item["id"] for item in imports}
    assert {row["status"] for row in rows} == {"uploading"}


def test_a_redelivery_answers_the_same_imports_and_creates_nothing(
    quiet_api: ApiServer,
) -> None:
    user = quiet_api.new_user()
    url = webhook_url(quiet_api, user)
    payload = prediction(output=[OUT.format(n="r", i=0), OUT.format(n="r", i=1)])
    first = deliver(url, payload, message_id="msg_same")
    again = deliver(url, payload, message_id="msg_same")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert len(quiet_api.mediaimports(user)) == 2 and len(quiet_api.rows(user)) == 2
    before = quiet_api.metrics()
    assert 'mediaimport_api_webhooks_total{outcome="duplicate"}' in before


def test_deliveries_at_once_create_each_import_once(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    url = webhook_url(quiet_api, user)
    payload = prediction(output=[OUT.format(n="c", i=i) for i in range(3)])
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: deliver(url, payload), range(8)))
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert len(quiet_api.mediaimports(user)) == 3 and len(quiet_api.rows(user)) == 3


def test_the_same_prediction_for_two_users_makes_separate_imports(quiet_api: ApiServer) -> None:
    alice, bob = quiet_api.new_user(), quiet_api.new_user()
    payload = prediction()
    a = deliver(webhook_url(quiet_api, alice), payload).json()["imports"]
    b = deliver(webhook_url(quiet_api, bob), payload).json()["imports"]
    assert a[0]["import_job_id"] != b[0]["import_job_id"] and a[0]["id"] != b[0]["id"]
    assert len(quiet_api.mediaimports(alice)) == len(quiet_api.mediaimports(bob)) == 1


@pytest.mark.parametrize("status", ["starting", "processing", "failed", "canceled"])
def test_unfinished_failed_and_canceled_predictions_are_acknowledged(
    quiet_api: ApiServer, status: str
) -> None:
    user = quiet_api.new_user()
    answer = deliver(webhook_url(quiet_api, user), prediction(status=status))
    assert answer.status_code == 200, answer.text
    assert answer.json()["imports"] == []
    assert quiet_api.mediaimports(user) == [] and quiet_api.rows(user) == []


def _refused(quiet_api: ApiServer, user: str, answer: requests.Response, status: int,
             code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert quiet_api.mediaimports(user) == [] and quiet_api.rows(user) == []


def test_bad_signatures_are_401_and_create_nothing(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    url = webhook_url(quiet_api, user)
    payload = prediction()
    body = json.dumps(payload).encode()
    now = int(time.time())
    forged = sign_headers("whsec_" + "Zm9yZ2VkIGtleQ==", "msg_1", body)
    cases = [
        deliver(url, body, headers=forged),  # signed with another secret
        # Well past the 5 minutes (the exact bounds are the unit tests').
        deliver(url, body, timestamp=now - 330),  # stale
        deliver(url, body, timestamp=now + 330),  # from the future
        requests.post(url, data=body, headers={"Content-Type": "application/json"},
                      timeout=30),  # missing
    ]
    # Signed over one serialisation, sent as another.
    signed = sign_headers(WEBHOOK_SECRET, "msg_2", body)
    cases.append(requests.post(url, data=json.dumps(payload, indent=2).encode(),
                               headers={**signed, "Content-Type": "application/json"},
                               timeout=30))
    for answer in cases:
        _refused(quiet_api, user, answer, 401, "invalid_signature")
    assert 'mediaimport_api_webhooks_total{outcome="invalid_signature"}' in quiet_api.metrics()


def test_forged_altered_and_expired_contexts_are_403_and_create_nothing(
    quiet_api: ApiServer,
) -> None:
    user = quiet_api.new_user()
    base = f"{quiet_api.url}/api/v1/webhooks/replicate"
    forged = issue(b"not the server's key at all, 32 bytes", WebhookContext(
        user, int(time.time()) + 600))
    expired = issue(SIGNING_KEY.encode(), WebhookContext(user, int(time.time()) - 1))
    genuine = urlsplit(webhook_url(quiet_api, user)).query.removeprefix("context=")
    _, mac = genuine.split(".")
    other = issue(SIGNING_KEY.encode(), WebhookContext("someone-else", int(time.time()) + 600))
    altered = f"{other.split('.')[0]}.{mac}"
    for context in (forged, expired, altered, "", "garbage"):
        _refused(quiet_api, user, deliver(f"{base}?context={context}", prediction()), 403,
                 "invalid_context")
    _refused(quiet_api, user, deliver(base, prediction()), 403, "invalid_context")
    assert quiet_api.mediaimports("someone-else") == []


def test_bodies_that_are_not_predictions_are_422(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    url = webhook_url(quiet_api, user)
    for body in (b"[1, 2]", b'{"status": "succeeded"}', b"{broken"):
        _refused(quiet_api, user, deliver(url, body), 422, "validation_failed")


def test_deeply_nested_deliveries_and_control_characters_in_ids_are_422(
    quiet_api: ApiServer,
) -> None:
    # Each was a 500: Python's recursion limit, and Postgres refusing \u0000.
    user = quiet_api.new_user()
    url = webhook_url(quiet_api, user)
    for payload in (prediction(output=nested(900, OUT.format(n="deep", i=0))),
                    prediction(id="p\u0000q")):
        _refused(quiet_api, user, deliver(url, payload), 422, "validation_failed")
    deep = b'{"id": "p", "status": "succeeded", "output": ' + b"[" * 100_000 + b"]" * 100_000
    answer = deliver(url, deep + b"}")
    _refused(quiet_api, user, answer, 422, "validation_failed")
    assert "nests too deeply" in answer.json()["error"]["message"]


def test_a_long_prompt_with_control_characters_is_stored_cut_and_clean(
    quiet_api: ApiServer,
) -> None:
    user = quiet_api.new_user()
    payload = prediction(input={"prompt": "dusk\u0000" + "ä" * 100_000})
    answer = deliver(webhook_url(quiet_api, user), payload)
    assert answer.status_code == 200, answer.text
    [mi] = quiet_api.mediaimports(user)
    metadata = mi["spec"]["metadata"]
    assert metadata["prompt"].startswith("dusk\ufffdää")
    # 8 KiB at most, cut between characters ("ä" takes two bytes)
    assert 8 * 1024 - 2 < len(metadata["prompt"].encode()) <= 8 * 1024
    assert metadata["promptTruncated"] is True
    [row] = quiet_api.rows(user)
    assert row["file_metadata"]["prompt"] == metadata["prompt"]


def test_blocked_output_urls_are_reported_and_not_imported(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    payload = prediction(output=["http://169.254.169.254/latest/meta-data",
                                 OUT.format(n="b", i=1)])
    answer = deliver(webhook_url(quiet_api, user), payload)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [item["import_job_id"] for item in body["imports"]] == [
        import_name(user, payload["id"], 1)]
    assert [r["index"] for r in body["rejected"]] == [0]
    assert len(quiet_api.mediaimports(user)) == 1


def test_deliveries_with_logs_up_to_1_mib_are_accepted_beyond_that_413(
    quiet_api: ApiServer,
) -> None:
    user = quiet_api.new_user()
    url = webhook_url(quiet_api, user)
    assert deliver(url, prediction(logs="x" * 900_000)).status_code == 200
    other = quiet_api.new_user()
    _refused(quiet_api, other, deliver(webhook_url(quiet_api, other),
                                       prediction(logs="x" * 1_100_000)),
             413, "payload_too_large")
