"""Probe interpretation (pure, on ffprobe-shaped JSON) and real ffprobe on generated media."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from mediaimport_job.errors import JobError
from mediaimport_job.probe import analyse, display_size, parse_rate, probe, rotation, short_format
from support.media import MediaLibrary


def video_stream(**extra: Any) -> dict[str, Any]:
    return {
        "index": 0,
        "codec_type": "video",
        "codec_name": "h264",
        "width": 1920,
        "height": 1080,
        "avg_frame_rate": "30000/1001",
        "r_frame_rate": "30/1",
        **extra,
    }


def doc(format_name: str, *streams: dict[str, Any], **fmt: Any) -> dict[str, Any]:
    return {
        "format": {"format_name": format_name, "duration": "2.5", "bit_rate": "1000", **fmt},
        "streams": list(streams),
    }


@pytest.mark.parametrize(
    ("stream", "degrees", "size"),
    [
        (video_stream(), 0, (1920, 1080)),
        (
            video_stream(side_data_list=[{"side_data_type": "Display Matrix", "rotation": -90}]),
            270,
            (1080, 1920),
        ),
        (video_stream(side_data_list=[{"rotation": 90}]), 90, (1080, 1920)),
        (video_stream(side_data_list=[{"rotation": 180}]), 180, (1920, 1080)),
        (video_stream(tags={"rotate": "270"}), 270, (1080, 1920)),
        (video_stream(width=0), 0, (None, None)),
    ],
)
def test_rotation_swaps_displayed_size(
    stream: dict[str, Any], degrees: int, size: tuple[int | None, int | None]
) -> None:
    assert rotation(stream) == degrees
    assert display_size(stream) == size


@pytest.mark.parametrize(
    ("value", "rate"),
    [("30000/1001", 29.97), ("25/1", 25.0), ("0/0", None), ("bad", None), (None, None)],
)
def test_parse_rate(value: object, rate: float | None) -> None:
    assert parse_rate(value) == rate


@pytest.mark.parametrize(
    ("format_name", "tags", "codecs", "hint", "short"),
    [
        ("mov,mp4,m4a,3gp,3g2,mj2", {"major_brand": "isom"}, ["h264"], "", "mp4"),
        ("mov,mp4,m4a,3gp,3g2,mj2", {"major_brand": "qt  "}, ["hevc"], "", "mov"),
        ("mov,mp4,m4a,3gp,3g2,mj2", {"major_brand": "M4A "}, ["aac"], "", "m4a"),
        ("mov,mp4,m4a,3gp,3g2,mj2", {"major_brand": "3gp4"}, ["h263"], "", "3gp"),
        ("mov,mp4,m4a,3gp,3g2,mj2", {}, ["h264"], "x.MOV", "mov"),
        ("matroska,webm", {}, ["vp9", "opus"], "", "webm"),
        ("matroska,webm", {}, ["h264", "aac"], "", "mkv"),
        ("png_pipe", {}, ["png"], "", "png"),
        ("jpeg_pipe", {}, ["mjpeg"], "", "jpeg"),
        ("gif", {}, ["gif"], "", "gif"),
        ("mp3", {}, ["mp3"], "", "mp3"),
        ("mpegts", {}, ["h264"], "", "ts"),
        ("something,else", {}, ["x"], "", "something"),
    ],
)
def test_short_format(
    format_name: str, tags: dict[str, str], codecs: list[str], hint: str, short: str
) -> None:
    data = {"format": {"format_name": format_name, "tags": tags}}
    streams = [{"codec_name": codec} for codec in codecs]
    assert short_format(data, streams, hint) == short


def test_cover_art_does_not_make_audio_a_video() -> None:
    cover = video_stream(index=1, codec_name="png", disposition={"attached_pic": 1})
    audio = {"index": 0, "codec_type": "audio", "codec_name": "mp3"}
    probed = analyse(doc("mp3", audio, cover), None)
    assert probed.media_type == "audio"
    assert probed.media.width is None and probed.media.frameRate is None
    assert probed.video_stream == 1  # the cover becomes the thumbnail


def test_declared_type_must_match() -> None:
    with pytest.raises(JobError) as error:
        analyse(doc("mov,mp4,m4a,3gp,3g2,mj2", video_stream()), "audio")
    assert error.value.reason == "TypeMismatch" and not error.value.retryable


def test_animated_gif_is_an_image_that_may_be_declared_video() -> None:
    gif = video_stream(codec_name="gif", width=10, height=10)
    assert analyse(doc("gif", gif), None, frames=12).media_type == "image"
    declared = analyse(doc("gif", gif), "video", frames=12)
    assert declared.media_type == "video" and declared.media.duration == 2.5
    with pytest.raises(JobError):
        analyse(doc("gif", gif), "video", frames=1)  # a still GIF is no video


def test_no_streams_is_not_media() -> None:
    with pytest.raises(JobError) as error:
        analyse(doc("mp3"), None)
    assert error.value.reason == "NotMedia"


# name -> (type, format, content type, (width, height) as displayed, has thumbnail source)
REAL = {
    "h264.mp4": ("video", "mp4", "video/mp4", (320, 240), True),
    "h264_faststart.mp4": ("video", "mp4", "video/mp4", (320, 240), True),
    "vp9.webm": ("video", "webm", "video/webm", (320, 240), True),
    "hevc.mov": ("video", "mov", "video/quicktime", (320, 240), True),
    "portrait.mp4": ("video", "mp4", "video/mp4", (240, 320), True),
    "odd.mp4": ("video", "mp4", "video/mp4", (321, 241), True),
    "audio.mp3": ("audio", "mp3", "audio/mpeg", (None, None), False),
    "audio.wav": ("audio", "wav", "audio/wav", (None, None), False),
    "audio.ogg": ("audio", "ogg", "audio/ogg", (None, None), False),
    "audio.m4a": ("audio", "m4a", "audio/mp4", (None, None), False),
    "cover.mp3": ("audio", "mp3", "audio/mpeg", (None, None), True),
    "image.png": ("image", "png", "image/png", (200, 100), True),
    "image.jpg": ("image", "jpeg", "image/jpeg", (200, 100), True),
    "image.webp": ("image", "webp", "image/webp", (200, 100), True),
    "still.gif": ("image", "gif", "image/gif", (200, 100), True),
    "animated.gif": ("image", "gif", "image/gif", (200, 100), True),
}


def as_downloaded(media: MediaLibrary, name: str, tmp_path: Path) -> Path:
    """The job stores downloads as ``source`` (no extension): ffprobe must judge content."""
    target = tmp_path / "source"
    shutil.copyfile(media.path(name), target)
    return target


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_media(media: MediaLibrary, name: str, tmp_path: Path) -> None:
    media_type, fmt, content_type, size, thumbnail = REAL[name]
    probed = probe(as_downloaded(media, name, tmp_path), None)
    assert (probed.media_type, probed.media.format, probed.content_type) == (
        media_type,
        fmt,
        content_type,
    )
    assert (probed.media.width, probed.media.height) == size
    assert (probed.video_stream is not None) == thumbnail
    if media_type == "video":
        assert probed.media.duration and probed.media.frameRate == 25.0 and probed.media.bitrate
    if name in {"image.png", "still.gif"}:
        assert probed.media.duration is None and probed.media.frameRate is None
    if name == "animated.gif":
        assert probed.animated and probed.media.duration


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("page.html", "not a readable media file"),
        ("random.bin", "not a readable media file"),
        ("truncated.mp4", "not a readable media file"),
        ("truncated_faststart.mp4", "truncated"),
        ("empty.bin", "empty"),
    ],
)
def test_broken_inputs_are_not_media(
    media: MediaLibrary, name: str, message: str, tmp_path: Path
) -> None:
    source = as_downloaded(media, name, tmp_path)
    with pytest.raises(JobError) as error:
        probe(source, None)
    assert error.value.reason == "NotMedia" and not error.value.retryable
    assert message in error.value.message
    assert str(source) not in error.value.message  # no local paths in results
