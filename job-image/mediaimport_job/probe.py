"""What the downloaded file is: ffprobe on the local file, then pure interpretation.

ffprobe only ever sees the local file: ``-protocol_whitelist file`` stops a
playlist inside the file from making it fetch URLs, and ``-format_whitelist``
keeps it to real media containers (no HLS/DASH/concat demuxers that open other
files). It runs with one thread and a timeout.

The interpretation (``analyse``) is pure, so the mapping from ffprobe's view to
our result is unit-tested without ffmpeg.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from . import tools
from .errors import JobError
from .result import FailureReason, MediaInfo, MediaType

PROBE_TIMEOUT = 60.0
# Demuxers for real media files. Left out on purpose: hls, dash, concat and
# other demuxers that open further files; image2 (file-name patterns); raw
# elementary streams that random bytes can pass for.
DEMUXERS = (
    "mov,matroska,webm,avi,flv,mpegts,mpeg,ogg,mp3,wav,w64,flac,aac,ac3,eac3,aiff,caf,amr,wv,"
    "ivf,asf,gif,gif_pipe,apng,png_pipe,jpeg_pipe,webp_pipe,bmp_pipe,tiff_pipe"
)
SAFE_INPUT_OPTIONS = ("-protocol_whitelist", "file", "-format_whitelist", DEMUXERS)
# Demuxers that hold one picture (or an animation: GIF, APNG).
_IMAGE_DEMUXERS = {
    "gif", "gif_pipe", "apng", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe",
}  # fmt: skip
_IMAGE_CODECS = {"png", "mjpeg", "jpeg", "webp", "gif", "bmp", "tiff", "apng"}
_WEBM_CODECS = {"vp8", "vp9", "av1", "opus", "vorbis"}

_IMAGE_FORMATS = {
    "gif": "gif", "gif_pipe": "gif", "apng": "png", "png_pipe": "png", "jpeg_pipe": "jpeg",
    "webp_pipe": "webp", "bmp_pipe": "bmp", "tiff_pipe": "tiff",
}  # fmt: skip
_SIMPLE_FORMATS = {
    "avi": "avi", "flv": "flv", "mpegts": "ts", "mpeg": "mpg", "ogg": "ogg", "mp3": "mp3",
    "wav": "wav", "w64": "w64", "flac": "flac", "aac": "aac", "ac3": "ac3", "eac3": "eac3",
    "aiff": "aiff", "caf": "caf", "amr": "amr", "wv": "wv", "ivf": "ivf", "asf": "asf",
}  # fmt: skip
# (format, media type) -> Content-Type; (format, None) applies to any type.
_CONTENT_TYPES: dict[tuple[str, str | None], str] = {
    ("mp4", "audio"): "audio/mp4",
    ("mp4", None): "video/mp4",
    ("m4a", None): "audio/mp4",
    ("mov", None): "video/quicktime",
    ("3gp", "audio"): "audio/3gpp",
    ("3gp", None): "video/3gpp",
    ("webm", "audio"): "audio/webm",
    ("webm", None): "video/webm",
    ("mkv", "audio"): "audio/x-matroska",
    ("mkv", None): "video/x-matroska",
    ("ogg", "video"): "video/ogg",
    ("ogg", None): "audio/ogg",
    ("avi", None): "video/x-msvideo",
    ("flv", None): "video/x-flv",
    ("ts", None): "video/mp2t",
    ("mpg", None): "video/mpeg",
    ("ivf", None): "video/x-ivf",
    ("asf", "audio"): "audio/x-ms-wma",
    ("asf", None): "video/x-ms-asf",
    ("mp3", None): "audio/mpeg",
    ("wav", None): "audio/wav",
    ("w64", None): "audio/x-w64",
    ("flac", None): "audio/flac",
    ("aac", None): "audio/aac",
    ("ac3", None): "audio/ac3",
    ("eac3", None): "audio/eac3",
    ("aiff", None): "audio/aiff",
    ("caf", None): "audio/x-caf",
    ("amr", None): "audio/amr",
    ("wv", None): "audio/x-wavpack",
    ("gif", None): "image/gif",
    ("png", None): "image/png",
    ("jpeg", None): "image/jpeg",
    ("webp", None): "image/webp",
    ("bmp", None): "image/bmp",
    ("tiff", None): "image/tiff",
}
_BRANDS = (("qt", "mov"), ("m4a", "m4a"), ("m4b", "m4a"), ("3gp", "3gp"), ("3g2", "3gp"))
_EXTENSIONS = {"jpeg": "jpg", "mkv": "mkv", "mpg": "mpg"}


@dataclass(frozen=True)
class Probed:
    media_type: MediaType
    media: MediaInfo
    content_type: str
    extension: str  # for default file names: "mp4", "jpg", ...
    animated: bool  # an image with more than one frame (GIF, APNG)
    video_stream: int | None  # index of the picture to render a thumbnail from


def _ffprobe(
    path: Path, extra: Sequence[str], timeout: float
) -> subprocess.CompletedProcess[bytes]:
    command = [
        "ffprobe", "-hide_banner", "-v", "error", *SAFE_INPUT_OPTIONS, "-threads", "1",
        *extra, "-i", f"file:{path}",
    ]  # fmt: skip
    try:
        return tools.run(command, timeout)
    except subprocess.TimeoutExpired:
        raise JobError(
            FailureReason.PROCESSING_FAILED,
            f"ffprobe did not finish within {timeout:g} s",
            retryable=True,
        ) from None


def run_ffprobe(path: Path, extra: Sequence[str] = (), timeout: float = PROBE_TIMEOUT) -> str:
    """ffprobe's JSON for ``path``; raises JobError (NotMedia) when it cannot read it."""
    completed = _ffprobe(path, [*extra, "-of", "json"], timeout)
    if completed.returncode != 0:
        stderr = completed.stderr.decode(errors="replace").strip()
        detail = stderr.splitlines()[-1] if stderr else f"exit code {completed.returncode}"
        detail = detail.replace(f"file:{path}: ", "").replace(str(path), "the file")
        raise JobError(
            FailureReason.NOT_MEDIA,
            f"the file is not a readable media file (ffprobe: {detail[:300]})",
            retryable=False,
        )
    return completed.stdout.decode(errors="replace")


