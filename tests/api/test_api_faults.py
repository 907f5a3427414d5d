"""Faults of the API that a review reproduced (issue 24), each over real HTTP against the
control plane and Postgres: deletion answered at once, webhook deliveries bound to their
context, revoked tokens, merged metadata, Idempotency-Key replays."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from api_world import SIGNING_KEY, WEBHOOK_SECRET, ApiServer, World, eventually, follow_sse
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mediaimport_api.context import WebhookContext, issue
from mediaimport_api.signatures import sign_headers
from mediaimport_dev.controlplane import ControlPlane
from psycopg.types.json import Jsonb
from test_api_webhooks import deliver, prediction, webhook_url

pytestmark = pytest.mark.e2e

URL = "https://cdn.example.test/clips/faults.mp4"
FINALIZER = "mediaimport.dev/test-cleanup"


def created_name(api: ApiServer, user: str, timeout: float = 20.0) -> str:
    """The name of the user's one MediaImport, once it exists."""
    items = eventually(lambda: api.mediaimports(user), timeout=timeout,
                       what="the MediaImport to exist")
    name: str = items[0]["metadata"]["name"]
    return name


# -- item 7: a deleted import ends ?wait and the streams at once ---------------------------


def test_a_deleted_import_answers_a_waiting_request_at_once(quiet_api: ApiServer) -> None:
    api = quiet_api
    user = api.new_user()
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(api.post_import, user, {"url": URL, "type": "video"},
                              params={"wait": 30})
        name = created_name(api, user)
        time.sleep(0.5)  # the request is waiting on the import now
        api.kube.delete(api.mi_path(name))
        answer = waiting.result(timeout=40)
    waited = time.monotonic() - started
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "import_failed"
    assert (error["details"]["reason"], error["details"]["import_job_id"]) == ("Cancelled", name)
    assert waited < 10, f"waited {waited:.1f} s of the 30 s bound"


def test_an_import_being_deleted_ends_waits_and_streams_at_once(quiet_api: ApiServer) -> None:
    """The operator's finalizer keeps a deleted MediaImport (deletionTimestamp set) while it
    stops the Job and fails the row: that is already the end of the import."""
    api = quiet_api
    user = api.new_user()
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(api.post_import, user, {"url": URL, "type": "video"},
                              params={"wait": 30})
        name = created_name(api, user)
        api.kube.merge_patch(api.mi_path(name), {"metadata": {"finalizers": [FINALIZER]}})
        stream = follow_sse(api, user, name)
        stream.wait_for(1)
        time.sleep(0.5)
        api.kube.delete(api.mi_path(name))
        try:
            answer = waiting.result(timeout=40)
            assert stream.ended.wait(20), stream.messages
        finally:
            api.kube.merge_patch(api.mi_path(name), {"metadata": {"finalizers": None}})
    assert time.monotonic() - started < 10
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"]["reason"] == "Cancelled"
    last = stream.messages[-1]
    assert (last["status"], last["error"]["reason"]) == ("failed", "Cancelled")


# -- item 2: a delivery is bound to the context it came with ------------------------------


def _replica(api: ApiServer, name: str) -> ApiServer:
    """A second API process on the same namespace, Postgres and tokens (another replica)."""
    return ApiServer(api.kube, api.namespace, api.bucket, api.postgres, api.tokens_file,
                     api.log_path.with_name(f"{name}.log"), api.env, tokens=api.tokens).start()


def test_a_delivery_re_posted_with_another_users_context_is_refused(
    quiet_api: ApiServer,
) -> None:
    alice, mallory = quiet_api.new_user("alice"), quiet_api.new_user("mallory")
    alice_url, mallory_url = webhook_url(quiet_api, alice), webhook_url(quiet_api, mallory)
    payload = json.dumps(prediction()).encode()
    headers = {**sign_headers(WEBHOOK_SECRET, f"msg_{uuid.uuid4().hex}", payload),
               "Content-Type": "application/json"}
    first = requests.post(alice_url, data=payload, headers=headers, timeout=30)
    assert first.status_code == 200, first.text
    # The same signed delivery (same webhook-id, body, signature), within its 5 minutes,
    # with mallory's context: on this replica and on another one.
    other = _replica(quiet_api, "replica-2")
    try:
        for base in (quiet_api.url, other.url):
            target = mallory_url.replace(quiet_api.url, base)
            refused = requests.post(target, data=payload, headers=headers, timeout=30)
            assert refused.status_code == 409, refused.text
            error = refused.json()["error"]
            assert error["code"] == "delivery_conflict"
            assert "already received through another webhook URL" in error["message"]
        # Replicate's own retry (same URL) still answers the same imports.
        again = requests.post(alice_url.replace(quiet_api.url, other.url), data=payload,
                              headers=headers, timeout=30)
        assert again.status_code == 200 and again.json() == first.json()
    finally:
        other.stop()
    assert quiet_api.mediaimports(mallory) == [] and quiet_api.rows(mallory) == []
    assert len(quiet_api.mediaimports(alice)) == 1


