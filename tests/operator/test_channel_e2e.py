"""The per-import channel against the real API server and a real S3 server that checks
signatures: credentials good for one live import only, progress that never touches a
finished import, uploads only under the import's prefix, and results believed only from
the Job's own pod once their objects are seen in S3."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import requests
from conftest import GROUP_PATH, eventually
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.kube import Json
from mediaimport_dev.kube import Kube as AdminKube
from mediaimport_dev.s3server import S3Server
from mediaimport_job.channel_protocol import STATUS_INTERVAL_S
from mediaimport_job.result import MediaInfo, ReadyResult
from mediaimport_operator.channel import ChannelServer
from mediaimport_operator.credentials import KeyRing
from mediaimport_operator.jobs import job_name, owner_reference
from mediaimport_operator.kube import Kube
from mediaimport_operator.metrics import REGISTRY
from mediaimport_operator.model import MediaImport
from mediaimport_operator.settings import Settings
from mediaimport_operator.storage import Storage

pytestmark = pytest.mark.e2e

T = TypeVar("T")
SECRET = "mediaimport-s3"
MiB = 1024 * 1024
BODY = b"a small stand-in for a video"
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def kubeconfig(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's client (its loaders read KUBECONFIG when first imported) is pointed
    at the test's control plane."""
    import kubernetes.config.kube_config  # noqa: PLC0415 - the loaders, slow to import

    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION",
                        str(control_plane.kubeconfig))


@dataclass
class World:
    """A channel server on an event loop of its own, one namespace with the S3 Secret."""

    admin: AdminKube
    namespace: str
    bucket: str
    s3: S3Server
    settings: Settings
    server: ChannelServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    logs: pytest.LogCaptureFixture
    extra_namespaces: list[str] = field(default_factory=list)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def stop(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        for namespace in self.extra_namespaces:
            self.admin.delete(f"/api/v1/namespaces/{namespace}")

    # -- MediaImports ----------------------------------------------------------------
    def path(self, name: str, namespace: str | None = None) -> str:
        return f"{GROUP_PATH}/namespaces/{namespace or self.namespace}/mediaimports/{name}"

    def create(self, name: str | None = None, *, namespace: str | None = None,
               phase: str = "Importing", finalizers: list[str] | None = None) -> MediaImport:
        name = name or f"mi-{uuid.uuid4().hex[:6]}"
        namespace = namespace or self.namespace
        meta: Json = {"name": name}
        if finalizers:
            meta["finalizers"] = finalizers
        self.admin.create(f"{GROUP_PATH}/namespaces/{namespace}/mediaimports", {
            "apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport", "metadata": meta,
            "spec": {"url": "https://example.com/clip.mp4", "userId": "user-1"},
        })
        body = self.admin.merge_patch(self.path(name, namespace) + "/status",
                                      {"status": {"phase": phase}})
        return MediaImport.from_body(body)

    def status(self, mi: MediaImport) -> Json:
        body = self.admin.get(self.path(mi.ref.name, mi.ref.namespace))
        return dict(body.get("status") or {})

    def set_phase(self, mi: MediaImport, phase: str) -> None:
        self.admin.merge_patch(self.path(mi.ref.name, mi.ref.namespace) + "/status",
                               {"status": {"phase": phase}})

    def prefix(self, mi: MediaImport) -> str:
        return f"media/user-1/{mi.ref.uid}"

    # -- the channel -----------------------------------------------------------------
    def token(self, mi: MediaImport, **kwargs: Any) -> str:
        return self.server.credential_for(mi, **kwargs)

    def post(self, mi: MediaImport, endpoint: str, body: Json | None = None, *,
             token: str | None = None, name: str | None = None) -> requests.Response:
        url = (f"{self.server.url}/v1/imports/{mi.ref.namespace}/{name or mi.ref.name}/"
               f"{endpoint}")
        headers = {"Authorization": f"Bearer {token if token is not None else self.token(mi)}"}
        return requests.post(url, json=body or {}, headers=headers, timeout=30)

    # -- the Job and its pod ---------------------------------------------------------
    def job_with_pod(self, mi: MediaImport) -> Json:
        """The import's Job (controlled by the import) and the pod the Job controller made
        for it; the pod never runs (a scheduling gate holds it)."""
        name = job_name(mi)
        self.admin.create(f"/apis/batch/v1/namespaces/{mi.ref.namespace}/jobs", {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "ownerReferences": [owner_reference(mi)]},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "schedulingGates": [{"name": "mediaimport.dev/held"}],
                "containers": [{"name": "import", "image": "registry.invalid/none:1"}],
            }}},
        })

        def pod() -> Json | None:
            items = self.admin.get(f"/api/v1/namespaces/{mi.ref.namespace}/pods",
                                   labelSelector=f"batch.kubernetes.io/job-name={name}")["items"]
            return items[0] if items else None

        found: Json = eventually(pod, timeout=30, what=f"the pod of Job {name}")
        return found

    def lone_pod(self, mi: MediaImport) -> Json:
        """A pod that names the import's Job in a label but is not the Job's."""
        return self.admin.create(f"/api/v1/namespaces/{mi.ref.namespace}/pods", {
            "metadata": {"name": f"forged-{uuid.uuid4().hex[:6]}",
                         "labels": {"batch.kubernetes.io/job-name": job_name(mi)}},
            "spec": {"schedulingGates": [{"name": "mediaimport.dev/held"}],
                     "containers": [{"name": "import", "image": "registry.invalid/none:1"}]},
        })

    def store(self, key: str, body: bytes = BODY, content_type: str = "video/mp4") -> None:
        self.s3.client().put_object(Bucket=self.bucket, Key=key, Body=body,
                                    ContentType=content_type,
                                    Metadata={"sha256": hashlib.sha256(body).hexdigest()})