def probe(path: Path, declared: MediaType | None, name_hint: str = "") -> Probed:
    """Probe ``path`` and interpret the result (see ``analyse``)."""
    if path.stat().st_size == 0:
        raise JobError(FailureReason.NOT_MEDIA, "the file is empty", retryable=False)
    data = _load(run_ffprobe(path, ["-show_format", "-show_streams"]))
    frames = None
    if _demuxer(data) in _IMAGE_DEMUXERS:
        # Demuxing a picture is cheap; it tells a still from an animation.
        count = [
            "-count_packets",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_packets",
        ]
        streams = _load(run_ffprobe(path, count)).get("streams") or [{}]
        frames = _int(streams[0].get("nb_read_packets"))
    probed = analyse(data, declared, frames=frames, name_hint=name_hint)
    if _demuxer(data).startswith("mov,") and iso_bmff_truncated(path):
        raise JobError(
            FailureReason.NOT_MEDIA,
            "the file is truncated: its boxes announce more data than it has",
            retryable=False,
        )
    return probed


def iso_bmff_truncated(path: Path) -> bool:
    """Whether an MP4/MOV's top-level boxes claim more bytes than the file has.

    A truncated file whose index sits at the front ("faststart") still probes
    fine; its ``mdat`` box, though, announces a size past the end of the file.
    Walking the top-level box headers costs a few reads, not a decoder run.
    """
    size = path.stat().st_size
    offset = 0
    with path.open("rb") as file:
        while offset + 8 <= size:
            file.seek(offset)
            header = file.read(16)
            length = int.from_bytes(header[:4], "big")
            if length == 1:  # a 64-bit size follows the type
                if len(header) < 16:
                    return True
                length = int.from_bytes(header[8:16], "big")
            elif length == 0:  # the box extends to the end of the file
                return False
            if length < 8:
                return True  # corrupt: a box cannot be smaller than its header
            offset += length
    return offset > size