# -- item 3: a revoked token revokes its user's webhook URLs ------------------------------


def test_a_webhook_url_stops_working_when_its_users_token_is_revoked(
    quiet_api: ApiServer,
) -> None:
    user = quiet_api.new_user("revoked")
    url = webhook_url(quiet_api, user)
    token_line = next(line for line in quiet_api.tokens_file.read_text().splitlines()
                      if line.endswith(f" {user}"))
    quiet_api.tokens_file.write_text(quiet_api.tokens_file.read_text().replace(
        token_line + "\n", ""))
    eventually(lambda: quiet_api.request("GET", "/api/v1/media", user).status_code == 401,
               timeout=10, what="the token to be refused")
    refused = deliver(url, prediction())
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "invalid_context"
    assert "no longer holds a valid token" in refused.json()["error"]["message"]
    assert quiet_api.mediaimports(user) == [] and quiet_api.rows(user) == []


# -- item 10: context metadata that leaves no room for the prediction's -------------------


def test_webhook_metadata_is_checked_with_the_keys_every_delivery_adds(
    quiet_api: ApiServer,
) -> None:
    user = quiet_api.new_user()
    many = {f"k{i}": i for i in range(62)}  # 62 + the prediction's 6 = 68 > 64
    refused = quiet_api.request("POST", "/api/v1/webhooks/replicate/urls", user,
                                json={"metadata": many})
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert "more than 64" in message and "at most 58 keys of your own" in message
    # 58 of one's own fit; a key the prediction sets anyway (prompt) does not count twice.
    fits = {**{f"k{i}": i for i in range(58)}, "prompt": "mine"}
    assert quiet_api.request("POST", "/api/v1/webhooks/replicate/urls", user,
                             json={"metadata": fits}).status_code == 200
    # A URL issued before this check: its delivery is refused saying what to change, and
    # nothing is created.
    old = issue(SIGNING_KEY.encode(), WebhookContext(user, int(time.time()) + 600, many))
    answer = deliver(f"{quiet_api.url}/api/v1/webhooks/replicate?context={old}", prediction())
    assert answer.status_code == 422, answer.text
    message = answer.json()["error"]["message"]
    assert "68 keys" in message and "issue a new webhook URL with at most 58" in message
    assert quiet_api.mediaimports(user) == [] and quiet_api.rows(user) == []


# -- item 13: a replay answers as the first request did ------------------------------------


def _finish(api: ApiServer, name: str, asset_id: str, status: str) -> None:
    """What the operator writes when the import ends: the MediaImport's status and the row."""
    phase = "Ready" if status == "ready" else "Failed"
    api.kube.merge_patch(f"{api.mi_path(name)}/status", {"status": {"phase": phase}})
    with psycopg.connect(api.postgres.url) as conn:
        conn.execute(
            "UPDATE media_assets SET status = %s, s3_key = 'media/x/y/z.mp4',"
            " file_metadata = file_metadata || %s WHERE id = %s",
            (status, Jsonb({"error": {"reason": "SourceNotFound", "message": "Gone."}}
                           if status == "failed" else {}), asset_id))


@pytest.mark.parametrize("outcome", ["ready", "failed"])
def test_a_replay_answers_the_original_status_and_body_after_the_import_ended(
    quiet_api: ApiServer, outcome: str,
) -> None:
    user = quiet_api.new_user()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = quiet_api.post_import(user, {"url": URL, "type": "video"}, headers=key)
    assert first.status_code == 202, first.text
    _finish(quiet_api, first.json()["metadata"]["import_job_id"], first.json()["id"], outcome)
    replay = quiet_api.post_import(user, {"url": URL, "type": "video"}, headers=key)
    assert replay.status_code == 202, replay.text
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_a_replay_of_a_request_that_waited_for_a_failure_answers_that_failure(
    quiet_api: ApiServer,
) -> None:
    user = quiet_api.new_user()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(quiet_api.post_import, user, {"url": URL, "type": "video"},
                              headers=key, params={"wait": 30})
        name = created_name(quiet_api, user)
        time.sleep(0.5)
        _finish(quiet_api, name, quiet_api.mediaimports(user)[0]["spec"]["assetId"], "failed")
        first = waiting.result(timeout=40)
    assert first.status_code == 422, first.text
    assert first.json()["error"]["code"] == "import_failed"
    replay = quiet_api.post_import(user, {"url": URL, "type": "video"}, headers=key,
                                   params={"wait": 30})
    assert (replay.status_code, replay.json()) == (422, first.json())
    assert replay.headers["Idempotent-Replayed"] == "true"


