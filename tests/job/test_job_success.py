"""The real console script importing real media from the real origin into versitygw."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.jobrun import JobRun, JobRunner, bucket_contents
from support.media import MediaLibrary, ffprobe_streams
from support.origin import Origin

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "media/user-1/asset-1"

# name -> (type, format, content type, thumbnail (width, height) or None)
CASES: dict[str, tuple[str, str, str, tuple[int, int] | None]] = {
    "h264.mp4": ("video", "mp4", "video/mp4", (320, 240)),
    "h264_faststart.mp4": ("video", "mp4", "video/mp4", (320, 240)),
    "vp9.webm": ("video", "webm", "video/webm", (320, 240)),
    "hevc.mov": ("video", "mov", "video/quicktime", (320, 240)),
    "portrait.mp4": ("video", "mp4", "video/mp4", (320, 426)),
    "odd.mp4": ("video", "mp4", "video/mp4", (320, 240)),
    "audio.mp3": ("audio", "mp3", "audio/mpeg", None),
    "audio.wav": ("audio", "wav", "audio/wav", None),
    "audio.ogg": ("audio", "ogg", "audio/ogg", None),
    "cover.mp3": ("audio", "mp3", "audio/mpeg", (320, 160)),
    "image.png": ("image", "png", "image/png", (320, 160)),
    "image.jpg": ("image", "jpeg", "image/jpeg", (320, 160)),
    "image.webp": ("image", "webp", "image/webp", (320, 160)),
    "animated.gif": ("image", "gif", "image/gif", (320, 160)),
}


def expected_media(path: Path) -> dict[str, Any]:
    """The width/height ffprobe shows, rotated as displayed."""
    stream = next(s for s in ffprobe_streams(path) if s["codec_type"] == "video")
    width, height = int(str(stream["width"])), int(str(stream["height"]))
    rotations = [d.get("rotation", 0) for d in stream.get("side_data_list", [])]  # type: ignore[attr-defined]
    if rotations and int(rotations[0]) % 180:
        width, height = height, width
    return {"width": width, "height": height}


def stored(s3: S3Client, bucket: str, key: str, tmp_path: Path) -> tuple[bytes, dict[str, Any]]:
    answer = s3.get_object(Bucket=bucket, Key=key)
    body = answer["Body"].read()
    (tmp_path / key.rsplit("/", 1)[-1]).write_bytes(body)
    return body, {"ContentType": answer["ContentType"], "Metadata": answer["Metadata"]}


def assert_ready(run: JobRun) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr
    assert run.last_stdout_line == run.result_text
    assert run.leftovers == []
    document = run.result
    assert document["status"] == "ready"
    return document


@pytest.mark.parametrize("name", sorted(CASES))
def test_imports_media(
    name: str,
    media: MediaLibrary,
    origin: Origin,
    run_job: JobRunner,
    s3: S3Client,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    media_type, fmt, content_type, thumb_size = CASES[name]
    source = media.path(name)
    origin.add(source)
    run = run_job(origin.url(f"/files/{name}"))
    document = assert_ready(run)

    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert document["key"] == f"{PREFIX}/{name}" and document["name"] == name
    assert (document["type"], document["media"]["format"], document["contentType"]) == (
        media_type,
        fmt,
        content_type,
    )
    assert document["size"] == len(data) and document["sha256"] == digest
    body, head = stored(s3, s3_bucket, document["key"], tmp_path)
    assert body == data
    assert head["ContentType"] == content_type and head["Metadata"]["sha256"] == digest
    assert set(head["Metadata"]) == {"sha256", "attempt"}
    if media_type != "audio":
        assert {k: document["media"][k] for k in ("width", "height")} == expected_media(source)

    objects, uploads = bucket_contents(s3, s3_bucket)
    assert uploads == []
    if thumb_size is None:
        assert document["thumbnailKey"] is None
        assert objects == [document["key"]]
        return
    assert document["thumbnailKey"] == f"{PREFIX}/thumbnail.jpg"
    assert sorted(objects) == sorted([document["key"], document["thumbnailKey"]])
    thumb, thumb_head = stored(s3, s3_bucket, document["thumbnailKey"], tmp_path)
    assert thumb[:3] == b"\xff\xd8\xff" and thumb_head["ContentType"] == "image/jpeg"
    (stream,) = ffprobe_streams(tmp_path / "thumbnail.jpg")
    assert stream["codec_name"] == "mjpeg"
    assert (stream["width"], stream["height"]) == thumb_size


def test_portrait_video_is_reported_as_displayed(
    media: MediaLibrary, origin: Origin, run_job: JobRunner
) -> None:
    origin.add(media.path("portrait.mp4"))
    document = assert_ready(run_job(origin.url("/files/portrait.mp4")))
    assert document["media"]["width"] < document["media"]["height"]


@pytest.mark.slow
def test_large_file_streams_through_multipart(
    media: MediaLibrary,
    origin: Origin,
    run_job: JobRunner,
    s3: S3Client,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    """>16 MiB: parts go up while downloading, then the metadata is set by a self-copy."""
    source = media.path("large.mov")
    origin.add(source)
    run = run_job(origin.url("/files/large.mov"), "--thumbnail-at", "99")
    document = assert_ready(run)
    assert "streaming s3://" in run.stderr
    body, head = stored(s3, s3_bucket, document["key"], tmp_path)
    assert body == source.read_bytes()
    assert head["ContentType"] == "video/quicktime"
    assert head["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert set(head["Metadata"]) == {"sha256", "attempt"}
    assert s3.head_object(Bucket=s3_bucket, Key=document["key"])["ETag"].endswith(
        '-5"'
    )  # 5 MiB parts
    assert bucket_contents(s3, s3_bucket)[1] == []


@pytest.mark.slow
def test_large_file_without_a_usable_name_uploads_after_probing(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, s3: S3Client, s3_bucket: str
) -> None:
    origin.add(media.path("large.mov"), "blob")
    document = assert_ready(run_job(origin.url("/files/blob")))
    assert document["key"] == f"{PREFIX}/blob.mov"
    head = s3.head_object(Bucket=s3_bucket, Key=document["key"])
    assert head["ContentType"] == "video/quicktime"
    assert head["Metadata"]["sha256"] == document["sha256"]
    assert set(head["Metadata"]) == {"sha256", "attempt"}  # the attempt: see test_job_attempts


@pytest.mark.parametrize(
    ("path", "args", "key_name"),
    [
        ("/files/my%20clip.mp4", [], "my clip.mp4"),
        ("/files/h264.mp4", ["--name", "../../etc/passwd.mp4"], "_.._etc_passwd.mp4"),
        ("/files/h264.mp4", ["--name", "thumbnail.jpg"], "original-thumbnail.jpg"),
        ("/files/download", [], "download.mp4"),
        ("/files/.mp4", [], "video.mp4"),
    ],
)
def test_file_names(
    path: str,
    args: list[str],
    key_name: str,
    media: MediaLibrary,
    origin: Origin,
    run_job: JobRunner,
    s3: S3Client,
    s3_bucket: str,
) -> None:
    origin.add(media.path("h264.mp4"))
    origin.add(media.path("h264.mp4"), "my clip.mp4")
    origin.add(media.path("h264.mp4"), "download")
    origin.add(media.path("h264.mp4"), ".mp4")
    document = assert_ready(run_job(origin.url(path), *args))
    assert document["key"] == f"{PREFIX}/{key_name}" and document["name"] == key_name
    assert f"{PREFIX}/{key_name}" in bucket_contents(s3, s3_bucket)[0]


def test_declared_video_accepts_an_animated_gif(
    media: MediaLibrary, origin: Origin, run_job: JobRunner
) -> None:
    origin.add(media.path("animated.gif"))
    document = assert_ready(run_job(origin.url("/files/animated.gif"), "--type", "video"))
    assert document["type"] == "video" and document["media"]["duration"] > 0


@pytest.mark.parametrize(
    ("path", "extra_hits"),
    [
        ("/chain/3/h264.mp4", {"/chain/3/h264.mp4": 1, "/chain/0/h264.mp4": 1}),
        ("/chunked/h264.mp4", {}),
        ("/close/h264.mp4", {}),
        ("/flaky/flaky-503.mp4?code=503&fail=2", {"/flaky/flaky-503.mp4": 3}),
        ("/flaky/flaky-429.mp4?code=429&fail=1&retry_after=1", {"/flaky/flaky-429.mp4": 2}),
        ("/files/h264.mp4?type=text/html", {}),  # the origin's Content-Type is not trusted
    ],
)
def test_origin_quirks_that_still_succeed(
    path: str,
    extra_hits: dict[str, int],
    media: MediaLibrary,
    origin: Origin,
    run_job: JobRunner,
    s3: S3Client,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    source = media.path("h264.mp4")
    for name in ("h264.mp4", "flaky-503.mp4", "flaky-429.mp4"):
        origin.add(source, name)
    before = {hit_path: origin.hits(hit_path) for hit_path in extra_hits}
    document = assert_ready(run_job(origin.url(path), "--name", "clip.mp4"))
    assert stored(s3, s3_bucket, document["key"], tmp_path)[0] == source.read_bytes()
    for hit_path, count in extra_hits.items():
        assert origin.hits(hit_path) - before[hit_path] == count


def test_resumes_a_dropped_download_with_range(
    media: MediaLibrary,
    origin: Origin,
    run_job: JobRunner,
    s3: S3Client,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    source = media.path("h264.mp4")
    origin.add(source, "drop-resume.mp4")
    document = assert_ready(run_job(origin.url("/drop/drop-resume.mp4?after=50000&times=1")))
    assert origin.ranges("/drop/drop-resume.mp4") == [None, "bytes=50000-"]
    assert stored(s3, s3_bucket, document["key"], tmp_path)[0] == source.read_bytes()
    assert document["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_restarts_when_the_origin_ignores_range(
    media: MediaLibrary,
    origin: Origin,
    run_job: JobRunner,
    s3: S3Client,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    source = media.path("h264.mp4")
    origin.add(source, "drop-restart.mp4")
    document = assert_ready(
        run_job(origin.url("/drop-norange/drop-restart.mp4?after=50000&times=1"))
    )
    assert origin.hits("/drop-norange/drop-restart.mp4") == 2
    assert stored(s3, s3_bucket, document["key"], tmp_path)[0] == source.read_bytes()
    assert document["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_configuration_from_environment_and_proxy_variables_are_ignored(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, s3_bucket: str, tmp_path: Path
) -> None:
    """Every flag works as MEDIAIMPORT_*; HTTP_PROXY must not route around the guard."""
    origin.add(media.path("h264.mp4"))
    result_file = tmp_path / "env-result.json"
    env = {
        "MEDIAIMPORT_URL": origin.url("/files/h264.mp4"),
        "MEDIAIMPORT_BUCKET": s3_bucket,
        "MEDIAIMPORT_KEY_PREFIX": "media/env/asset",
        "MEDIAIMPORT_THUMBNAIL_WIDTH": "160",
        "MEDIAIMPORT_ALLOW_NETWORK": "127.0.0.2/32",
        "MEDIAIMPORT_RESULT_FILE": str(result_file),
        "NO_PROXY": "127.0.0.1",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "ALL_PROXY": "http://127.0.0.1:9",
    }
    run = run_job(None, env=env, raw=[str(Path(run_job.command(None)[0]))])
    assert run.returncode == 0, run.stderr
    document = json.loads(result_file.read_text())
    assert document["key"] == "media/env/asset/h264.mp4"
    assert run.last_stdout_line == result_file.read_text()


def test_running_twice_is_idempotent(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, s3: S3Client, s3_bucket: str
) -> None:
    origin.add(media.path("image.png"))
    first = assert_ready(run_job(origin.url("/files/image.png")))
    second = assert_ready(run_job(origin.url("/files/image.png")))
    assert first == second
    assert sorted(bucket_contents(s3, s3_bucket)[0]) == [
        f"{PREFIX}/image.png",
        f"{PREFIX}/thumbnail.jpg",
    ]


def test_unwritable_result_file_still_prints_the_result(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, tmp_path: Path
) -> None:
    origin.add(media.path("image.png"))
    missing = tmp_path / "no-such-dir" / "termination-log"
    run = run_job(
        None, raw=[*run_job.command(origin.url("/files/image.png")), "--result-file", str(missing)]
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.last_stdout_line)["status"] == "ready"
    assert "could not write the result file" in run.stderr
