"""Real media files made with ffmpeg, generated lazily once per test session.

Each sample is small (a second or two, a few hundred pixels) so the whole set
builds in seconds; ``large.mov`` is the exception on purpose: raw video, cheap
to produce, big enough (>16 MiB) to exercise the streaming multipart upload.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

_LAVFI_VIDEO = "testsrc2=size=320x240:rate=25"
_LAVFI_AUDIO = "sine=frequency=440:sample_rate=44100"
_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]

# name -> ffmpeg arguments after "-y" (inputs, codecs); the output path is appended.
_RECIPES: dict[str, list[str]] = {
    # H.264 + AAC; without faststart the index (moov) is at the end.
    "h264.mp4": ["-f", "lavfi", "-i", _LAVFI_VIDEO, "-f", "lavfi", "-i", _LAVFI_AUDIO,
                 "-t", "2", *_X264, "-c:a", "aac", "-shortest"],
    "h264_faststart.mp4": ["-f", "lavfi", "-i", _LAVFI_VIDEO, "-t", "2", *_X264,
                           "-movflags", "+faststart"],
    "vp9.webm": ["-f", "lavfi", "-i", _LAVFI_VIDEO, "-f", "lavfi", "-i", _LAVFI_AUDIO,
                 "-t", "1", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                 "-c:a", "libopus", "-shortest"],
    "hevc.mov": ["-f", "lavfi", "-i", _LAVFI_VIDEO, "-t", "1", "-c:v", "libx265",
                 "-preset", "ultrafast", "-x265-params", "log-level=error", "-tag:v", "hvc1",
                 "-f", "mov"],
    # Odd sizes need a chroma format without subsampling (and a source that allows them).
    "odd.mp4": ["-f", "lavfi", "-i", "testsrc=size=322x242:rate=25,crop=321:241:0:0",
                "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p"],
    "audio.mp3": ["-f", "lavfi", "-i", _LAVFI_AUDIO, "-t", "1", "-c:a", "libmp3lame"],
    "audio.wav": ["-f", "lavfi", "-i", _LAVFI_AUDIO, "-t", "1", "-c:a", "pcm_s16le"],
    "audio.ogg": ["-f", "lavfi", "-i", _LAVFI_AUDIO, "-t", "1", "-c:a", "libvorbis"],
    "audio.m4a": ["-f", "lavfi", "-i", _LAVFI_AUDIO, "-t", "1", "-c:a", "aac", "-f", "ipod"],
    "image.png": ["-f", "lavfi", "-i", "testsrc2=size=200x100", "-frames:v", "1"],
    "image.jpg": ["-f", "lavfi", "-i", "testsrc2=size=200x100", "-frames:v", "1", "-q:v", "3"],
    "image.webp": ["-f", "lavfi", "-i", "testsrc2=size=200x100", "-frames:v", "1",
                   "-c:v", "libwebp"],
    "still.gif": ["-f", "lavfi", "-i", "testsrc2=size=200x100", "-frames:v", "1"],
    "animated.gif": ["-f", "lavfi", "-i", "testsrc2=size=200x100:rate=10", "-t", "1"],
    # Raw video in MOV: no encoding cost, ~24 MiB.
    "large.mov": ["-f", "lavfi", "-i", "testsrc2=size=640x480:rate=25", "-t", "1.6",
                  "-c:v", "rawvideo", "-pix_fmt", "uyvy422", "-f", "mov"],
}  # fmt: skip

# Files derived from other samples, and inputs that are not (complete) media.
_DERIVED = {"page.html", "random.bin", "truncated.mp4", "truncated_faststart.mp4", "empty.bin",
           "portrait.mp4", "cover.mp3"}  # fmt: skip


@dataclass
class MediaLibrary:
    """Sample files in ``root``, each made on first use."""

    root: Path

    def __post_init__(self) -> None:
        self._lock = threading.RLock()  # derived samples build their sources first

    @staticmethod
    def names() -> list[str]:
        return sorted([*_RECIPES, *_DERIVED])

    def path(self, name: str) -> Path:
        target = self.root / name
        with self._lock:
            if not target.exists():
                self._make(name, target)
        return target

    def _ffmpeg(self, args: list[str], target: Path) -> None:
        partial = target.with_name(f".partial-{target.name}")
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *args, str(partial)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        os.replace(partial, target)

    def _make(self, name: str, target: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if name in _RECIPES:
            self._ffmpeg(_RECIPES[name], target)
        elif name == "portrait.mp4":
            # ffmpeg 5.1 has no -display_rotation; the rotate tag on a stream copy
            # becomes the MP4 display matrix (a 90° turn: shown as 240x320).
            source = self.path("h264_faststart.mp4")
            self._ffmpeg(["-i", str(source), "-c", "copy", "-metadata:s:v", "rotate=90"], target)
        elif name == "cover.mp3":
            audio, picture = self.path("audio.mp3"), self.path("image.png")
            self._ffmpeg(
                ["-i", str(audio), "-i", str(picture), "-map", "0", "-map", "1", "-c:a", "copy",
                 "-c:v", "png", "-disposition:v", "attached_pic"],
                target,
            )  # fmt: skip
        elif name == "page.html":
            target.write_text(
                "<!doctype html><html><head><title>Not found</title></head>"
                "<body><h1>This link has expired</h1></body></html>\n"
            )
        elif name == "random.bin":
            target.write_bytes(os.urandom(256 * 1024))
        elif name == "truncated.mp4":
            data = self.path("h264.mp4").read_bytes()
            target.write_bytes(data[: len(data) // 2])
        elif name == "truncated_faststart.mp4":
            data = self.path("h264_faststart.mp4").read_bytes()
            target.write_bytes(data[: len(data) // 2])
        elif name == "empty.bin":
            target.write_bytes(b"")
        else:
            raise KeyError(f"no sample named {name!r}")


def ffprobe_streams(path: Path) -> list[dict[str, object]]:
    """ffprobe's stream list, for assertions."""
    output = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    streams: list[dict[str, object]] = json.loads(output)["streams"]
    return streams