# -- item 12: same-key requests neither exhaust the pool nor make the pod unready -----------


class SlowAdmission:
    """A validating admission webhook of the real API server that holds each creation of a
    MediaImport whose URL has ``/slow/`` in it for ``delay`` seconds: the Kubernetes API
    slow to answer, as under load, for one namespace's imports only."""

    def __init__(self, kube: Any, namespace: str, tmp: Path, delay: float) -> None:
        self.kube, self.delay = kube, delay
        self.seen = threading.Event()
        self.name = f"slow-{namespace}"
        cert, key, ca = _serving_cert(tmp)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = review["request"]
                if "/slow/" in ((request.get("object") or {}).get("spec") or {}).get("url", ""):
                    outer.seen.set()
                    time.sleep(outer.delay)
                answer = json.dumps({"apiVersion": "admission.k8s.io/v1",
                                     "kind": "AdmissionReview",
                                     "response": {"uid": request["uid"], "allowed": True}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.kube.create(WEBHOOKS, {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.name},
            "webhooks": [{
                "name": "slow.mediaimport.test",
                "clientConfig": {"url": f"https://127.0.0.1:{self.server.server_port}/",
                                 "caBundle": base64.b64encode(ca).decode()},
                "rules": [{"apiGroups": ["mediaimport.dev"], "apiVersions": ["v1alpha1"],
                           "operations": ["CREATE"], "resources": ["mediaimports"]}],
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "sideEffects": "None", "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 20, "failurePolicy": "Ignore",
            }],
        })

    def close(self) -> None:
        self.kube.delete(f"{WEBHOOKS}/{self.name}")
        self.server.shutdown()


WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def _serving_cert(tmp: Path) -> tuple[Path, Path, bytes]:
    """(certificate, key, CA certificate PEM) for 127.0.0.1, signed by a CA of its own."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: Any, issuer: str, signer: Any, *, ca: bool) -> Any:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("slow-admission-ca", ca_key, "slow-admission-ca", ca_key, ca=True)
    cert = certificate("127.0.0.1", key, "slow-admission-ca", ca_key, ca=False)
    cert_path, key_path = tmp / "admission.crt", tmp / "admission.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, ca.public_bytes(serialization.Encoding.PEM)


def test_same_key_requests_wait_a_bounded_time_without_holding_the_pool(
    control_plane: ControlPlane, crd: str, kube: Any, s3_server: Any, postgres_server: Any,
    tmp_path: Path,
) -> None:
    """While the first request of a key waits for Kubernetes, eight more with that key
    answer 409 in_progress within the bound, and another user's requests and the pod's
    readiness do not notice (a pool of 4 connections: each waiting request held one)."""
    world = World(control_plane, kube, s3_server, postgres_server, tmp_path)
    admission = SlowAdmission(kube, world.namespace, tmp_path, delay=12)
    api = world.start_api(MEDIAIMPORT_API_DATABASE_POOL_SIZE="4")
    try:
        alice, bob = api.new_user(), api.new_user()
        body = {"url": "https://cdn.example.test/slow/clip.mp4", "type": "video"}
        key = {"Idempotency-Key": str(uuid.uuid4())}
        with ThreadPoolExecutor(12) as pool:
            first = pool.submit(api.post_import, alice, body, headers=key)
            assert admission.seen.wait(20), "the creation never reached the admission webhook"
            started = time.monotonic()
            same = [pool.submit(api.post_import, alice, body, headers=key) for _ in range(8)]
            time.sleep(0.5)  # they are waiting on the key now

            def timed(call: Any) -> tuple[int, float]:
                begun = time.monotonic()
                return call().status_code, time.monotonic() - begun

            others = [timed(lambda: api.request("GET", "/api/v1/media", bob)),
                      timed(lambda: api.post_import(bob, {"url": URL})),
                      timed(lambda: requests.get(f"{api.admin_url}/readyz", timeout=30))]
            answers = [future.result(timeout=60) for future in same]
            answered_within = time.monotonic() - started
            original = first.result(timeout=60)
            first_took = time.monotonic() - started
        assert first_took > 10, "the creation was not held up: the test proves nothing"
        for status, took in others:
            assert (status in (200, 202)) and took < 2.5, others
        for answer in answers:
            assert answer.status_code == 409, answer.text
            assert answer.json()["error"]["code"] == "in_progress"
            assert answer.headers["Retry-After"] == "1"
        assert answered_within < 9, answered_within  # the bound (5 s), not the 12 s creation
        assert original.status_code == 202, original.text
        replay = api.post_import(alice, body, headers=key)
        assert (replay.status_code, replay.json()) == (202, original.json())
        assert len(api.mediaimports(alice)) == 1 and len(api.rows(alice)) == 1
    finally:
        api.stop()
        admission.close()
        world.remove()