MakeWorld = Callable[..., World]


@pytest.fixture
def make_world(
    kubeconfig: None, crd: str, kube: AdminKube, namespace: str, s3_server: S3Server,
    s3_bucket: str, caplog: pytest.LogCaptureFixture,
) -> Iterator[MakeWorld]:
    # Every log record is built, so a bad one fails here; none may hold a secret.
    caplog.set_level(logging.DEBUG, logger="mediaimport_operator")
    kube.create(f"/api/v1/namespaces/{namespace}/secrets",
                {"metadata": {"name": SECRET}, "stringData": s3_server.env()})
    worlds: list[World] = []

    def make(**server_options: Any) -> World:
        settings = Settings(bucket=s3_bucket, s3_secret_name=SECRET, channel_host="127.0.0.1",
                            channel_port=0, identity="channel-test")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        async def start() -> ChannelServer:
            client = Kube()
            server = ChannelServer(settings, ring=KeyRing({"1": os.urandom(32)}), kube=client,
                                   storage=Storage.from_settings(settings, client),
                                   **server_options)
            await server.start()
            return server

        server = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
        world = World(kube, namespace, s3_bucket, s3_server, settings, server, loop, thread,
                      caplog)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.stop()


@pytest.fixture
def world(make_world: MakeWorld) -> World:
    return make_world(lookup_ttl=0.0)


def report(phase: str = "downloading", percent: float | None = 42.0, **fields: Any) -> Json:
    return {"phase": phase, "percent": percent, "bytesDownloaded": 42, "bytesTotal": 100,
            "updatedAt": "2026-12-07T10:00:00Z", **fields}


def progress_writes(result: str) -> float:
    return REGISTRY.get_sample_value("mediaimport_progress_writes_total",
                                     {"result": result}) or 0.0


# -- credentials ----------------------------------------------------------------------
def test_a_credential_is_good_for_its_own_live_import_only(world: World) -> None:
    a, b = world.create(), world.create()
    assert world.post(a, "progress", report()).status_code == 204
    assert world.server.url.startswith("http://127.0.0.1:")

    refusals = {
        "no credential": world.post(a, "progress", report(), token=""),
        "not a credential": world.post(a, "progress", report(), token="x.y"),
        "another import's": world.post(b, "progress", report(), token=world.token(a)),
        "expired": world.post(a, "progress", report(),
                              token=world.token(a, deadline_s=1, now=time.time() - 1000)),
        "no such import": world.post(a, "progress", report(), name="nothing-here"),
    }
    codes = {case: answer.status_code for case, answer in refusals.items()}
    assert codes == {"no credential": 401, "not a credential": 401, "another import's": 403,
                     "expired": 403, "no such import": 404}
    assert refusals["another import's"].json()["reason"] == "WrongImport"
    assert refusals["expired"].json()["reason"] == "Expired"


