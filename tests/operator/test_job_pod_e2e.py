"""The import pod as the cluster runs it: its volume, its Secret, its grace period, and
what the row keeps of the source URL. Real API server, controllers, node, job, S3, Postgres."""

from __future__ import annotations

import json
import time

import pytest
from conftest import Env, eventually, new_name
from support.s3stall import StallingS3, is_upload_part

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def _condition(body: dict, type_: str = "Succeeded") -> dict:
    return next(c for c in body["status"]["conditions"] if c["type"] == type_)


def test_a_file_larger_than_the_tmp_volume_fails_once_as_too_large(env: Env) -> None:
    """The pod's /tmp holds 72 MiB (64 of them kept for the thumbnail): a 9 MiB file does
    not fit. It must fail at once as TooLarge, not grow the volume past its sizeLimit
    (the kubelet evicts, and the Job ignores evictions: retried for ever)."""
    env.start_operator(MEDIAIMPORT_TMP_SIZE_LIMIT="72Mi")
    big = env.tmp / "nine-mib.bin"
    big.write_bytes(bytes(9 * MiB))
    served = env.origin.add(big, f"{new_name('big')}.mp4")
    name = new_name("tmpfull")
    env.create(name, url=env.url(f"/files/{served}"))
    body = env.wait_phase(name, "Failed", "Ready")
    cond = _condition(body)
    assert (cond["status"], cond["reason"]) == ("False", "TooLarge"), cond
    assert "temporary volume" in cond["message"]
    assert body["status"]["attempts"] == 1
    (job,) = env.jobs(**{"mediaimport.dev/import-name": name})
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0]["emptyDir"]["sizeLimit"] == "72Mi"
    assert pod["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "72Mi"
    assert env.s3.client().list_objects_v2(Bucket=env.bucket).get("KeyCount", 0) == 0
    row = eventually(lambda: (r := env.row(body["status"]["assetId"])) and
                     r["status"] == "failed" and r, timeout=20, what="the failed row")
    assert row["file_metadata"]["error"]["reason"] == "TooLarge"


def test_a_missing_s3_secret_is_reported_at_once_and_the_import_goes_on_once_created(
    env: Env,
) -> None:
    """Without this the pod sits in CreateContainerConfigError until the Job's deadline
    (30 minutes for a video) and the MediaImport says nothing about why."""
    env.start_operator(MEDIAIMPORT_S3_SECRET_NAME="s3-credentials-missing")
    clip = env.origin.add(env.media.path("h264.mp4"), f"{new_name('nosecret')}.mp4")
    name = new_name("nosecret")
    env.create(name, url=env.url(f"/files/{clip}"), type="video")
    started = time.monotonic()
    body = eventually(
        lambda: (b := env.get(name)) and b.get("status", {}).get("conditions")
        and _condition(b)["reason"] == "S3SecretMissing" and b,
        timeout=60, what="the S3SecretMissing condition",
    )
    print(f"missing Secret reported {time.monotonic() - started:.1f} s after creation")
    cond = _condition(body)
    assert cond["status"] == "Unknown"
    assert '"s3-credentials-missing"' in cond["message"]
    assert f"namespace {env.namespace}" in cond["message"]
    assert body["status"]["phase"] == "Importing"
    env.reasons(name, "S3SecretMissing")
    warning = next(e for e in env.events(name) if e["reason"] == "S3SecretMissing")
    assert warning["type"] == "Warning"

    # The kubelet keeps trying: once the Secret exists the import finishes.
    env.kube.create(f"/api/v1/namespaces/{env.namespace}/secrets",
                    {"metadata": {"name": "s3-credentials-missing"},
                     "stringData": env.s3.env()})
    body = env.wait_phase(name, "Ready", "Failed", timeout=120)
    assert body["status"]["phase"] == "Ready", _condition(body)
    assert _condition(body)["reason"] == "Imported"


def test_a_signed_url_is_stored_without_its_token(env: Env) -> None:
    env.start_operator()
    clip = env.origin.add(env.media.path("image.png"), f"{new_name('signed')}.png")
    signed = env.url(f"/files/{clip}?X-Amz-Signature=s3cr3t-signature&token=s3cr3t-token")
    name = new_name("signed")
    created = env.create(name, url=signed)
    body = env.wait_phase(name, "Ready", "Failed")
    assert body["status"]["phase"] == "Ready", _condition(body)
    row = eventually(lambda: (r := env.row(created["metadata"]["uid"])) and
                                    r["status"] == "ready" and r, timeout=20, what="the row")
    assert row["file_metadata"]["source_url"] == env.url(f"/files/{clip}")
    assert "s3cr3t" not in json.dumps(row["file_metadata"])


@pytest.mark.slow
def test_a_cancelled_import_leaves_no_multipart_upload_even_when_s3_stalls(env: Env) -> None:
    """Deleting the MediaImport deletes its pod: SIGTERM, then SIGKILL after the pod's
    terminationGracePeriodSeconds. With S3 no longer answering part uploads, the job's
    cleanup must still abort the upload and delete the thumbnail before the SIGKILL."""
    env.start_operator(MEDIAIMPORT_JOB_TERMINATION_GRACE_PERIOD_SECONDS="12")
    with StallingS3(env.s3.endpoint_url, is_upload_part) as stalling:
        env.kube.merge_patch(f"/api/v1/namespaces/{env.namespace}/secrets/mediaimport-s3",
                             {"stringData": {"AWS_ENDPOINT_URL_S3": stalling.endpoint_url}})
        clip = env.origin.add(env.media.path("large.mov"), f"{new_name('grace')}.mov")
        name = new_name("grace")
        created = env.create(name, url=env.url(f"/files/{clip}"), type="video")
        uid = created["metadata"]["uid"]
        prefix = f"media/user-1/{uid}/"
        s3 = env.s3.client()
        eventually(lambda: s3.list_objects_v2(Bucket=env.bucket, Prefix=prefix).get("KeyCount"),
                   timeout=240, what="the thumbnail to be stored while the parts hang")
        assert stalling.stalled
        assert s3.list_multipart_uploads(Bucket=env.bucket).get("Uploads")
        (job,) = env.jobs(**{"mediaimport.dev/import-uid": uid})
        assert job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 12
        deleted = time.monotonic()
        env.kube.delete(env.mi_path(name))
        eventually(lambda: not [p for p in env.pods()
                                if p["metadata"]["labels"].get("mediaimport.dev/import-uid")
                                == uid],
                   timeout=60, what="the pod to be gone")
        print(f"pod gone {time.monotonic() - deleted:.1f} s after the deletion")
        assert s3.list_multipart_uploads(Bucket=env.bucket).get("Uploads", []) == []
        assert s3.list_objects_v2(Bucket=env.bucket, Prefix=prefix).get("KeyCount", 0) == 0
