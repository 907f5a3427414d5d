"""A Ready result an import pod claims is believed only when it names the configured
bucket, keys under the import's prefix, and objects that exist as claimed (HEADs against
a real S3 server)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

import pytest
from mediaimport_dev.s3server import S3Server
from mediaimport_job.result import MediaInfo, ReadyResult
from mediaimport_operator.model import MediaImport
from mediaimport_operator.settings import Settings
from mediaimport_operator.storage import ObjectHead, Scope, Storage
from mediaimport_operator.verify import (
    ResultRefused,
    ResultVerifier,
    object_problems,
    result_problems,
)
from storage_support import ServerCredentials

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "media/user-1/asset-1"
BODY = b"the media object"
SHA = hashlib.sha256(BODY).hexdigest()
MI = MediaImport.from_body({
    "metadata": {"namespace": "media", "name": "sunset", "uid": "uid-1"},
    "spec": {"url": "https://example.com/a.mp4", "userId": "user-1", "assetId": "asset-1"},
})


def ready(**changes: Any) -> ReadyResult:
    fields: dict[str, Any] = {
        "type": "video", "bucket": "assets", "key": f"{PREFIX}/clip.mp4",
        "thumbnailKey": f"{PREFIX}/thumbnail.jpg", "name": "clip.mp4", "size": len(BODY),
        "sha256": SHA, "contentType": "video/mp4",
        "media": MediaInfo(duration=2.0, width=64, height=48, codec="h264"),
    }
    return ReadyResult(**{**fields, **changes})


SCOPE = Scope(namespace="media", bucket="assets", prefix=PREFIX)


def test_a_consistent_result_has_no_problem_on_its_face() -> None:
    assert result_problems(ready(), SCOPE) == []
    assert result_problems(ready(thumbnailKey=None), SCOPE) == []


@pytest.mark.parametrize(("changes", "words"), [
    ({"bucket": "other"}, "bucket 'other'"),
    ({"key": "media/user-2/asset-1/clip.mp4"}, "not under the import's prefix"),
    ({"key": f"{PREFIX}/../asset-2/clip.mp4", "name": "clip.mp4"}, "'..' segment"),
    ({"name": "other.mp4"}, "not the last segment"),
    ({"key": f"{PREFIX}/sub/clip.mp4"}, "not the last segment"),
    ({"thumbnailKey": "media/user-2/asset-9/thumbnail.jpg"}, "Thumbnail:"),
    ({"thumbnailKey": f"{PREFIX}/clip.mp4"}, "is the media object's key"),
    ({"size": -1}, "negative size"),
    ({"sha256": "ABC"}, "sha256"),
    ({"contentType": "video/mp4\nX: y"}, "content type"),
])
def test_a_result_that_reaches_outside_its_import_is_refused(
    changes: dict[str, Any], words: str,
) -> None:
    problems = result_problems(ready(**changes), SCOPE)
    assert problems and words in " ".join(problems)
    assert all(problem.endswith(".") for problem in problems)


def test_the_stored_objects_must_match_the_claims() -> None:
    good = ObjectHead(size=len(BODY), content_type="video/mp4", metadata={"sha256": SHA})
    thumb = ObjectHead(size=10, content_type="image/jpeg", metadata={})
    assert object_problems(ready(), good, thumb) == []
    assert object_problems(ready(), ObjectHead(len(BODY), None, {}), thumb) == []  # no sha
    assert "does not exist" in object_problems(ready(), None, thumb)[0]
    assert "holds 3 bytes" in object_problems(ready(), ObjectHead(3, None, {}), thumb)[0]
    wrong_sha = ObjectHead(len(BODY), None, {"sha256": "0" * 64})
    assert "stored with sha256" in object_problems(ready(), wrong_sha, thumb)[0]
    assert "thumbnail" in object_problems(ready(), good, None)[0]
    assert object_problems(ready(thumbnailKey=None), good, None) == []


@pytest.fixture
def verifier(s3_server: S3Server, s3_bucket: str) -> ResultVerifier:
    storage = Storage(ServerCredentials(s3_server), bucket=s3_bucket, max_object_bytes=1 << 30)
    return ResultVerifier(storage, Settings(bucket=s3_bucket))


@pytest.fixture
def stored(s3_server: S3Server, s3_bucket: str) -> S3Client:
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/clip.mp4", Body=BODY,
                  ContentType="video/mp4", Metadata={"sha256": SHA})
    s3.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/thumbnail.jpg", Body=b"jpeg",
                  ContentType="image/jpeg")
    return s3


@pytest.mark.usefixtures("stored")
def test_a_result_whose_objects_exist_as_claimed_is_verified(
    verifier: ResultVerifier, s3_bucket: str,
) -> None:
    status = asyncio.run(verifier.verify(MI, ready(bucket=s3_bucket)))
    assert status.wire() == {
        "bucket": s3_bucket, "key": f"{PREFIX}/clip.mp4",
        "thumbnailKey": f"{PREFIX}/thumbnail.jpg", "name": "clip.mp4", "size": len(BODY),
        "sha256": SHA, "contentType": "video/mp4",
        "media": {"duration": 2.0, "width": 64, "height": 48, "codec": "h264"},
    }
    assert asyncio.run(verifier.refusal(MI, ready(bucket=s3_bucket))) is None


@pytest.mark.parametrize(("changes", "words"), [
    ({"size": len(BODY) + 1}, "bytes, not the"),
    ({"sha256": "f" * 64}, "stored with sha256"),
    ({"key": f"{PREFIX}/missing.mp4", "name": "missing.mp4"}, "does not exist"),
    ({"thumbnailKey": f"{PREFIX}/thumb-missing.jpg"}, "thumbnail"),
    ({"bucket": "another"}, "configured bucket"),
])
@pytest.mark.usefixtures("stored")
def test_a_result_the_objects_contradict_is_refused(
    verifier: ResultVerifier, s3_bucket: str, changes: dict[str, Any], words: str,
) -> None:
    claimed = ready(**{"bucket": s3_bucket, **changes})
    with pytest.raises(ResultRefused) as refused:
        asyncio.run(verifier.verify(MI, claimed))
    assert refused.value.reason == "InvalidResult"
    assert words in refused.value.message
    assert words in (asyncio.run(verifier.refusal(MI, claimed)) or "")