def test_a_credential_dies_with_its_import(world: World) -> None:
    old = world.create("reused")
    token = world.token(old)
    world.admin.delete(world.path("reused"))
    assert world.post(old, "progress", report(), token=token).status_code == 404
    # The same name again is another import (another uid): the old credential is refused.
    new = world.create("reused")
    assert world.post(new, "progress", report(), token=token).status_code == 403
    assert world.post(new, "progress", report()).status_code == 204


def test_a_finished_or_deleting_import_takes_nothing(world: World) -> None:
    done = world.create()
    world.set_phase(done, "Ready")
    for endpoint in ("progress", "uploads/put", "result"):
        answer = world.post(done, endpoint, report())
        assert (answer.status_code, answer.json()["reason"]) == (409, "Finished"), endpoint
    failed = world.create()
    world.set_phase(failed, "Failed")
    assert world.post(failed, "progress", report()).status_code == 409

    held = world.create(finalizers=["mediaimport.dev/test-hold"])
    world.admin.delete(world.path(held.ref.name))
    answer = world.post(held, "progress", report())
    assert (answer.status_code, answer.json()["reason"]) == (409, "Deleting")
    world.admin.merge_patch(world.path(held.ref.name), {"metadata": {"finalizers": None}})


# -- progress -------------------------------------------------------------------------
def test_progress_reaches_the_status_and_never_goes_backwards(world: World) -> None:
    mi = world.create()
    assert world.post(mi, "progress", report(percent=42.5)).status_code == 204
    progress = eventually(lambda: world.status(mi).get("progress"), timeout=10,
                          what="status.progress")
    assert progress["summary"] == "42%" and progress["bytesTotal"] == 100
    # A lower percent in the same attempt (a new phase: written at once) is clamped.
    assert world.post(mi, "progress", report("uploading", percent=30)).status_code == 204
    later = eventually(lambda: (p := world.status(mi).get("progress")) and
                       p["phase"] == "uploading" and p, timeout=10, what="the new phase")
    assert (later["percent"], later["summary"]) == (42.5, "42%")
    bad = world.post(mi, "progress", report(percent=101))
    assert (bad.status_code, bad.json()["reason"]) == (422, "Invalid")


def test_a_report_held_back_by_the_interval_is_written_when_it_is_up(world: World) -> None:
    mi = world.create()
    started = time.monotonic()
    assert world.post(mi, "progress", report(percent=10)).status_code == 204
    assert world.post(mi, "progress", report(percent=20)).status_code == 204
    eventually(lambda: (world.status(mi).get("progress") or {}).get("percent") == 10,
               timeout=10, what="the first report")
    eventually(lambda: world.status(mi)["progress"]["percent"] == 20, timeout=10,
               what="the held-back report")
    assert time.monotonic() - started >= STATUS_INTERVAL_S - 0.1


def test_a_late_report_never_touches_a_finished_import(make_world: MakeWorld) -> None:
    # The channel's lookup says "Importing" for a minute: only the status patch's test of
    # the phase stands between the report and the finished import.
    world = make_world(lookup_ttl=60.0)
    mi = world.create()
    assert world.post(mi, "progress", report(percent=10)).status_code == 204
    eventually(lambda: world.status(mi).get("progress"), timeout=10, what="status.progress")
    world.set_phase(mi, "Ready")
    finished = progress_writes("finished")
    assert world.post(mi, "progress", report("finishing", percent=99)).status_code == 204
    eventually(lambda: progress_writes("finished") > finished, timeout=10,
               what="the refused write")
    status = world.status(mi)
    assert status["phase"] == "Ready" and status["progress"]["summary"] == "10%"


def test_progress_writes_are_dropped_not_queued_when_the_lane_is_full(
    make_world: MakeWorld,
) -> None:
    world = make_world(lookup_ttl=0.0, progress_concurrency=0)
    mi = world.create()
    dropped = progress_writes("dropped")
    assert world.post(mi, "progress", report()).status_code == 204
    assert progress_writes("dropped") == dropped + 1
    assert "progress" not in world.status(mi)


