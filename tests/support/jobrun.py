"""Running the real ``mediaimport-job`` console script the way a pod would, and
inspecting what it left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediaimport_dev.s3server import S3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

JOB = str(Path(sys.executable).parent / "mediaimport-job")


@dataclass
class JobRun:
    returncode: int
    stdout: str
    stderr: str
    result_text: str | None  # the result file's content
    tmpdir: Path

    @property
    def result(self) -> dict[str, Any]:
        assert self.result_text is not None, self.stderr
        document: dict[str, Any] = json.loads(self.result_text)
        return document

    def result_from(self, path: Path) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(path.read_text())
        return document

    @property
    def last_stdout_line(self) -> str:
        return self.stdout.rstrip("\n").rsplit("\n", 1)[-1]

    @property
    def leftovers(self) -> list[str]:
        return sorted(str(path.relative_to(self.tmpdir)) for path in self.tmpdir.rglob("*"))


def job_env(s3: S3Server, tmpdir: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no stray AWS or MEDIAIMPORT settings from the host."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "MEDIAIMPORT_"))
        and key.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }
    env.update(s3.env())
    env["AWS_CONFIG_FILE"] = str(tmpdir / "no-aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmpdir / "no-aws-credentials")
    env["TMPDIR"] = str(tmpdir / "tmp")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


class JobRunner:
    """Runs ``mediaimport-job`` with the S3 env, a result file and a private TMPDIR."""

    def __init__(self, s3: S3Server, bucket: str, tmp_path: Path) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.tmp_path = tmp_path
        self.runs = 0
        self.last_env: dict[str, str] = {}

    def command(
        self, url: str | None, *args: str, prefix: str = "media/user-1/asset-1"
    ) -> list[str]:
        command = [JOB]
        if url is not None:
            command += ["--url", url]
        return [*command, "--bucket", self.bucket, "--key-prefix", prefix,
                "--allow-network", "127.0.0.2/32", *args]  # fmt: skip

    def start(
        self, url: str | None, *args: str, env: dict[str, str] | None = None,
        prefix: str = "media/user-1/asset-1", raw: list[str] | None = None,
        unset: tuple[str, ...] = (),
    ) -> tuple[subprocess.Popen[str], Path, Path]:  # fmt: skip
        """Start the job; ``unset`` drops variables by name prefix (e.g. ``AWS_``)."""
        self.runs += 1
        workdir = self.tmp_path / f"run-{self.runs}"
        (workdir / "tmp").mkdir(parents=True)
        result_file = workdir / "result.json"
        command = raw if raw is not None else self.command(url, *args, prefix=prefix)
        if raw is None:
            command += ["--result-file", str(result_file)]
        environment = job_env(self.s3, workdir, **(env or {}))
        for name in [name for name in environment if unset and name.startswith(unset)]:
            del environment[name]
        self.last_env = environment
        process = subprocess.Popen(
            command,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return process, workdir, result_file

    def finish(
        self, process: subprocess.Popen[str], workdir: Path, result_file: Path, timeout: float = 120
    ) -> JobRun:
        stdout, stderr = process.communicate(timeout=timeout)
        text = result_file.read_text() if result_file.exists() else None
        return JobRun(process.returncode, stdout, stderr, text, workdir / "tmp")

    def __call__(self, url: str | None, *args: str, **kwargs: Any) -> JobRun:
        timeout = kwargs.pop("timeout", 120)
        return self.finish(*self.start(url, *args, **kwargs), timeout=timeout)


def bucket_contents(s3: S3Client, bucket: str) -> tuple[list[str], list[str]]:
    """(object keys, keys with in-progress multipart uploads)."""
    objects = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [item["Key"] for item in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return objects, uploads
