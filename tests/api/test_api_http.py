"""The API over real HTTP against the control plane and Postgres, without an operator:
auth, the error shape, validation, Idempotency-Key, reading and listing assets."""

from __future__ import annotations

import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from api_world import ApiServer
from mediaimport_job.filenames import sanitize
from support.nesting import nested
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

pytestmark = pytest.mark.e2e

URL = "https://cdn.example.test/clips/sunset.mp4"
SEED_KEYS = {"id", "name", "type", "url", "thumbnail_url", "size", "created_at", "metadata"}
ASSET_KEYS = {"id", "name", "type", "status", "url", "thumbnail_url", "size", "checksum",
              "created_at", "updated_at", "metadata", "progress"}


def error_of(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def nothing_created(api: ApiServer, user: str) -> None:
    assert api.mediaimports(user) == []
    assert api.rows(user) == []


# -- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/media/import-from-url"), ("GET", "/api/v1/media"),
     ("GET", f"/api/v1/media/{uuid.uuid4()}"), ("GET", "/api/v1/imports/x"),
     ("DELETE", "/api/v1/imports/x"), ("POST", "/api/v1/webhooks/replicate/urls"),
     ("GET", "/api/v1/imports/x/events"), ("GET", "/api/v1/no-such-route")],
)
def test_missing_and_unknown_tokens_get_401_with_a_challenge(
    quiet_api: ApiServer, method: str, path: str
) -> None:
    missing = quiet_api.request(method, path, json={"url": URL})
    error_of(missing, 401, "unauthorized")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    unknown = quiet_api.request(method, path, json={"url": URL},
                                headers={"Authorization": "Bearer not-a-token"})
    error_of(unknown, 401, "unauthorized")
    assert 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]


def test_authentication_comes_before_anything_about_the_body(quiet_api: ApiServer) -> None:
    path = "/api/v1/media/import-from-url"
    error_of(quiet_api.request("POST", path, data=b"x" * 200_000,
                               headers={"Content-Type": "application/json"}), 401, "unauthorized")
    error_of(quiet_api.request("POST", path, data="not json",
                               headers={"Content-Type": "text/plain"}), 401, "unauthorized")
    error_of(quiet_api.request("POST", path, json={"url": "ftp://x"}), 401, "unauthorized")


def test_a_token_added_to_the_file_works_without_a_restart(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()  # appended to the tokens file just now
    answer = quiet_api.request("GET", "/api/v1/media", user)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"items": [], "next_cursor": None}


