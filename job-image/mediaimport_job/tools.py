"""ffprobe and ffmpeg: child processes that parse untrusted media.

They run with an empty environment, so a decoder exploited by a crafted file
finds none of the job's secrets (the S3 credentials above all) in its
environment. An empty environment has no PATH either: the program is looked up
on the job's own PATH and started by its absolute path.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

# What the media tools may see of the job's environment: nothing.
TOOL_ENVIRONMENT: dict[str, str] = {}
MAX_STDERR = 1024 * 1024  # what a failure message needs, and a bound on a noisy tool


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


def run_with_progress(
    command: Sequence[str], timeout: float, on_line: Callable[[str], None]
) -> subprocess.CompletedProcess[bytes]:
    """``run`` for an ffmpeg started with ``-progress pipe:1``: each line of its stdout goes
    to ``on_line`` as it comes (the returned stdout is empty); stderr is collected.

    Same environment, stdin and timeout as ``run``; a failing ``on_line`` is logged, not
    fatal (progress never fails the work).
    """
    program, *args = command
    process = subprocess.Popen(
        [shutil.which(program) or program, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=TOOL_ENVIRONMENT,
    )
    assert process.stdout is not None and process.stderr is not None
    output, errors = process.stdout, process.stderr
    stderr = bytearray()

    def collect() -> None:
        while chunk := errors.read(65536):
            stderr.extend(chunk[: max(0, MAX_STDERR - len(stderr))])

    expired = threading.Event()

    def kill() -> None:
        expired.set()
        process.kill()

    collector = threading.Thread(target=collect, name="tool-stderr", daemon=True)
    collector.start()
    killer = threading.Timer(timeout, kill)
    killer.daemon = True
    killer.start()
    try:
        for raw in output:
            try:
                on_line(raw.decode(errors="replace"))
            except Exception:
                log.exception("reading %s's progress failed", program)
        returncode = process.wait()
        collector.join()
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        killer.cancel()
        output.close()
        errors.close()
    if expired.is_set():
        raise subprocess.TimeoutExpired(list(command), timeout, stderr=bytes(stderr))
    return subprocess.CompletedProcess(list(command), returncode, b"", bytes(stderr))
