"""A JPEG thumbnail of the local file with ffmpeg.

Input seeking (``-ss`` before ``-i``) jumps to the nearest keyframe instead of
decoding from the start: ~0.1 s instead of seconds deep into a long video.
ffmpeg applies the display rotation itself (autorotate), and the scale filter
works from the display aspect ratio (``dar``, which folds in non-square pixels),
so a portrait phone video gets a portrait thumbnail. One thread everywhere:
ffmpeg sizes its pools from the node's CPUs, not the pod's limit.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from . import tools
from .errors import JobError
from .probe import SAFE_INPUT_OPTIONS
from .progress import FfmpegProgress
from .reasons import FailureReason

THUMBNAIL_TIMEOUT = 120.0
# Seeking exactly to the end finds no frame; stay this far inside the duration.
END_MARGIN = 0.1


def clamp_time(at: float, duration: float | None) -> float:
    """``at`` moved into ``[0, duration - END_MARGIN]``; 0 without a duration."""
    if not duration or duration <= 0:
        return 0.0
    return max(0.0, min(at, duration - END_MARGIN))


def scale_filter(width: int) -> str:
    """Scale to ``width`` with an even height from the display aspect ratio."""
    return f"scale={width}:'max(2,trunc({width}/dar/2+0.5)*2)',setsar=1"


def command(source: Path, output: Path, width: int, at: float, stream: int | None) -> list[str]:
    seek = ["-ss", f"{at:.3f}"] if at > 0 else []
    select = ["-map", f"0:{stream}"] if stream is not None else []
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
        "-progress", "pipe:1", "-nostats",
        *SAFE_INPUT_OPTIONS, "-threads", "1", *seek, "-i", f"file:{source}",
        *select, "-frames:v", "1", "-vf", scale_filter(width),
        "-q:v", "2", "-threads", "1", "-filter_threads", "1",
        "-f", "image2", "-update", "1", "-c:v", "mjpeg", "-pix_fmt", "yuvj420p",
        f"file:{output}",
    ]  # fmt: skip


def render(
    source: Path,
    output: Path,
    *,
    width: int,
    at: float,
    duration: float | None,
    stream: int | None,
    timeout: float = THUMBNAIL_TIMEOUT,
    on_fraction: Callable[[float], None] | None = None,
) -> Path:
    """Write the thumbnail to ``output``; raises JobError (ProcessingFailed).

    ``on_fraction`` hears ffmpeg's progress (one frame: it ends at 1.0)."""
    start = clamp_time(at, duration)
    # If seeking finds nothing (a sparse or oddly indexed file), the first frame
    # is the honest fallback.
    for position in dict.fromkeys([start, 0.0]):
        output.unlink(missing_ok=True)
        try:
            progress = FfmpegProgress(None, on_fraction or (lambda _fraction: None))
            completed = tools.run_with_progress(
                command(source, output, width, position, stream), timeout, progress.feed
            )
        except subprocess.TimeoutExpired:
            raise JobError(
                FailureReason.PROCESSING_FAILED,
                f"ffmpeg did not render the thumbnail within {timeout:g} s",
                retryable=True,
            ) from None
        if completed.returncode == 0 and output.exists() and output.stat().st_size > 0:
            return output
    detail = completed.stderr.decode(errors="replace").strip().splitlines()
    message = detail[-1] if detail else f"exit code {completed.returncode}"
    raise JobError(
        FailureReason.NOT_MEDIA,
        f"no frame could be decoded for the thumbnail (ffmpeg: {message[:300]})",
        retryable=False,
    )