def test_the_user_comes_from_the_token_never_from_the_body(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    answer = quiet_api.post_import(user, {"url": URL, "userId": "someone-else",
                                          "user_id": "someone-else"})
    assert answer.status_code == 202, answer.text
    [mi] = quiet_api.mediaimports(user)
    assert mi["spec"]["userId"] == user
    assert quiet_api.mediaimports("someone-else") == []


# -- import-from-url -----------------------------------------------------------------------


def test_an_import_answers_202_in_the_seed_shape_and_is_readable_at_once(
    quiet_api: ApiServer,
) -> None:
    user = quiet_api.new_user()
    answer = quiet_api.post_import(user, {"url": URL, "type": "video",
                                          "metadata": {"prompt": "a sunset", "aiGenerated": True}})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert set(body) == SEED_KEYS
    assert body["url"] == "" and body["thumbnail_url"] is None and body["size"] == 0
    assert (body["name"], body["type"]) == ("sunset.mp4", "video")
    name = body["metadata"]["import_job_id"]
    assert body["metadata"] == {"import_job_id": name, "status": "processing"}
    mi = quiet_api.mediaimport(name)
    assert mi is not None
    assert mi["spec"]["assetId"] == body["id"]
    assert mi["spec"]["url"] == URL and mi["spec"]["userId"] == user
    assert mi["spec"]["metadata"] == {"prompt": "a sunset", "aiGenerated": True}
    [row] = quiet_api.rows(user)
    assert (str(row["id"]), row["status"], row["file_type"]) == (body["id"], "uploading", "video")
    assert row["file_metadata"]["mediaimport"]["name"] == name
    # Right after the 202: the asset, uploading; never a 404.
    asset = quiet_api.request("GET", f"/api/v1/media/{body['id']}", user)
    assert asset.status_code == 200, asset.text
    got = asset.json()
    assert set(got) == ASSET_KEYS
    assert (got["status"], got["url"], got["thumbnail_url"], got["size"]) == (
        "uploading", "", None, 0)
    assert got["metadata"]["import_job_id"] == name
    assert got["metadata"]["prompt"] == "a sunset"
    assert "mediaimport" not in got["metadata"]
    status = quiet_api.request("GET", f"/api/v1/imports/{name}", user)
    assert status.status_code == 200
    assert status.json() == {"status": "queued", "result": None, "error": None,
                             "progress": None, "phase": "Pending", "conditions": []}


def test_an_undeclared_type_reads_the_same_in_the_202_the_asset_and_the_listing(
    quiet_api: ApiServer,
) -> None:
    """The 202 names the type the file name suggests; the asset must not contradict it
    (type null) until the import is probed, and the type filter must find it."""
    user = quiet_api.new_user()
    answer = quiet_api.post_import(user, {"url": URL})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["type"] == "video"
    asset = quiet_api.request("GET", f"/api/v1/media/{body['id']}", user).json()
    assert (asset["status"], asset["type"]) == ("uploading", "video")
    videos = quiet_api.request("GET", "/api/v1/media?type=video", user).json()
    assert [item["id"] for item in videos["items"]] == [body["id"]]
    # The MediaImport declares no type: the job still judges the file by what it is.
    mi = quiet_api.mediaimport(body["metadata"]["import_job_id"])
    assert mi is not None and "type" not in mi["spec"]
    # A name without a known extension suggests nothing, in the 202 and after it.
    other = quiet_api.post_import(user, {"url": "http://cdn.test/download"}).json()
    assert other["type"] is None
    assert quiet_api.request("GET", f"/api/v1/media/{other['id']}", user).json()["type"] is None


def test_names_are_sanitised_as_the_job_does(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    answer = quiet_api.post_import(user, {"url": URL, "name": "../../etc/\u202epasswd.mp4"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["name"] == sanitize("../../etc/\u202epasswd.mp4") == "_.._etc_passwd.mp4"
    [mi] = quiet_api.mediaimports(user)
    assert mi["spec"]["name"] == "_.._etc_passwd.mp4"


@pytest.mark.parametrize(
    ("body", "where"),
    [({}, "url"), ({"url": 42}, "url"), ({"url": "ftp://cdn.test/a.mp4"}, "url"),
     ({"url": "https://cdn.test/" + "a" * 5000}, "url"),
     ({"url": "http://127.0.0.1/a.mp4"}, "url"), ({"url": "http://[::1]/a.mp4"}, "url"),
     ({"url": "http://169.254.169.254/latest"}, "url"), ({"url": "http://2130706433/"}, "url"),
     ({"url": "http://10.0.0.1/a.mp4"}, "url"), ({"url": "http://localhost/a.mp4"}, "url"),
     ({"url": "https://user:secret@cdn.test/a.mp4"}, "url"),
     ({"url": URL, "name": "///"}, "name"), ({"url": URL, "name": "x" * 300}, "name"),
     ({"url": URL, "type": "document"}, "type"),
     ({"url": URL, "metadata": {f"k{i}": i for i in range(65)}}, "metadata"),
     ({"url": URL, "metadata": {"blob": "x" * 17000}}, "metadata"),
     ({"url": URL, "metadata": ["not", "an", "object"]}, "metadata"),
     ({"url": URL, "metadata": {"note": "a\u0000b"}}, "metadata"),
     ({"url": URL, "metadata": {"n": 10**30}}, "metadata"),
     ({"url": URL, "metadata": {"deep": json.loads("[" * 40 + "1" + "]" * 40)}}, "metadata"),
     (["not", "an", "object"], "")],
)
def test_each_validation_error_is_a_422_and_creates_nothing(
    quiet_api: ApiServer, body: Any, where: str
) -> None:
    user = quiet_api.new_user()
    error = error_of(quiet_api.post_import(user, body), 422, "validation_failed")
    assert where in error["message"]
    if where:
        assert any(where in detail["loc"] for detail in error["details"]), error
    nothing_created(quiet_api, user)


def test_an_allowed_network_is_accepted(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    answer = quiet_api.post_import(user, {"url": "http://127.0.0.2:9/a.mp4"})
    assert answer.status_code == 202, answer.text


def test_oversized_non_json_and_malformed_bodies(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    path = "/api/v1/media/import-from-url"
    big = json.dumps({"url": URL, "metadata": {"x": "y" * 70_000}})
    error = error_of(quiet_api.request("POST", path, user, data=big,
                                       headers={"Content-Type": "application/json"}),
                     413, "payload_too_large")
    assert error["details"] == {"limit_bytes": 65536}

    def chunks() -> Any:
        for _ in range(70):
            yield b" " * 1024

    error_of(quiet_api.request("POST", path, user, data=chunks(),
                               headers={"Content-Type": "application/json"}),
             413, "payload_too_large")
    error_of(quiet_api.request("POST", path, user, data=f"url={URL}",
                               headers={"Content-Type": "application/x-www-form-urlencoded"}),
             415, "unsupported_media_type")
    error_of(quiet_api.request("POST", path, user, data=json.dumps({"url": URL})),
             415, "unsupported_media_type")  # no Content-Type at all
    malformed = error_of(quiet_api.request("POST", path, user, data="{not json",
                                           headers={"Content-Type": "application/json"}),
                         422, "validation_failed")
    # Says what is wrong and where, not pydantic's "1: JSON decode error".
    assert malformed["message"] == (
        "The body is not valid JSON: Expecting property name enclosed in double quotes "
        "(at character 1).")
    nothing_created(quiet_api, user)


# -- Idempotency-Key -----------------------------------------------------------------------


def test_a_repeated_key_returns_the_same_import(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    key = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = quiet_api.post_import(user, {"url": URL, "type": "video"}, headers=key)
    again = quiet_api.post_import(user, {"url": URL, "type": "video"}, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(quiet_api.mediaimports(user)) == 1
    assert len(quiet_api.rows(user)) == 1
    # The same key from another user is another user's key.
    other = quiet_api.new_user()
    theirs = quiet_api.post_import(other, {"url": URL, "type": "video"}, headers=key)
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]


def test_a_key_repeated_concurrently_creates_one_import(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(
            lambda _: quiet_api.post_import(user, {"url": URL}, headers=key), range(12)))
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(quiet_api.mediaimports(user)) == 1
    assert len(quiet_api.rows(user)) == 1


def test_a_used_key_with_another_body_is_a_conflict(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = quiet_api.post_import(user, {"url": URL}, headers=key)
    assert first.status_code == 202
    error = error_of(quiet_api.post_import(user, {"url": URL + "?v=2"}, headers=key),
                     409, "idempotency_conflict")
    assert error["details"]["id"] == first.json()["id"]
    assert len(quiet_api.mediaimports(user)) == 1


def test_a_malformed_key_is_refused(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    error_of(quiet_api.post_import(user, {"url": URL}, headers={"Idempotency-Key": "k" * 300}),
             422, "validation_failed")
    nothing_created(quiet_api, user)


# -- other users, listing, unknown ids -----------------------------------------------------


def test_another_users_asset_and_import_are_404(quiet_api: ApiServer) -> None:
    owner, stranger = quiet_api.new_user(), quiet_api.new_user()
    body = quiet_api.post_import(owner, {"url": URL}).json()
    name = body["metadata"]["import_job_id"]
    for method, path in [("GET", f"/api/v1/media/{body['id']}"),
                         ("GET", f"/api/v1/imports/{name}"),
                         ("GET", f"/api/v1/imports/{name}/events"),
                         ("DELETE", f"/api/v1/imports/{name}")]:
        error_of(quiet_api.request(method, path, stranger), 404, "not_found")
    assert quiet_api.mediaimport(name) is not None
    assert quiet_api.request("GET", f"/api/v1/media/{body['id']}", owner).status_code == 200


@pytest.mark.parametrize("path", [f"/api/v1/media/{uuid.uuid4()}", "/api/v1/media/not-a-uuid",
                                  "/api/v1/imports/no-such-import", "/api/v1/imports/..%2F..",
                                  "/api/v1/imports/UPPER"])
def test_unknown_ids_are_404(quiet_api: ApiServer, path: str) -> None:
    error_of(quiet_api.request("GET", path, quiet_api.new_user()), 404, "not_found")


def test_listing_is_newest_first_filtered_and_paged(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    ids = [quiet_api.post_import(user, {"url": f"{URL}?n={n}", "type": kind}).json()["id"]
           for n, kind in enumerate(["video", "image", "video", "audio", "video"])]
    first = quiet_api.request("GET", "/api/v1/media?limit=2", user).json()
    assert [item["id"] for item in first["items"]] == ids[::-1][:2]
    rest = quiet_api.request("GET", f"/api/v1/media?limit=2&cursor={first['next_cursor']}",
                             user).json()
    last = quiet_api.request("GET", f"/api/v1/media?limit=2&cursor={rest['next_cursor']}",
                             user).json()
    assert [i["id"] for i in rest["items"] + last["items"]] == ids[::-1][2:]
    assert last["next_cursor"] is None
    videos = quiet_api.request("GET", "/api/v1/media?type=video&status=uploading", user).json()
    assert [item["id"] for item in videos["items"]] == [ids[4], ids[2], ids[0]]
    none = quiet_api.request("GET", "/api/v1/media?status=ready", user).json()
    assert none == {"items": [], "next_cursor": None}
    error_of(quiet_api.request("GET", "/api/v1/media?cursor=garbage", user),
             422, "validation_failed")
    error_of(quiet_api.request("GET", "/api/v1/media?limit=0", user), 422, "validation_failed")
    error_of(quiet_api.request("GET", "/api/v1/media?status=lost", user), 422,
             "validation_failed")


def test_unknown_routes_and_methods_use_the_error_shape(quiet_api: ApiServer) -> None:
    error_of(quiet_api.request("GET", "/nowhere"), 404, "not_found")
    refused = quiet_api.request("PUT", "/api/v1/media", quiet_api.new_user(), json={})
    assert error_of(refused, 405, "method_not_allowed")["message"] == (
        "PUT is not allowed here; this path takes GET.")
    assert refused.headers["Allow"] == "GET"


def test_health_readiness_metrics_and_openapi(quiet_api: ApiServer) -> None:
    admin = quiet_api.admin_url
    assert quiet_api.request("GET", "/healthz").json() == {"status": "ok"}
    ready = requests.get(f"{admin}/readyz", timeout=10).json()
    assert ready == {"status": "ready", "checks": {"kubernetes": "ok", "postgres": "ok"}}
    # Load balancers and uptime monitors often check with HEAD: the same answer, no body.
    for url in (f"{quiet_api.url}/healthz", f"{admin}/healthz", f"{admin}/readyz"):
        head = requests.head(url, timeout=10)
        assert (head.status_code, head.content) == (200, b""), url
        assert head.headers["content-type"] == "application/json"
    # An import of its own, so that its route's series exist whichever tests ran before.
    assert quiet_api.post_import(quiet_api.new_user(), {"url": URL}).status_code == 202
    metrics = quiet_api.metrics()
    for series in ("mediaimport_api_requests_total", "mediaimport_api_request_duration_seconds",
                   'mediaimport_api_webhooks_total{outcome="created"}',
                   'mediaimport_api_open_streams{kind="sse"}'):
        assert series in metrics, series
    assert 'route="/api/v1/media/import-from-url"' in metrics
    document = quiet_api.request("GET", "/openapi.json").json()
    assert {"/api/v1/media/import-from-url", "/api/v1/media/{asset_id}", "/api/v1/media",
            "/api/v1/imports/{name}", "/api/v1/imports/{name}/events",
            "/api/v1/webhooks/replicate", "/api/v1/webhooks/replicate/urls",
            "/healthz"} <= set(document["paths"])
    assert "/readyz" not in document["paths"]  # the admin port's, not the API's
    assert set(document["paths"]["/healthz"]) == {"get"}  # HEAD is GET's, not an operation
    assert "bearer" in json.dumps(document["components"]["securitySchemes"]).lower()
    assert quiet_api.request("GET", "/docs").status_code == 200


def test_readiness_and_metrics_are_served_on_the_admin_port_only(quiet_api: ApiServer) -> None:
    """Issue 24 item 4: the Ingress exposes the API's port, which served /readyz (with the
    database's host and user in its errors) and /metrics to anyone."""
    for path in ("/readyz", "/metrics"):
        for method in ("GET", "HEAD"):
            answer = quiet_api.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
        error_of(quiet_api.request("GET", path), 404, "not_found")
    # The admin port serves the probes and metrics, and nothing of the API.
    admin = quiet_api.admin_url
    assert requests.get(f"{admin}/metrics", timeout=10).status_code == 200
    for path in ("/api/v1/media", "/openapi.json", "/docs", "/api/v1/webhooks/replicate"):
        answer = requests.get(f"{admin}{path}", headers=quiet_api.auth(quiet_api.new_user()),
                              timeout=10)
        assert answer.status_code == 404, (path, answer.text)


def _mediaimport_watches(kube: Any) -> float:
    """Watches of MediaImports open at the API server now (all clients together)."""
    total = 0.0
    for line in kube.text("/metrics").splitlines():
        if (line.startswith("apiserver_longrunning_requests{") and 'verb="WATCH"' in line
                and 'resource="mediaimports"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_every_stream_rides_on_the_one_shared_watch(quiet_api: ApiServer) -> None:
    user = quiet_api.new_user()
    names = [quiet_api.post_import(user, {"url": f"{URL}?s={i}"}).json()["metadata"][
        "import_job_id"] for i in range(3)]
    before = _mediaimport_watches(quiet_api.kube)
    assert before >= 1  # the API's own watch (at least)
    streams = []
    for index in range(6):
        answer = quiet_api.request("GET", f"/api/v1/imports/{names[index % 3]}/events", user,
                                   stream=True)
        lines = answer.iter_lines(decode_unicode=True)
        assert next(line for line in lines if line.startswith("data:"))  # the current state
        streams.append((answer, lines))  # a reader dropped would close its connection
    try:
        open_streams = [line for line in quiet_api.metrics().splitlines()
                        if line.startswith('mediaimport_api_open_streams{kind="sse"}')]
        assert open_streams == ['mediaimport_api_open_streams{kind="sse"} 6.0']
        assert _mediaimport_watches(quiet_api.kube) == before
    finally:
        for answer, _ in streams:
            answer.close()


def test_a_mediaimport_nested_thousands_of_levels_does_not_stop_the_shared_watch(
    quiet_api: ApiServer,
) -> None:
    """The API server stores objects nested up to 10,000 levels (e.g. in spec.metadata, by
    kubectl); Python's decoder stopped at 1,000, and every stream went quiet."""
    owner, user = quiet_api.new_user(), quiet_api.new_user()
    deep = {"apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
            "metadata": {"name": f"deep-{uuid.uuid4().hex[:8]}"},
            "spec": {"userId": owner, "url": URL, "metadata": {"deep": nested(3000, 1)}}}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # this test's own client encodes and reads it
    created = False
    try:
        created = bool(quiet_api.kube.create(quiet_api.mi_path(), deep))
        name = quiet_api.post_import(user, {"url": URL}).json()["metadata"]["import_job_id"]
        answer = quiet_api.request("GET", f"/api/v1/imports/{name}/events", user, stream=True)
        lines = answer.iter_lines(decode_unicode=True)
        assert '"queued"' in next(line for line in lines if line.startswith("data:"))
        quiet_api.kube.merge_patch(f"{quiet_api.mi_path(name)}/status",
                                   {"status": {"phase": "Importing"}})
        deadline = time.monotonic() + 30  # the stream's keep-alives hand control back
        for line in lines:
            if line.startswith("data:"):
                assert '"started"' in line
                break
            assert time.monotonic() < deadline, "the change never reached the stream"
        answer.close()
    finally:
        # Other tests' clients list MediaImports across namespaces with Python's limit.
        if created:
            quiet_api.kube.delete(quiet_api.mi_path(deep["metadata"]["name"]))
        sys.setrecursionlimit(limit)
    assert quiet_api.mediaimport(deep["metadata"]["name"]) is None


def test_websocket_refusals_are_http_answers(quiet_api: ApiServer) -> None:
    owner, stranger = quiet_api.new_user(), quiet_api.new_user()
    name = quiet_api.post_import(owner, {"url": URL}).json()["metadata"]["import_job_id"]
    url = f"ws://127.0.0.1:{quiet_api.port}/api/v1/imports/{name}/ws"
    for headers, status in [({}, 401), ({"Authorization": "Bearer nope"}, 401),
                            (quiet_api.auth(stranger), 404)]:
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers, open_timeout=10)
        assert refused.value.response.status_code == status
        assert json.loads(refused.value.response.body)["error"]["code"] in (
            "unauthorized", "not_found")
    with connect(url, additional_headers=quiet_api.auth(owner), open_timeout=10) as socket:
        assert json.loads(socket.recv(timeout=10))["status"] == "queued"
