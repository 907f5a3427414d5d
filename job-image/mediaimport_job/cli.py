"""``mediaimport-job``: the process the pod runs.

Whatever happens — bad arguments, a failed import, SIGTERM at the Job's
deadline, a bug — the process ends with exactly one result document, written
to the result file (the termination message path) and as the last line of
stdout, and with its private temp directory removed. Logs go to stderr.

Start-up is on the critical path (spawn → first request), so this module and
what the download needs import neither boto3 nor pydantic: the S3 client is
built, and the result models imported, on a background thread while the
download runs. The console script (``run``) ends with ``os._exit`` once the
result is out, skipping interpreter teardown (0.1-0.15 s with boto3 loaded).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from . import pipeline
from .config import DEFAULT_RESULT_FILE, ConfigError, env_name, parse_settings
from .errors import JobError, Terminated
from .reasons import ExitCode, FailureReason
from .upload import ClientPromise, make_client

if TYPE_CHECKING:
    from .result import FailedResult, ReadyResult

log = logging.getLogger("mediaimport_job")

# 128 + SIGTERM, the shell's convention: not 2, so the Job counts it as retryable.
TERMINATED_EXIT = 128 + signal.SIGTERM


def _install_signal_handlers() -> None:
    """Turn SIGTERM/SIGINT into an exception on the main thread, once.

    The exception unwinds through every ``finally`` (aborting uploads, removing
    temp files); a second signal during that cleanup is ignored so the cleanup
    itself is not cut short.
    """
    fired = False

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        raise Terminated(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _result_file_hint(argv: Sequence[str]) -> str:
    """The result file even when the other arguments are invalid."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--result-file")
    try:
        known, _ = parser.parse_known_args(list(argv))
    except SystemExit:  # argparse exits on e.g. a dangling "--result-file"
        known = argparse.Namespace(result_file=None)
    return known.result_file or os.environ.get(env_name("--result-file")) or DEFAULT_RESULT_FILE


def emit(result: ReadyResult | FailedResult, result_file: str) -> None:
    from .result import render  # noqa: PLC0415 - pydantic: off the start-up path

    text = render(result)
    try:
        Path(result_file).write_text(text, encoding="utf-8")
    except OSError as exc:
        # Run outside Kubernetes there is no /dev/termination-log: stdout still has it.
        log.warning("could not write the result file %s: %s", result_file, exc)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _failed(reason: FailureReason, message: str, *, retryable: bool) -> FailedResult:
    from .result import ErrorInfo, FailedResult  # noqa: PLC0415 - see emit

    return FailedResult(error=ErrorInfo(reason=reason, message=message, retryable=retryable))


def execute(argv: Sequence[str]) -> tuple[ReadyResult | FailedResult, int, str]:
    """Run the job; returns the result, the exit code and the result file."""
    result_file = _result_file_hint(argv)
    try:
        settings = parse_settings(argv)
    except ConfigError as exc:
        return _failed(exc.reason, str(exc), retryable=False), ExitCode.PERMANENT, result_file
    result_file = settings.result_file
    workdir = Path(tempfile.mkdtemp(prefix="mediaimport-job-"))
    try:
        clients = ClientPromise(
            lambda: make_client(settings.upload_concurrency), then=pipeline.warm_up
        )
        ready = pipeline.run(settings, pipeline.Workspace(workdir), clients)
    except JobError as exc:
        failed = exc.to_result()
        return failed, failed.exit_code, result_file
    except Terminated as exc:
        message = (
            f"the job was stopped by {exc.signal_name} (the Job's deadline, a cancellation "
            "or the node going away) before it finished"
        )
        terminated = _failed(FailureReason.TERMINATED, message, retryable=True)
        return terminated, TERMINATED_EXIT, result_file
    except Exception as exc:
        log.exception("unexpected error")
        message = f"unexpected {type(exc).__name__}: {exc}"
        internal = _failed(FailureReason.INTERNAL_ERROR, message, retryable=True)
        return internal, ExitCode.RETRYABLE, result_file
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return ready, ExitCode.READY, result_file


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job and write its result; returns the exit code (for in-process callers)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _install_signal_handlers()
    try:
        result, code, result_file = execute(sys.argv[1:] if argv is None else argv)
    except Terminated:
        # SIGTERM before the workspace existed: nothing to clean up.
        result = _failed(
            FailureReason.TERMINATED, "the job was stopped before it started", retryable=True
        )
        code, result_file = (
            TERMINATED_EXIT,
            _result_file_hint(sys.argv[1:] if argv is None else argv),
        )
    if result.status == "failed":
        error = result.error
        log.error(
            "import failed: %s: %s (retryable: %s)", error.reason, error.message, error.retryable
        )
    emit(result, result_file)
    return int(code)


def run() -> NoReturn:
    """The console script: ``main``, then exit at once.

    By now the result is written, the temp directory removed and every S3
    request finished or abandoned (a failed run waited, bounded, for its
    cleanup): all that is left is interpreter teardown (module and thread
    finalization, 0.1-0.15 s with boto3 loaded), which ``os._exit`` skips.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: the file has the result
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
