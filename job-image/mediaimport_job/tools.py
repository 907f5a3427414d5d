"""ffprobe and ffmpeg: child processes that parse untrusted media.

They run with an empty environment, so a decoder exploited by a crafted file
finds none of the job's secrets (the S3 credentials above all) in its
environment. An empty environment has no PATH either: the program is looked up
on the job's own PATH and started by its absolute path.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

# What the media tools may see of the job's environment: nothing.
TOOL_ENVIRONMENT: dict[str, str] = {}


def run(command: Sequence[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` (its first item a program name) with no environment and no stdin;
    raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds (the child is killed)."""
    program, *args = command
    return subprocess.run(
        [shutil.which(program) or program, *args],
        capture_output=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        env=TOOL_ENVIRONMENT,
    )