def _load(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise JobError(
            FailureReason.PROCESSING_FAILED, "ffprobe printed invalid JSON", retryable=True
        ) from None
    return data if isinstance(data, dict) else {}


def _demuxer(data: Mapping[str, Any]) -> str:
    return str((data.get("format") or {}).get("format_name") or "")


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def parse_rate(value: Any) -> float | None:
    """``"30000/1001"`` → 29.97; ``"0/0"`` and garbage → None."""
    try:
        rate = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return None
    return round(float(rate), 3) if rate > 0 else None


def rotation(stream: Mapping[str, Any]) -> int:
    """Degrees of display rotation from the display matrix or the legacy ``rotate`` tag."""
    for side_data in stream.get("side_data_list") or []:
        if isinstance(side_data, Mapping) and "rotation" in side_data:
            value = _float(side_data.get("rotation"))
            if value is not None:
                return round(value) % 360
    value = _float((stream.get("tags") or {}).get("rotate"))
    return 0 if value is None else round(value) % 360


def display_size(stream: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """Width and height as shown: swapped for a quarter-turn rotation."""
    width, height = _int(stream.get("width")), _int(stream.get("height"))
    if not width or not height:
        return None, None
    if rotation(stream) % 180 == 90:
        return height, width
    return width, height


def short_format(
    data: Mapping[str, Any], streams: Sequence[Mapping[str, Any]], name_hint: str
) -> str:
    """A short container name from ffprobe's comma list, brand tags and codecs."""
    fmt = data.get("format") or {}
    demuxer = str(fmt.get("format_name") or "")
    codecs = {str(stream.get("codec_name")) for stream in streams}
    if demuxer.startswith("mov,"):
        # One demuxer reads all ISO-BMFF flavours; the major brand says which it is.
        brand = str((fmt.get("tags") or {}).get("major_brand") or "").strip().lower()
        if not brand and name_hint.lower().endswith(".mov"):
            brand = "qt"
        return next(
            (short for prefix, short in _BRANDS if brand.startswith(prefix)),
            "mp4",
        )
    if demuxer == "matroska,webm":
        return "webm" if codecs and codecs <= _WEBM_CODECS else "mkv"
    if demuxer in _IMAGE_FORMATS:
        return _IMAGE_FORMATS[demuxer]
    return _SIMPLE_FORMATS.get(demuxer, demuxer.split(",", 1)[0] or "unknown")


def content_type(fmt: str, media_type: MediaType) -> str:
    return (
        _CONTENT_TYPES.get((fmt, media_type))
        or _CONTENT_TYPES.get((fmt, None))
        or "application/octet-stream"
    )


def analyse(
    data: Mapping[str, Any],
    declared: MediaType | None,
    *,
    frames: int | None = None,
    name_hint: str = "",
) -> Probed:
    """Interpret ffprobe's ``-show_format -show_streams`` JSON.

    Type rules: a picture demuxer (PNG, JPEG, WebP, GIF, APNG...) is an image;
    a GIF/APNG with several ``frames`` is still an image by default (users call
    animated GIFs images) but may be declared a video. Otherwise a real video
    stream (not cover art) makes a video, audio streams alone make audio.
    """
    fmt = data.get("format") or {}
    streams: list[Mapping[str, Any]] = [
        s for s in data.get("streams") or [] if isinstance(s, Mapping)
    ]
    demuxer = str(fmt.get("format_name") or "")

    def is_cover(stream: Mapping[str, Any]) -> bool:
        return bool((stream.get("disposition") or {}).get("attached_pic"))

    pictures = [
        s for s in streams
        if s.get("codec_type") == "video" and not is_cover(s) and _int(s.get("width"))
    ]  # fmt: skip
    covers = [s for s in streams if s.get("codec_type") == "video" and is_cover(s)]
    audios = [s for s in streams if s.get("codec_type") == "audio"]

    animated = False
    if demuxer in _IMAGE_DEMUXERS and pictures:
        detected: MediaType = "image"
        animated = (frames or 1) > 1
    elif pictures:
        detected = "video"
    elif audios:
        detected = "audio"
    else:
        raise JobError(
            FailureReason.NOT_MEDIA,
            f"the file has no video, image or audio stream (container: {demuxer or 'unknown'})",
            retryable=False,
        )
    if (
        detected == "video"
        and str(pictures[0].get("codec_name")) in _IMAGE_CODECS
        and _int(pictures[0].get("nb_frames")) == 1
    ):
        # A lone picture in a container (e.g. a PNG in a .mov) is not a video.
        detected = "image"

    media_type: MediaType = detected
    if declared is not None and declared != detected:
        compatible = declared == "video" and detected == "image" and animated
        if not compatible:
            raise JobError(
                FailureReason.TYPE_MISMATCH,
                f"declared type {declared} but the file is {_article(detected)} {detected}",
                retryable=False,
            )
        media_type = declared

    main = pictures[0] if pictures else audios[0]
    width, height = display_size(main) if pictures else (None, None)
    still = media_type == "image" and not animated
    duration = None if still else (_float(fmt.get("duration")) or _float(main.get("duration")))
    frame_rate = None
    if pictures and not still:
        frame_rate = parse_rate(main.get("avg_frame_rate")) or parse_rate(main.get("r_frame_rate"))
    bitrate = None if still else (_int(fmt.get("bit_rate")) or _int(main.get("bit_rate")))
    short = short_format(data, streams, name_hint)
    thumbnail_source = pictures[0] if pictures else (covers[0] if covers else None)
    return Probed(
        media_type=media_type,
        media=MediaInfo(
            duration=round(duration, 3) if duration is not None else None,
            width=width,
            height=height,
            frameRate=frame_rate,
            codec=str(main.get("codec_name") or "")[:64] or None,
            bitrate=bitrate,
            format=short[:32],
        ),
        content_type=content_type(short, media_type),
        extension=_EXTENSIONS.get(short, short),
        animated=animated,
        video_stream=_int(thumbnail_source.get("index")) if thumbnail_source else None,
    )


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
