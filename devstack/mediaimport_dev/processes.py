"""Child processes of the local stack: own process group, log file, clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import Field, asdict
from pathlib import Path
from typing import Any, ClassVar, Self


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv in a new session, stdout and stderr appended to log_path.

    A new session puts the child and everything it forks in one process group,
    so stopping it kills the whole tree and nothing is orphaned.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is gone for every purpose here.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def stop_group(pid: int, *, grace: float = 5.0) -> None:
    """SIGTERM the process group led by pid, SIGKILL it after grace seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_started(
    process: subprocess.Popen[bytes],
    log_path: Path,
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    interval: float = 0.1,
) -> None:
    """Start-up only: poll ``ready()`` until it holds.

    If the process exits first, or ``timeout`` passes (the process is then
    stopped), raises RuntimeError naming ``what`` with the tail of its log.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited; log {log_path}:\n{log_tail(log_path)}")
        if ready():
            return
        time.sleep(interval)
    stop_group(process.pid)
    raise RuntimeError(
        f"{what} did not become ready within {timeout:.0f} s; "
        f"log {log_path}:\n{log_tail(log_path)}"
    )


class ServerProcess:
    """What the stack's own servers (Postgres, S3) share, mixed into their dataclasses.

    Each runs as one process group under ``root``; ``to_state()``/``from_state()`` carry it
    between commands as JSON, so ``mediaimport-dev down`` stops what ``up`` started.
    """

    # Declared so that asdict() knows the subclasses for the dataclasses they are.
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    root: Path
    pid: int | None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def running(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def to_state(self) -> dict[str, Any]:
        state = asdict(self)
        state["root"] = str(self.root)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        return cls(**{**state, "root": Path(state["root"])})

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
