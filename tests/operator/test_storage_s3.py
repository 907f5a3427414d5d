"""The operator's S3 operations for import pods, against a real S3 server that checks
signatures (versitygw): presigned writes only for the import's own keys, with exactly the
headers they were signed with; multipart uploads completed with their final metadata;
everything under a failed import's prefix removed."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import requests
from mediaimport_dev.s3server import S3Server
from mediaimport_job.channel_protocol import PRESIGN_EXPIRES_S, CompletedPart
from mediaimport_operator.storage import (
    KeyRefused,
    Scope,
    Storage,
    StorageRefused,
)
from storage_support import ServerCredentials

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
MiB = 1024 * 1024
PREFIX = "media/user-1/asset-1"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def storage(s3_server: S3Server, s3_bucket: str) -> Storage:
    return Storage(ServerCredentials(s3_server), bucket=s3_bucket, max_object_bytes=64 * MiB)


@pytest.fixture
def scope(s3_bucket: str) -> Scope:
    return Scope(namespace="media", bucket=s3_bucket, prefix=PREFIX)


@pytest.fixture
def s3(s3_server: S3Server) -> S3Client:
    return s3_server.client()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_presigned_put_stores_the_object_with_exactly_the_signed_headers(
    storage: Storage, scope: Scope, s3: S3Client, s3_bucket: str,
) -> None:
    body = b"not really a video"
    key = f"{PREFIX}/clip.mp4"
    signed = run(storage.presign_put(scope, key, content_type="video/mp4", sha256=sha(body),
                                     content_length=len(body)))
    assert signed.method == "PUT" and signed.expiresIn == PRESIGN_EXPIRES_S
    assert signed.headers == {"Content-Type": "video/mp4", "Content-Length": str(len(body)),
                              "x-amz-meta-sha256": sha(body)}
    assert f"X-Amz-Expires={PRESIGN_EXPIRES_S}" in signed.url

    changed = [
        {**signed.headers, "Content-Type": "text/html"},
        {**signed.headers, "x-amz-meta-sha256": sha(b"other")},
        {"Content-Type": "video/mp4"},
    ]
    for headers in changed:
        answer = requests.put(signed.url, data=body, headers=headers, timeout=10)
        assert answer.status_code == 403, headers
    longer = requests.put(signed.url, data=body + b"!", headers={
        k: v for k, v in signed.headers.items() if k != "Content-Length"}, timeout=10)
    assert longer.status_code == 403
    assert requests.get(signed.url, timeout=10).status_code == 403  # write only
    assert storage_head(s3, s3_bucket, key) is None

    answer = requests.put(signed.url, data=body, headers=signed.headers, timeout=10)
    assert answer.status_code == 200, answer.text
    head = run(storage.head(scope, key))
    assert head is not None
    assert (head.size, head.content_type, head.sha256) == (len(body), "video/mp4", sha(body))


def storage_head(s3: S3Client, bucket: str, key: str) -> int | None:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=key)
    return next((item["Size"] for item in listing.get("Contents") or []
                 if item["Key"] == key), None)


def test_a_url_for_one_key_does_not_write_another(
    storage: Storage, scope: Scope, s3: S3Client, s3_bucket: str,
) -> None:
    body = b"x"
    signed = run(storage.presign_put(scope, f"{PREFIX}/a.mp4", content_type="video/mp4",
                                     sha256=sha(body), content_length=1))
    for other in (f"{PREFIX}/b.mp4", "media/user-2/asset-9/a.mp4"):
        url = signed.url.replace(f"{PREFIX}/a.mp4", other)
        answer = requests.put(url, data=body, headers=signed.headers, timeout=10)
        assert answer.status_code == 403
        assert storage_head(s3, s3_bucket, other) is None


@pytest.mark.parametrize("key", ["media/user-2/asset-1/clip.mp4", f"{PREFIX}/../x/clip.mp4",
                                 f"{PREFIX}", "clip.mp4"])
def test_nothing_is_signed_outside_the_prefix(storage: Storage, scope: Scope, key: str) -> None:
    with pytest.raises(KeyRefused):
        run(storage.presign_put(scope, key, content_type="video/mp4", sha256="0" * 64,
                                content_length=1))
    with pytest.raises(KeyRefused):
        run(storage.create_multipart(scope, key))
    with pytest.raises(KeyRefused):
        run(storage.presign_parts(scope, key, upload_id="u", first=1, count=1))


def test_another_bucket_is_refused(storage: Storage, scope: Scope) -> None:
    other = Scope(namespace=scope.namespace, bucket="another-bucket", prefix=PREFIX)
    with pytest.raises(KeyRefused):
        run(storage.presign_put(other, f"{PREFIX}/clip.mp4", content_type="video/mp4",
                                sha256="0" * 64, content_length=1))
    with pytest.raises(KeyRefused):
        run(storage.delete_prefix(other))


def test_requests_that_cannot_be_right_are_refused(storage: Storage, scope: Scope) -> None:
    key = f"{PREFIX}/clip.mp4"
    with pytest.raises(StorageRefused):
        run(storage.presign_put(scope, key, content_type="video/mp4\r\nX: y", sha256="0" * 64,
                                content_length=1))
    with pytest.raises(StorageRefused):
        run(storage.presign_put(scope, key, content_type="video/mp4", sha256="0" * 64,
                                content_length=65 * MiB))
    with pytest.raises(StorageRefused):
        run(storage.presign_parts(scope, key, upload_id="u", first=9_990, count=20))


def upload_parts(storage: Storage, scope: Scope, key: str, upload_id: str,
                 chunks: list[bytes]) -> list[CompletedPart]:
    signed = run(storage.presign_parts(scope, key, upload_id=upload_id, first=1,
                                       count=len(chunks)))
    assert [part.partNumber for part in signed.parts] == list(range(1, len(chunks) + 1))
    completed = []
    for part, chunk in zip(signed.parts, chunks, strict=True):
        answer = requests.put(part.url, data=chunk, timeout=30)
        assert answer.status_code == 200, answer.text
        completed.append(CompletedPart(partNumber=part.partNumber, etag=answer.headers["ETag"]))
    return completed


def test_a_multipart_upload_ends_with_its_final_type_and_checksum(
    storage: Storage, scope: Scope,
) -> None:
    chunks = [b"a" * (5 * MiB), b"b" * 1234]
    whole = b"".join(chunks)
    key = f"{PREFIX}/big.mov"
    upload_id = run(storage.create_multipart(scope, key))
    completed = upload_parts(storage, scope, key, upload_id, chunks)
    head = run(storage.complete(scope, key, upload_id=upload_id, parts=completed[::-1],
                                content_type="video/quicktime", sha256=sha(whole)))
    assert (head.size, head.content_type, head.sha256) == (
        len(whole), "video/quicktime", sha(whole))


def test_an_object_larger_than_imports_may_store_is_deleted(
    s3_server: S3Server, s3_bucket: str, scope: Scope,
) -> None:
    small = Storage(ServerCredentials(s3_server), bucket=s3_bucket, max_object_bytes=5 * MiB)
    key = f"{PREFIX}/big.mov"
    upload_id = run(small.create_multipart(scope, key))
    completed = upload_parts(small, scope, key, upload_id, [b"a" * (5 * MiB), b"b"])
    with pytest.raises(StorageRefused, match="deleted"):
        run(small.complete(scope, key, upload_id=upload_id, parts=completed,
                           content_type="video/mp4", sha256="0" * 64))
    assert run(small.head(scope, key)) is None


def test_an_aborted_upload_takes_no_more_parts(storage: Storage, scope: Scope) -> None:
    key = f"{PREFIX}/big.mov"
    upload_id = run(storage.create_multipart(scope, key))
    signed = run(storage.presign_parts(scope, key, upload_id=upload_id, first=1, count=1))
    run(storage.abort(scope, key, upload_id=upload_id))
    run(storage.abort(scope, key, upload_id=upload_id))  # again: already gone is fine
    assert requests.put(signed.parts[0].url, data=b"x", timeout=10).status_code == 404
    with pytest.raises(StorageRefused):  # NoSuchUpload, or InvalidPart (versitygw)
        run(storage.complete(scope, key, upload_id=upload_id,
                             parts=[CompletedPart(partNumber=1, etag='"x"')],
                             content_type="video/mp4", sha256="0" * 64))


def test_a_missing_object_has_no_head(storage: Storage, scope: Scope) -> None:
    assert run(storage.head(scope, f"{PREFIX}/nothing.mp4")) is None


def test_everything_under_the_prefix_goes_and_nothing_else(
    storage: Storage, scope: Scope, s3: S3Client, s3_bucket: str,
) -> None:
    inside = [f"{PREFIX}/clip.mp4", f"{PREFIX}/thumbnail.jpg", f"{PREFIX}/deep/x"]
    # A sibling whose prefix starts with this one's text is another import's.
    outside = ["media/user-1/asset-10/clip.mp4", "media/user-1/asset-1.mp4"]
    for key in inside + outside:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"data")
    pending = s3.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/partial.mp4")
    other = s3.create_multipart_upload(Bucket=s3_bucket, Key=outside[0])

    assert run(storage.delete_prefix(scope)) == len(inside)
    left = [item["Key"] for item in
            s3.list_objects_v2(Bucket=s3_bucket).get("Contents") or []]
    assert sorted(left) == sorted(outside)
    uploads = {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=s3_bucket)
               .get("Uploads") or []}
    assert pending["UploadId"] not in uploads and other["UploadId"] in uploads
    assert run(storage.delete_prefix(scope)) == 0  # again: nothing left, no error
