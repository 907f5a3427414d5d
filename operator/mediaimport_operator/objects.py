"""Deleting a Ready import's stored objects (only when the operator is set to)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import boto3

from .model import ResultStatus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ObjectStore:
    """S3 from the standard AWS_* environment variables (the operator's own Secret)."""

    def __init__(self) -> None:
        self._client: S3Client | None = None

    def _s3(self) -> S3Client:
        if self._client is None:
            self._client = boto3.client("s3")
        return self._client

    async def delete(self, result: ResultStatus) -> list[str]:
        keys = [key for key in (result.key, result.thumbnail_key) if key]

        def run() -> None:
            client = self._s3()
            for key in keys:
                client.delete_object(Bucket=result.bucket, Key=key)  # idempotent: 204 if gone

        await asyncio.to_thread(run)
        return keys
