"""``mediaimport-job``: the process the pod runs.

Whatever happens — bad arguments, a failed import, SIGTERM at the Job's
deadline, a bug — the process ends with exactly one result document, written
to the result file (the termination message path) and as the last line of
stdout, and with its private temp directory removed. Logs go to stderr.

Before anything else the process hardens itself (``hardening``): it becomes
non-dumpable, so ffprobe and ffmpeg (same uid, hostile input) cannot read its
environment or memory through /proc, and the channel's credential leaves
``os.environ``. With a channel (``MEDIAIMPORT_CHANNEL_URL``) progress goes to the
operator as the import runs and the result is posted to it before the
termination message is written; in brokered storage (the default with a
channel) every write goes through presigned URLs from the channel and boto3 is
never imported.

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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from . import hardening, pipeline
from .brokered import BrokeredStorage
from .channel import ChannelClient
from .config import DEFAULT_RESULT_FILE, ConfigError, Settings, env_name, parse_settings
from .errors import JobError, Terminated
from .progress import Reporter, Tracker
from .reasons import ExitCode, FailureReason
from .upload import ClientPromise, DirectStorage, Storage, make_client

if TYPE_CHECKING:
    from .result import FailedResult, ReadyResult

log = logging.getLogger("mediaimport_job")

# 128 + SIGTERM, the shell's convention: not 2, so the Job counts it as retryable.
TERMINATED_EXIT = 128 + signal.SIGTERM
# A failed result is posted best effort: the termination message has it anyway.
FAILED_RESULT_BUDGET = 3.0


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


def make_storage(settings: Settings, channel: ChannelClient | None) -> Storage:
    """The backend the settings ask for: brokered (the channel; no boto3) or direct."""
    if settings.storage == "brokered":
        assert channel is not None  # the settings refuse brokered without a channel
        pipeline.start_warm_up()
        return BrokeredStorage(channel, settings.bucket, concurrency=settings.upload_concurrency)
    clients = ClientPromise(lambda: make_client(settings.upload_concurrency), then=pipeline.warm_up)
    return DirectStorage(clients, settings.bucket)


def _submitter(channel: ChannelClient, reporter: Reporter | None) -> Callable[[ReadyResult], None]:
    def submit(ready: ReadyResult) -> None:
        from .channel_protocol import RESULT, PodIdentity, ResultSubmission  # noqa: PLC0415

        if reporter is not None:
            reporter.stop(final=True)  # the last report (100 %) before the result
        pod = PodIdentity(name=channel.pod_name, uid=channel.pod_uid)
        channel.call(RESULT, ResultSubmission(pod=pod, result=ready))
        log.info("the operator's channel accepted the result")

    return submit


def _post_failure(
    channel: ChannelClient | None, reporter: Reporter | None, failed: FailedResult
) -> None:
    """Tell the channel about a failure, briefly; never raises."""
    if reporter is not None:
        reporter.stop(final=False, timeout=0.5)
    if channel is None:
        return
    try:
        from .channel_protocol import RESULT, PodIdentity, ResultSubmission  # noqa: PLC0415

        pod = PodIdentity(name=channel.pod_name, uid=channel.pod_uid)
        submission = ResultSubmission(pod=pod, result=failed)
        channel.call(RESULT, submission, budget=FAILED_RESULT_BUDGET)
    except JobError as exc:
        log.warning("could not post the failed result to the channel: %s", exc.message)
    except Terminated:
        pass  # the failure already in hand is the result
    except Exception:
        log.exception("could not post the failed result to the channel")


def execute(
    argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> tuple[ReadyResult | FailedResult, int, str]:
    """Run the job; returns the result, the exit code and the result file."""
    result_file = _result_file_hint(argv)
    try:
        settings = parse_settings(argv, environ)
    except ConfigError as exc:
        return _failed(exc.reason, str(exc), retryable=False), ExitCode.PERMANENT, result_file
    result_file = settings.result_file
    channel = reporter = None
    if settings.channel is not None:
        channel = ChannelClient(settings.channel, pool_size=4)
    tracker = Tracker()
    if channel is not None and settings.channel is not None and settings.channel.progress_interval:
        reporter = Reporter(tracker, channel, interval=settings.channel.progress_interval).start()
    workdir = Path(tempfile.mkdtemp(prefix="mediaimport-job-"))
    failed: FailedResult
    try:
        storage = make_storage(settings, channel)
        finish = _submitter(channel, reporter) if channel is not None else None
        ready = pipeline.run(
            settings, pipeline.Workspace(workdir), storage, tracker=tracker, finish=finish
        )
    except JobError as exc:
        failed = exc.to_result()
        code = int(failed.exit_code)
    except Terminated as exc:
        message = (
            f"the job was stopped by {exc.signal_name} (the Job's deadline, a cancellation "
            "or the node going away) before it finished"
        )
        failed = _failed(FailureReason.TERMINATED, message, retryable=True)
        code = TERMINATED_EXIT
    except Exception as exc:
        log.exception("unexpected error")
        message = f"unexpected {type(exc).__name__}: {exc}"
        failed = _failed(FailureReason.INTERNAL_ERROR, message, retryable=True)
        code = ExitCode.RETRYABLE
    else:
        return ready, ExitCode.READY, result_file
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _post_failure(channel, reporter, failed)
    return failed, code, result_file


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job and write its result; returns the exit code (for in-process callers)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    environ = hardening.harden()
    _install_signal_handlers()
    try:
        result, code, result_file = execute(sys.argv[1:] if argv is None else argv, environ)
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
