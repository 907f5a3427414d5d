"""ffprobe and ffmpeg parse untrusted media: they must not hold the job's S3 credentials.

Each tool is replaced on PATH by a wrapper that records the environment it was started
with (from /proc, as the kernel handed it over) and then executes the real program.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from support.jobrun import JobRunner
from support.media import MediaLibrary
from support.origin import Origin

TOOLS = ("ffprobe", "ffmpeg")


def _install_recording_wrappers(directory: Path, records: Path) -> None:
    directory.mkdir()
    records.mkdir()
    for tool in TOOLS:
        real = shutil.which(tool)
        assert real, f"{tool} is not installed"
        wrapper = directory / tool
        wrapper.write_text(
            f"#!{sys.executable} -I\n"
            "import os, sys\n"
            "with open('/proc/self/environ', 'rb') as source:\n"
            "    environ = source.read()\n"
            f"record = os.path.join({str(records)!r}, '{tool}.' + str(os.getpid()))\n"
            "with open(record, 'wb') as sink:\n"
            "    sink.write(environ)\n"
            f"os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n"
        )
        wrapper.chmod(0o755)


def test_ffprobe_and_ffmpeg_start_with_an_empty_environment(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, tmp_path: Path
) -> None:
    """The job runs with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (run_job's
    environment, like the pod's from its Secret); the tools see none of it."""
    wrappers, records = tmp_path / "wrappers", tmp_path / "records"
    _install_recording_wrappers(wrappers, records)
    origin.add(media.path("h264.mp4"), "env-probe.mp4")
    run = run_job(
        origin.url("/files/env-probe.mp4"),
        env={"PATH": f"{wrappers}{os.pathsep}{os.environ['PATH']}"},
    )
    assert run.returncode == 0, run.stderr
    assert run.result["thumbnailKey"]
    seen = sorted(records.iterdir())
    # Both tools ran through the wrappers (ffprobe at least once, ffmpeg for the thumbnail).
    assert {record.name.split(".")[0] for record in seen} == set(TOOLS)
    for record in seen:
        assert record.read_bytes() == b"", f"{record.name} saw {record.read_bytes()[:200]!r}"

