"""A real S3-compatible server on loopback: versitygw with its POSIX backend.

versitygw verifies SigV4 signatures, so a wrong secret key really fails, and it
implements multipart uploads, copies and metadata the way the job uses them.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from .binaries import binary
from .ports import free_port, wait_for_port
from .processes import ServerProcess, log_tail, spawn, stop_group

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3ServerError(RuntimeError):
    """The S3 server did not start or answer."""


@dataclass
class S3Server(ServerProcess):
    """versitygw serving the directory ``root/data`` on 127.0.0.1.

    Use as a context manager, or ``start()``/``stop()``; ``to_state()`` and
    ``from_state()`` let another process (``mediaimport-dev down``) stop it.
    """

    root: Path
    access_key: str = "mediaimport"
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    region: str = "us-east-1"
    host: str = "127.0.0.1"
    port: int = 0
    pid: int | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "versitygw.log"

    def start(self, timeout: float = 20.0) -> None:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        process = spawn(
            [
                binary("versitygw"),
                "--port", f"{self.host}:{self.port}",
                "--access", self.access_key,
                "--secret", self.secret_key,
                "--region", self.region,
                "--quiet",
                "posix", data,
            ],
            self.log_path,
        )
        self.pid = process.pid
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            raise S3ServerError(
                f"versitygw did not listen on {self.host}:{self.port} within {timeout:.0f} s; "
                f"log {self.log_path}:\n{log_tail(self.log_path)}"
            )
        self._wait_until_answering(timeout)

    def _wait_until_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            try:
                client.list_buckets()
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise S3ServerError(f"versitygw does not answer S3 requests: {exc}") from exc
                time.sleep(0.1)
            else:
                return

    def stop(self) -> None:
        if self.pid is not None:
            stop_group(self.pid)
            self.pid = None

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point any S3 client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def client(self, *, secret_key: str | None = None) -> S3Client:
        """A boto3 client for this server (``secret_key`` overrides, to test a wrong one)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def create_bucket(self, name: str) -> None:
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
