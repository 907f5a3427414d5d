"""Helpers of the tests of the operator's S3 operations for import pods."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mediaimport_dev.s3server import S3Server
from mediaimport_operator.storage import S3Credentials, build_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ServerCredentials:
    """A credentials source where every namespace signs with the test server's keys."""

    def __init__(self, server: S3Server) -> None:
        self.built = build_client(S3Credentials(
            access_key_id=server.access_key, secret_access_key=server.secret_key,
            region=server.region, endpoint_url=server.endpoint_url))

    async def client(self, namespace: str) -> S3Client:
        return self.built
