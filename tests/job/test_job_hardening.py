"""The job's secrets stay out of the media tools' reach: the process is non-dumpable, so
ffprobe and ffmpeg (same uid, hostile input) cannot read its /proc/PID/environ, and the
channel's credential leaves the environment children inherit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.channel_server import ImportChannel
from support.jobrun import JOB, JobRunner, job_env
from support.media import MediaLibrary
from support.origin import Origin

# Root has CAP_SYS_PTRACE, which reads any process's /proc files, dumpable or not: the
# proof runs the job (and so its tools) as an unprivileged uid when the tests are root.
NOBODY = 65534
AS_ROOT = os.geteuid() == 0

READER = """\
import os, sys
target = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else os.getppid()
try:
    with open(f"/proc/{target}/environ", "rb") as source:
        data = source.read()
    outcome = b"readable " + data
except OSError as exc:
    outcome = f"denied {exc.errno}".encode()
"""


def _unprivileged() -> dict[str, object]:
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if AS_ROOT else {}


@pytest.fixture(scope="module")
def python() -> str:
    """An interpreter of this Python version the unprivileged uid may run (the tests' own
    may live in root's home); the venv's packages are added with ``site.addsitedir``."""
    candidates = [sys.executable, f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"]
    for candidate in candidates:
        try:
            subprocess.run(
                [candidate, "-I", "-c", "pass"], check=True, capture_output=True, timeout=30,
                **_unprivileged(),  # type: ignore[arg-type]
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            continue
        return candidate
    pytest.skip(f"no Python {sys.version_info[:2]} that uid {NOBODY} may run")


def _job_command(python: str, *args: str) -> list[str]:
    boot = (
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r}); "
        "from mediaimport_job.cli import run; run()"
    )
    return [python, "-c", boot, *args]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged job can write (pytest's own are 0700, root's)."""
    path = Path(tempfile.mkdtemp(prefix="mediaimport-hardening-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _install_reader(python: str, directory: Path, records: Path) -> None:
    """An ``ffprobe`` that first tries to read its parent's (the job's) environment."""
    directory.mkdir()
    records.mkdir()
    records.chmod(0o777)  # mkdir's mode is cut by the umask
    real = shutil.which("ffprobe")
    assert real
    wrapper = directory / "ffprobe"
    wrapper.write_text(
        f"#!{python} -I\n{READER}"
        f"with open(os.path.join({str(records)!r}, str(os.getpid())), 'wb') as sink:\n"
        "    sink.write(outcome)\n"
        f"os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n"
    )
    wrapper.chmod(0o755)


def test_a_tool_of_the_job_cannot_read_its_environment(
    media: MediaLibrary, origin: Origin, run_job: JobRunner, channel: ImportChannel,
    shared_dir: Path, python: str,
) -> None:  # fmt: skip
    wrappers, records = shared_dir / "bin", shared_dir / "records"
    _install_reader(python, wrappers, records)
    (shared_dir / "tmp").mkdir()
    (shared_dir / "tmp").chmod(0o777)
    origin.add(media.path("h264.mp4"), "hardening.mp4")
    env = job_env(run_job.s3, shared_dir, **channel.env())
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{wrappers}{os.pathsep}{env['PATH']}"
    result_file = shared_dir / "result.json"
    job_args = run_job.command(origin.url("/files/hardening.mp4"))
    assert job_args[0] == JOB
    command = _job_command(python, *job_args[1:], "--result-file", str(result_file))
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False,
        **_unprivileged(),  # type: ignore[arg-type]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcomes = [path.read_bytes() for path in records.iterdir()]
    assert outcomes, "ffprobe never ran"
    for outcome in outcomes:
        assert outcome.startswith(b"denied"), outcome[:16]
        assert channel.token.encode() not in outcome


def test_the_same_reader_does_read_an_ordinary_parent(shared_dir: Path, python: str) -> None:
    """The control: without PR_SET_DUMPABLE 0 the reader sees the secret, so the test
    above proves the job's hardening, not the reader's failure."""
    reader = shared_dir / "reader.py"
    reader.write_text(READER + "sys.stdout.buffer.write(outcome)\n")
    reader.chmod(0o644)
    parent = (
        "import subprocess, sys\n"
        f"print(subprocess.run([{python!r}, '-I', {str(reader)!r}], "
        "capture_output=True).stdout.decode(errors='replace'))\n"
    )
    done = subprocess.run(
        [python, "-I", "-c", parent], env={"SECRET_FOR_CONTROL": "visible"},
        capture_output=True, text=True, timeout=30, check=True, cwd=shared_dir,
        **_unprivileged(),  # type: ignore[arg-type]
    )  # fmt: skip
    assert done.stdout.startswith("readable") and "SECRET_FOR_CONTROL=visible" in done.stdout


def test_hardening_takes_the_credential_out_of_the_environment() -> None:
    code = (
        "import os, subprocess\n"
        "from mediaimport_job import hardening\n"
        "environ = hardening.harden()\n"
        "child = subprocess.run(['env'], capture_output=True, text=True).stdout\n"
        "print(environ['MEDIAIMPORT_CHANNEL_TOKEN'], 'MEDIAIMPORT_CHANNEL_TOKEN' in os.environ,"
        " 'MEDIAIMPORT_CHANNEL_TOKEN' in child, hardening.is_dumpable())\n"
    )
    env = {**os.environ, "MEDIAIMPORT_CHANNEL_TOKEN": "tok-123"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["tok-123", "False", "False", "False"]
