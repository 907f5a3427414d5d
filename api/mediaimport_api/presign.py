"""Presigned GET URLs (1 hour) for stored media, with the endpoint clients reach.

Clients often reach S3 by another address than the cluster does (a public
endpoint, a tunnel), so the URLs are signed for MEDIAIMPORT_API_S3_PUBLIC_ENDPOINT
when it is set. Signing needs no network, but boto3's first client takes a while
to build and a page of assets means many signatures: both run off the event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

EXPIRES_SECONDS = 3600
Keys = tuple[str | None, str | None]  # (file key, thumbnail key)


class Presigner:
    def __init__(self, bucket: str, endpoint: str | None) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    def _s3(self) -> S3Client:
        with self._lock:
            if self._client is None:
                custom = self.endpoint or os.environ.get("AWS_ENDPOINT_URL_S3")
                # Other S3 implementations rarely serve bucket subdomains.
                config = Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path" if custom else "auto"},
                )
                self._client = boto3.client(
                    "s3", endpoint_url=self.endpoint or None, config=config
                )
            return self._client

    async def start(self) -> None:
        await asyncio.to_thread(self._s3)

    def _sign(self, key: str | None) -> str | None:
        if not key:
            return None
        return self._s3().generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=EXPIRES_SECONDS
        )

    async def urls(self, keys: Sequence[Keys]) -> list[tuple[str | None, str | None]]:
        if not any(key or thumb for key, thumb in keys):
            return [(None, None) for _ in keys]

        def sign_all() -> list[tuple[str | None, str | None]]:
            return [(self._sign(key), self._sign(thumb)) for key, thumb in keys]

        return await asyncio.to_thread(sign_all)