# -- uploads --------------------------------------------------------------------------
def test_a_put_is_signed_for_the_imports_prefix_only(world: World) -> None:
    mi = world.create()
    key = f"{world.prefix(mi)}/clip.mp4"
    request = {"key": key, "contentType": "video/mp4", "sha256": SHA, "contentLength": len(BODY)}
    answer = world.post(mi, "uploads/put", request)
    assert answer.status_code == 200, answer.text
    signed = answer.json()
    assert requests.put(signed["url"], data=BODY, headers={**signed["headers"],
                        "Content-Type": "text/html"}, timeout=10).status_code == 403
    stored = requests.put(signed["url"], data=BODY, headers=signed["headers"], timeout=10)
    assert stored.status_code == 200
    head = world.s3.client().head_object(Bucket=world.bucket, Key=key)
    assert (head["ContentType"], head["Metadata"]["sha256"]) == ("video/mp4", SHA)

    token = world.token(mi)
    assert world.post(mi, "uploads/put", request, token=token).status_code == 200
    logged = world.logs.text + "".join(str(r.__dict__) for r in world.logs.records)
    assert token not in logged and "X-Amz-Signature" not in logged
    assert signed["url"].split("?")[1] not in logged

    for outside in ("media/user-2/someone-else/clip.mp4", f"{world.prefix(mi)}/../x/clip.mp4"):
        refused = world.post(mi, "uploads/put", {**request, "key": outside})
        assert (refused.status_code, refused.json()["reason"]) == (403, "KeyRefused")
        refused = world.post(mi, "uploads/multipart", {"key": outside})
        assert refused.status_code == 403


def test_a_multipart_upload_through_the_channel(world: World) -> None:
    mi = world.create()
    key = f"{world.prefix(mi)}/big.mov"
    chunks = [b"a" * (5 * MiB), b"b" * 100]
    whole = b"".join(chunks)
    created = world.post(mi, "uploads/multipart", {"key": key})
    assert created.status_code == 200, created.text
    upload_id = created.json()["uploadId"]
    signed = world.post(mi, "uploads/parts", {"key": key, "uploadId": upload_id, "first": 1,
                                              "count": 2}).json()
    parts = []
    for part, chunk in zip(signed["parts"], chunks, strict=True):
        answer = requests.put(part["url"], data=chunk, timeout=30)
        assert answer.status_code == 200
        parts.append({"partNumber": part["partNumber"], "etag": answer.headers["ETag"]})
    done = world.post(mi, "uploads/complete", {
        "key": key, "uploadId": upload_id, "parts": parts, "contentType": "video/quicktime",
        "sha256": hashlib.sha256(whole).hexdigest(), "size": len(whole)})
    assert done.status_code == 200, done.text
    head = world.s3.client().head_object(Bucket=world.bucket, Key=key)
    assert (head["ContentLength"], head["ContentType"], head["Metadata"]["sha256"]) == (
        len(whole), "video/quicktime", hashlib.sha256(whole).hexdigest())

    other = world.post(mi, "uploads/multipart", {"key": f"{world.prefix(mi)}/other.mov"})
    other_id = other.json()["uploadId"]
    aborted = world.post(mi, "uploads/abort", {"key": f"{world.prefix(mi)}/other.mov",
                                               "uploadId": other_id})
    assert aborted.status_code == 204


def test_a_namespace_without_the_s3_secret_is_told_to_retry(world: World) -> None:
    bare = f"t-{uuid.uuid4().hex[:10]}"
    world.admin.create("/api/v1/namespaces", {"metadata": {"name": bare}})
    world.extra_namespaces.append(bare)
    mi = world.create(namespace=bare)
    answer = world.post(mi, "uploads/multipart", {"key": f"{world.prefix(mi)}/clip.mp4"})
    assert answer.status_code == 503
    assert answer.json()["reason"] == "StorageUnavailable"
    assert f'does not exist in namespace {bare}' in answer.json()["message"]


# -- the result -----------------------------------------------------------------------
def ready(world: World, mi: MediaImport, **changes: Any) -> Json:
    prefix = world.prefix(mi)
    fields = {"type": "video", "bucket": world.bucket, "key": f"{prefix}/clip.mp4",
              "thumbnailKey": f"{prefix}/thumbnail.jpg", "name": "clip.mp4",
              "size": len(BODY), "sha256": SHA, "contentType": "video/mp4",
              "media": MediaInfo(duration=2.0, width=64, height=48).model_dump()}
    return ReadyResult.model_validate({**fields, **changes}).model_dump()


