"""An import's progress (``status.progress``, written by the operator from its pod's
reports) in every place the API shows an import: the job status, the server-sent events,
the WebSocket, and the asset of an import still uploading.

The quiet world has no operator: the test writes status.progress to the MediaImport on
the control plane as the operator does (the status subresource), and reads the API."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
import requests
from api_world import ApiServer, eventually, follow_sse, follow_ws
from mediaimport_api.routes.imports import Frame
from mediaimport_api.schemas import ImportProgress
from mediaimport_operator.model import ProgressStatus

URL = "https://cdn.example.test/clips/progress.mp4"


def report(phase: str, percent: float | None, downloaded: int, **extra: Any) -> dict[str, Any]:
    """status.progress as the operator writes it (the CRD's fields, camelCase)."""
    return {
        "summary": f"{percent:g}%" if percent is not None else phase,
        "phase": phase, "bytesDownloaded": downloaded, "bytesTotal": 10_000_000,
        "bytesUploaded": extra.pop("uploaded", 0), "percent": percent,
        "speed": 2_000_000.0, "eta": extra.pop("eta", None), "attempt": 1,
        "updatedAt": extra.pop("at", "2026-12-07T18:00:01Z"),
    }


def write_status(api: ApiServer, name: str, status: dict[str, Any]) -> None:
    api.kube.merge_patch(f"{api.mi_path(name)}/status", {"status": status})


@pytest.mark.e2e
def test_progress_reaches_the_job_status_both_streams_and_the_uploading_asset(
    quiet_api: ApiServer,
) -> None:
    api = quiet_api
    user = api.new_user()
    accepted = api.post_import(user, {"url": URL, "type": "video"}).json()
    name, asset_id = accepted["metadata"]["import_job_id"], accepted["id"]
    sse, ws = follow_sse(api, user, name), follow_ws(api, user, name)
    for stream in (sse, ws):
        stream.wait_for(1)
    reports = [report("downloading", 10.0, 1_000_000, eta=4.5),
               report("downloading", 42.5, 4_250_000, eta=2.9, at="2026-12-07T18:00:03Z")]
    sent = 1
    for index, progress in enumerate(reports):
        write_status(api, name, {"phase": "Importing", "progress": progress})
        sent += 1
        for stream in (sse, ws):
            stream.wait_for(sent)
        if index == 0:
            # A change no message shows (a label; the same progress written again) sends
            # nothing: one message per distinct state.
            api.kube.merge_patch(api.mi_path(name), {"metadata": {"labels": {"seen": "yes"}}})
            write_status(api, name, {"phase": "Importing", "progress": progress})
    polled = api.request("GET", f"/api/v1/imports/{name}", user)
    assert polled.status_code == 200, polled.text
    assert polled.json()["status"] == "started"
    assert polled.json()["progress"] == reports[-1]
    # The uploading asset carries its import's progress too.
    asset = api.request("GET", f"/api/v1/media/{asset_id}", user).json()
    assert asset["status"] == "uploading" and asset["progress"] == reports[-1]
    # A listing does not read every import: no progress there.
    [listed] = api.request("GET", "/api/v1/media", user).json()["items"]
    assert listed["id"] == asset_id and listed["progress"] is None
    # Finished: the final progress stays, and the streams end with it.
    final = report("finishing", 100.0, 10_000_000, uploaded=10_000_000, eta=0.0,
                   at="2026-12-07T18:00:06Z")
    write_status(api, name, {"phase": "Ready", "progress": final})
    for stream in (sse, ws):
        assert stream.ended.wait(20), stream.messages
        assert stream.error is None, stream.error
        assert [(m["status"], m["progress"]) for m in stream.messages] == [
            ("queued", None), ("started", reports[0]), ("started", reports[1]),
            ("finished", final)]
    assert api.request("GET", f"/api/v1/imports/{name}", user).json()["progress"] == final
    # Once the row is no longer uploading the asset answers no progress.
    with psycopg.connect(api.postgres.url) as conn:
        conn.execute("UPDATE media_assets SET status = 'ready' WHERE id = %s", (asset_id,))
    assert api.request("GET", f"/api/v1/media/{asset_id}", user).json()["progress"] is None


@pytest.mark.e2e
def test_an_asset_shows_only_the_progress_of_the_import_that_wrote_it(
    quiet_api: ApiServer,
) -> None:
    """A MediaImport of the same name made later (another uid) is another import."""
    api = quiet_api
    user = api.new_user()
    accepted = api.post_import(user, {"url": URL}).json()
    name = accepted["metadata"]["import_job_id"]
    body = api.mediaimport(name)
    assert body is not None
    api.kube.delete(api.mi_path(name))
    eventually(lambda: api.mediaimport(name) is None, timeout=20, what="the deletion")
    api.kube.create(api.mi_path(), {"apiVersion": body["apiVersion"], "kind": body["kind"],
                                    "metadata": {"name": name}, "spec": body["spec"]})
    write_status(api, name, {"phase": "Importing",
                             "progress": report("downloading", 50.0, 5_000_000)})
    asset = api.request("GET", f"/api/v1/media/{accepted['id']}", user).json()
    assert asset["status"] == "uploading" and asset["progress"] is None
    api.kube.delete(api.mi_path(name))


@pytest.mark.e2e
def test_the_openapi_document_describes_progress(quiet_api: ApiServer) -> None:
    document = requests.get(f"{quiet_api.url}/openapi.json", timeout=10).json()
    schema = document["components"]["schemas"]["ImportProgress"]
    assert set(schema["properties"]) == {
        "summary", "phase", "bytesDownloaded", "bytesTotal", "bytesUploaded", "percent",
        "speed", "eta", "attempt", "updatedAt"}
    for model in ("JobStatus", "Asset"):
        refs = json.dumps(document["components"]["schemas"][model]["properties"]["progress"])
        assert "#/components/schemas/ImportProgress" in refs, model


def test_the_api_answers_every_field_the_operator_writes() -> None:
    """One definition: the answer's fields are the MediaImport's status.progress fields."""
    ours = {field.alias or name for name, field in ImportProgress.model_fields.items()}
    theirs = {field.alias or name for name, field in ProgressStatus.model_fields.items()}
    assert ours == theirs


def test_a_stream_never_goes_back_to_an_older_version() -> None:
    """A watch event may arrive after the stream's own read of a newer version."""
    newer, older = Frame("120", "{}", False), Frame("119", "{}", False)
    assert older.older_than(newer) and not newer.older_than(older)
    assert not Frame("", "{}", False).older_than(newer)  # not a number: never judged older
