"""Imports through HTTP to Ready with the real operator, job, S3 and Postgres: polling,
server-sent events and the WebSocket; presigned URLs; waiting; failures; cancelling."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from api_world import LiveWorld, eventually
from websockets.sync.client import connect

pytestmark = pytest.mark.e2e


def sse_messages(world: LiveWorld, user: str, name: str, *, token_in_query: bool = False
                 ) -> list[dict[str, Any]]:
    """Every message of an import's event stream, read until the server closes it."""
    api = world.api
    path = f"/api/v1/imports/{name}/events"
    if token_in_query:
        answer = requests.get(f"{api.url}{path}?access_token={api.tokens[user]}",
                              stream=True, timeout=120)
    else:
        answer = api.request("GET", path, user, stream=True, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    messages = []
    for line in answer.iter_lines(decode_unicode=True):
        if line.startswith("data:"):
            messages.append(json.loads(line[5:].strip()))
    return messages


def ws_messages(world: LiveWorld, user: str, name: str) -> list[dict[str, Any]]:
    api = world.api
    url = f"ws://127.0.0.1:{api.port}/api/v1/imports/{name}/ws"
    messages = []
    with connect(url, additional_headers=api.auth(user), open_timeout=10) as socket:
        for text in socket:  # ends when the server closes the connection
            messages.append(json.loads(text))
        assert socket.close_code == 1000
    return messages


def post_and_settle(world: LiveWorld, user: str, body: dict[str, Any]
                    ) -> tuple[requests.Response, dict[str, Any]]:
    """An image import (it waits for its result), and its asset once ready or failed.

    A machine too busy to finish the import within the wait answers the documented 202
    at the bound; the asset is then followed until it settles (a replay of the request
    would answer that 202 again: a replay answers as the first request did)."""
    answer = world.api.post_import(user, body)
    assert answer.status_code in (200, 202, 422), diagnose(world, answer)
    if answer.status_code == 200:
        return answer, answer.json()
    asset_id = (answer.json().get("error", {}).get("details") or answer.json())["id"]

    def settled() -> dict[str, Any] | None:
        asset = world.api.request("GET", f"/api/v1/media/{asset_id}", user).json()
        return asset if asset["status"] != "uploading" else None

    asset: dict[str, Any] = eventually(settled, timeout=180, what="the asset to settle")
    return answer, asset


def diagnose(world: LiveWorld, answer: requests.Response) -> str:
    """What a failed expectation needs to be understood: the answer, the import, the logs."""
    name = (answer.json().get("metadata") or {}).get("import_job_id", "")
    body = world.api.mediaimport(name) if name else None
    operator = world.env.operators[0].log()[-3000:] if world.env.operators else ""
    return (f"{answer.status_code} {answer.text}\nMediaImport: {json.dumps(body)}\n"
            f"API log: {world.api.log()[-3000:]}\noperator log: {operator}")


def poll_until_finished(world: LiveWorld, user: str, name: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        status = world.api.request("GET", f"/api/v1/imports/{name}", user).json()
        return status if status["status"] in ("finished", "failed") else None

    result: dict[str, Any] = eventually(finished, timeout=120, what=f"{name} to finish")
    return result


def test_an_import_through_http_reaches_ready_seen_by_polling_sse_and_websocket(
    live: LiveWorld,
) -> None:
    api, origin = live.api, live.env.origin
    source = live.env.media.path("h264.mp4")
    file_name = origin.add(source, f"clip-{uuid.uuid4().hex[:6]}.mp4")
    user = api.new_user()
    answer = api.post_import(user, {"url": origin.url(f"/files/{file_name}"), "type": "video",
                                    "metadata": {"prompt": "a test card"}})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    name = accepted["metadata"]["import_job_id"]
    with ThreadPoolExecutor(3) as pool:
        sse = pool.submit(sse_messages, live, user, name)
        sse_query = pool.submit(sse_messages, live, user, name, token_in_query=True)
        ws = pool.submit(ws_messages, live, user, name)
        polled = poll_until_finished(live, user, name)
        streams = [sse.result(timeout=120), sse_query.result(timeout=120),
                   ws.result(timeout=120)]
    assert polled["status"] == "finished", polled
    assert polled["phase"] == "Ready" and polled["error"] is None
    assert polled["result"]["id"] == accepted["id"]
    assert polled["result"]["size"] == source.stat().st_size
    assert {c["type"]: c["status"] for c in polled["conditions"]}["Succeeded"] == "True"
    for messages in streams:
        assert messages, "a stream sent nothing"
        assert messages[0]["status"] in ("queued", "started", "finished")
        assert messages[-1] == polled or (
            messages[-1]["status"] == "finished" and messages[-1]["result"] == polled["result"])
        assert all(m["status"] != "finished" for m in messages[:-1])
        assert len({json.dumps(m, sort_keys=True) for m in messages}) == len(messages)
    # The asset: presigned URLs serve exactly the origin's bytes.
    asset = eventually(
        lambda: (a := api.request("GET", f"/api/v1/media/{accepted['id']}", user).json())
        and a["status"] == "ready" and a, timeout=30, what="the row to be ready")
    assert asset["size"] == source.stat().st_size
    assert asset["type"] == "video" and asset["name"] == file_name
    media = requests.get(asset["url"], timeout=30)
    assert media.status_code == 200 and media.content == source.read_bytes()
    assert "X-Amz-Signature=" in asset["url"] and "X-Amz-Expires=3600" in asset["url"]
    thumbnail = requests.get(asset["thumbnail_url"], timeout=30)
    assert thumbnail.status_code == 200
    assert thumbnail.headers["Content-Type"] == "image/jpeg"
    assert thumbnail.content[:2] == b"\xff\xd8"
    assert asset["checksum"] == polled["result"]["sha256"]
    assert asset["metadata"]["prompt"] == "a test card"
    assert asset["metadata"]["duration"] == pytest.approx(2.0, abs=0.2)
    # A stream of an import that already finished: its final state, then the end.
    assert sse_messages(live, user, name) == [streams[0][-1]]
    metrics = api.metrics()
    assert 'mediaimport_api_open_streams{kind="sse"} 0.0' in metrics
    assert 'mediaimport_api_open_streams{kind="websocket"} 0.0' in metrics


def test_an_image_import_waits_and_answers_the_asset(live: LiveWorld) -> None:
    api, origin = live.api, live.env.origin
    source = live.env.media.path("image.png")
    file_name = origin.add(source, f"pic-{uuid.uuid4().hex[:6]}.png")
    user = api.new_user()
    answer, asset = post_and_settle(live, user, {"url": origin.url(f"/files/{file_name}"),
                                                 "type": "image"})
    assert answer.status_code in (200, 202), diagnose(live, answer)
    assert len(api.mediaimports(user)) == 1
    assert asset["status"] == "ready" and asset["type"] == "image"
    assert requests.get(asset["url"], timeout=30).content == source.read_bytes()
    assert asset == api.request("GET", f"/api/v1/media/{asset['id']}", user).json() | {
        "url": asset["url"], "thumbnail_url": asset["thumbnail_url"]}


def test_a_failed_image_import_answers_422_with_its_reason(live: LiveWorld) -> None:
    api = live.api
    user = api.new_user()
    answer, asset = post_and_settle(live, user, {"url": live.env.origin.url("/status/404"),
                                                 "type": "image"})
    assert answer.status_code in (422, 202), diagnose(live, answer)
    if answer.status_code == 422:
        error = answer.json()["error"]
        assert error["code"] == "import_failed"
        assert error["details"]["reason"] == "SourceNotFound"
        assert error["details"]["id"] == asset["id"]
    [row] = api.rows(user)
    assert row["status"] == "failed" and str(row["id"]) == asset["id"]
    assert row["file_metadata"]["error"]["reason"] == "SourceNotFound"


def test_wait_answers_202_at_its_bound_and_a_cancel_stops_the_import(live: LiveWorld) -> None:
    api = live.api
    user = api.new_user()
    slow = live.env.origin.url("/drip?delay=1&size=100000")
    started = time.monotonic()
    answer = api.post_import(user, {"url": slow, "type": "video"}, params={"wait": 2})
    waited = time.monotonic() - started
    assert answer.status_code == 202, answer.text
    assert 1.9 <= waited < 20
    name = answer.json()["metadata"]["import_job_id"]
    cancelled = api.request("DELETE", f"/api/v1/imports/{name}", user)
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] in ("queued", "started")
    eventually(lambda: api.mediaimport(name) is None, timeout=60, what="the MediaImport to go")
    row = eventually(lambda: (r := api.rows(user)[0])["status"] == "failed" and r,
                     timeout=60, what="the row to be failed")
    assert row["file_metadata"]["error"]["reason"] == "Cancelled"
    assert api.request("GET", f"/api/v1/imports/{name}", user).status_code == 404
    assert api.request("GET", f"/api/v1/media/{answer.json()['id']}", user).json()[
        "status"] == "failed"


def test_a_stream_ends_with_a_cancelled_message_when_the_import_is_deleted(
    live: LiveWorld,
) -> None:
    api = live.api
    user = api.new_user()
    answer = api.post_import(user, {"url": live.env.origin.url("/drip?delay=1&size=100000")})
    name = answer.json()["metadata"]["import_job_id"]
    with ThreadPoolExecutor(2) as pool:
        sse = pool.submit(sse_messages, live, user, name)
        ws = pool.submit(ws_messages, live, user, name)
        time.sleep(1.5)
        assert api.request("DELETE", f"/api/v1/imports/{name}", user).status_code == 202
        for messages in (sse.result(timeout=60), ws.result(timeout=60)):
            assert messages[-1]["status"] == "failed"
            assert messages[-1]["error"]["reason"] == "Cancelled"