def submission(pod: Json, result: Json) -> Json:
    return {"pod": {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
            "result": result}


def invalid_results() -> float:
    return REGISTRY.get_sample_value("mediaimport_invalid_results_total") or 0.0


def test_a_checked_result_from_the_jobs_pod_is_written(world: World) -> None:
    mi = world.create()
    world.store(f"{world.prefix(mi)}/clip.mp4")
    world.store(f"{world.prefix(mi)}/thumbnail.jpg", b"jpeg", "image/jpeg")
    pod = world.job_with_pod(mi)

    failed = {"status": "failed", "error": {"reason": "SourceUnavailable", "message": "Gone.",
                                            "retryable": False}}
    answer = world.post(mi, "result", submission(pod, failed))
    assert answer.status_code == 200 and "result" not in world.status(mi)

    answer = world.post(mi, "result", submission(pod, ready(world, mi)))
    assert answer.status_code == 200, answer.text
    result = world.status(mi)["result"]
    assert result == {"bucket": world.bucket, "key": f"{world.prefix(mi)}/clip.mp4",
                      "thumbnailKey": f"{world.prefix(mi)}/thumbnail.jpg", "name": "clip.mp4",
                      "size": len(BODY), "sha256": SHA, "contentType": "video/mp4",
                      "media": {"duration": 2.0, "width": 64, "height": 48}}
    world.set_phase(mi, "Ready")
    assert world.post(mi, "result", submission(pod, ready(world, mi))).status_code == 409


def test_a_result_from_a_pod_the_job_does_not_control_is_refused(world: World) -> None:
    mi = world.create()
    world.store(f"{world.prefix(mi)}/clip.mp4")
    world.store(f"{world.prefix(mi)}/thumbnail.jpg", b"jpeg", "image/jpeg")
    pod = world.job_with_pod(mi)
    forged = world.lone_pod(mi)
    for sender in (forged, {"metadata": {"name": pod["metadata"]["name"], "uid": "not-its-uid"}},
                   {"metadata": {"name": "no-such-pod", "uid": "x"}}):
        answer = world.post(mi, "result", submission(sender, ready(world, mi)))
        assert (answer.status_code, answer.json()["reason"]) == (403, "NotTheImportsPod")
    assert "result" not in world.status(mi)


@pytest.mark.parametrize(("case", "words"), [
    ("another bucket", "not the configured bucket"),
    ("a key outside the prefix", "not under the import's prefix"),
    ("a missing object", "does not exist"),
    ("a wrong size", "bytes, not the"),
])
def test_a_result_that_fails_its_checks_writes_nothing(world: World, case: str,
                                                       words: str) -> None:
    mi = world.create()
    prefix = world.prefix(mi)
    world.store(f"{prefix}/clip.mp4")
    world.store(f"{prefix}/thumbnail.jpg", b"jpeg", "image/jpeg")
    world.store("media/user-2/victim/clip.mp4")
    pod = world.job_with_pod(mi)
    claims = {
        "another bucket": ready(world, mi, bucket="someone-elses"),
        "a key outside the prefix": ready(world, mi, key="media/user-2/victim/clip.mp4"),
        "a missing object": ready(world, mi, key=f"{prefix}/gone.mp4", name="gone.mp4"),
        "a wrong size": ready(world, mi, size=len(BODY) * 2),
    }
    before = invalid_results()
    answer = world.post(mi, "result", submission(pod, claims[case]))
    assert (answer.status_code, answer.json()["reason"]) == (422, "InvalidResult")
    assert words in answer.json()["message"]
    assert "result" not in world.status(mi)
    assert invalid_results() == before + 1

    def event() -> Json | None:
        items = world.admin.get(f"/api/v1/namespaces/{world.namespace}/events",
                                fieldSelector=f"involvedObject.name={mi.ref.name}")["items"]
        return next((e for e in items if e["reason"] == "InvalidResult"), None)

    posted = eventually(event, timeout=10, what="the InvalidResult Event")
    assert posted["type"] == "Warning" and words in posted["message"]


def test_the_health_endpoint_answers(world: World) -> None:
    assert requests.get(f"{world.server.url}/healthz", timeout=5).json() == {"status": "ok"}
    mi = world.create()
    unknown = world.post(mi, "uploads/delete", {})
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "Not Found")
    wrong_method = requests.get(f"{world.server.url}/v1/imports/{mi.ref.namespace}/"
                                f"{mi.ref.name}/progress", timeout=5)
    assert wrong_method.status_code == 405 and "message" in wrong_method.json()
    counted = REGISTRY.get_sample_value("mediaimport_channel_requests_total",
                                        {"endpoint": "healthz", "code": "200"})
    assert counted is not None and counted >= 1
