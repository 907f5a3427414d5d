"""S3 on behalf of imports: what an import pod may write, signed or done by the operator.

The import pod holds no S3 credential. It asks its channel, and the operator signs (or,
for the calls that cannot be presigned, performs) write operations on keys strictly
under that import's own prefix in the configured bucket, nothing else: no reads, no
listings, no deletes. A presigned URL fixes its key, and its Content-Type, Content-Length
and sha256 metadata when they are given, for ``PRESIGN_EXPIRES_S`` seconds.

The operator signs with the credentials the import would have used: the S3 Secret of the
import's namespace (``settings.s3_secret_name``, read with the operator's own Kubernetes
client: ``get`` on that one Secret name), or, without one, its own identity (the default
boto3 chain: IRSA, Workload Identity, environment). botocore is synchronous: every call
runs on a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from mediaimport_job.channel_protocol import (
    MAX_PARTS_PER_REQUEST,
    PRESIGN_EXPIRES_S,
    CompletedPart,
    PartsSigned,
    PresignedPart,
    PresignedRequest,
)
from mediaimport_job.upload import replace_metadata

from .jobs import key_prefix
from .kube import ApiError, Json, Kube, secret_path
from .model import MediaImport
from .settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024
MAX_PART_NUMBER = 10_000
# PutObject's own limit; larger objects go multipart.
MAX_PUT_BYTES = 5 * 1024**3
SECRET_TTL_S = 60.0
SHA256_METADATA = "sha256"
_CONTENT_TYPE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# S3 error codes that say the request was wrong, not that S3 is unavailable.
_REQUEST_ERRORS = {
    "EntityTooLarge",
    "EntityTooSmall",
    "InvalidArgument",
    "InvalidPart",
    "InvalidPartOrder",
    "InvalidRequest",
    "NoSuchUpload",
}
_MISSING = {"404", "NoSuchKey", "NotFound"}


class KeyRefused(Exception):  # noqa: N818 - a verdict, like PermissionError
    """A key or bucket outside what the import may write."""


class StorageRefused(Exception):  # noqa: N818 - a verdict
    """A request S3 (or the operator, before asking S3) refuses as wrong: no retry helps."""


class StorageUnavailable(Exception):  # noqa: N818 - a state, like Fenced
    """S3, or the credentials to reach it, are unavailable now: try again later."""


# -- what one import may write (pure) ------------------------------------------------------
def _segments_problem(path: str, what: str) -> str | None:
    if any(unicodedata.category(char) == "Cc" for char in path) or "\\" in path:
        return f"The {what} contains control characters or backslashes."
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        return f"The {what} has an empty, '.' or '..' segment."
    return None


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot scope an import's keys (None: it can)."""
    if not prefix:
        return "The import's key prefix is empty."
    return _segments_problem(prefix, "import's key prefix")


def key_problem(prefix: str, key: str) -> str | None:
    """Why ``key`` is not an object an import with ``prefix`` may write (None: it is):
    strictly under ``prefix + "/"``, no empty, '.' or '..' segment, no control character."""
    problem = prefix_problem(prefix)
    if problem is not None:
        return problem
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"The key is longer than {MAX_KEY_BYTES} bytes."
    if not key.startswith(prefix + "/") or len(key) == len(prefix) + 1:
        return f"The key {key!r} is not under the import's prefix {prefix}/."
    return _segments_problem(key, f"key {key!r}")


@dataclass(frozen=True)
class Scope:
    """What one import may write: keys under ``prefix/`` in ``bucket``, with the
    credentials of ``namespace``."""

    namespace: str
    bucket: str
    prefix: str

    @classmethod
    def of(cls, mi: MediaImport, settings: Settings) -> Scope:
        # The job strips slashes around its --key-prefix the same way.
        prefix = key_prefix(mi, settings).strip("/")
        return cls(namespace=mi.ref.namespace, bucket=settings.bucket, prefix=prefix)

    def key_problem(self, key: str, *, bucket: str | None = None) -> str | None:
        if bucket is not None and bucket != self.bucket:
            return f"The bucket {bucket!r} is not the configured one ({self.bucket})."
        return key_problem(self.prefix, key)

    def require(self, key: str, *, bucket: str | None = None) -> None:
        problem = self.key_problem(key, bucket=bucket)
        if problem is not None:
            raise KeyRefused(problem)


def content_type_problem(content_type: str) -> str | None:
    if not _CONTENT_TYPE.match(content_type):
        return "The content type must be printable ASCII without surrounding spaces."
    return None


# -- credentials ------------------------------------------------------------------------
@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str | None = None
    endpoint_url: str | None = None
    session_token: str | None = field(default=None, repr=False)


def credentials_from_secret(secret: Json, *, default_region: str | None = None) -> S3Credentials:
    """The S3 credentials of a core/v1 Secret (the keys the job's envFrom used)."""
    name = (secret.get("metadata") or {}).get("name", "")
    data = secret.get("data") or {}

    def value(key: str) -> str | None:
        raw = data.get(key)
        if raw is None:
            return None
        try:
            text = base64.b64decode(str(raw), validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise StorageUnavailable(f"The S3 Secret {name!r} has an undecodable {key}.") from error
        return text or None

    access_key, secret_key = value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        raise StorageUnavailable(
            f"The S3 Secret {name!r} lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY."
        )
    return S3Credentials(
        access_key_id=access_key,
        secret_access_key=secret_key,
        region=value("AWS_REGION") or default_region,
        endpoint_url=value("AWS_ENDPOINT_URL_S3"),
        session_token=value("AWS_SESSION_TOKEN"),
    )


def build_client(
    credentials: S3Credentials | None, *, region: str | None = None,
    endpoint_url: str | None = None, pool: int = 16,
) -> S3Client:
    """An S3 client that signs SigV4 (presigned URLs included) and sends checksums only where
    S3 requires them, like the job's (S3-compatible stores do not all take CRC32 headers).

    ``credentials``: a namespace's Secret, and nothing from the operator's environment
    (not even its AWS_ENDPOINT_URL_S3); None: the operator's own identity.
    """
    config = Config(
        signature_version="s3v4",
        connect_timeout=5,
        read_timeout=30,
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=pool,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # botocore takes it; its stubs do not list it yet.
        ignore_configured_endpoint_urls=credentials is not None,  # type: ignore[call-arg]
    )
    if credentials is None:
        session = boto3.session.Session()
        return session.client("s3", region_name=region, endpoint_url=endpoint_url, config=config)
    session = boto3.session.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    )
    return session.client("s3", region_name=credentials.region or region or "us-east-1",
                          endpoint_url=credentials.endpoint_url, config=config)


class ClientSource(Protocol):
    async def client(self, namespace: str) -> S3Client: ...


class OwnIdentity:
    """The operator's own identity (IRSA, Workload Identity, environment), for every
    namespace."""

    def __init__(self, *, region: str | None, endpoint_url: str | None) -> None:
        self._region, self._endpoint_url = region, endpoint_url
        self._client: S3Client | None = None
        self._lock = asyncio.Lock()

    async def client(self, namespace: str) -> S3Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await asyncio.to_thread(
                            build_client, None, region=self._region,
                            endpoint_url=self._endpoint_url)
                    except BotoCoreError as error:
                        raise StorageUnavailable(f"No S3 client: {error}") from error
        return self._client


@dataclass
class _Cached:
    resource_version: str
    client: S3Client
    checked_at: float


class NamespaceSecrets:
    """Each namespace's S3 Secret, read when first needed and again after ``ttl`` seconds;
    a client is built again only when the Secret changed (its resourceVersion)."""

    def __init__(
        self, kube: Kube, secret_name: str, *, default_region: str | None = None,
        ttl: float = SECRET_TTL_S, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube, self._name = kube, secret_name
        self._default_region = default_region
        self._ttl, self._clock = ttl, clock
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def client(self, namespace: str) -> S3Client:
        cached = self._cache.get(namespace)
        if cached is not None and self._clock() - cached.checked_at < self._ttl:
            return cached.client
        # One read per namespace at a time: the other requests wait for its answer.
        async with self._locks.setdefault(namespace, asyncio.Lock()):
            cached = self._cache.get(namespace)
            if cached is not None and self._clock() - cached.checked_at < self._ttl:
                return cached.client
            return await self._refresh(namespace, cached)

    async def _refresh(self, namespace: str, cached: _Cached | None) -> S3Client:
        try:
            secret = await self._kube.get(secret_path(namespace, self._name))
        except (ApiError, OSError, TimeoutError) as error:
            if cached is not None:  # the API server is away: the last credentials still sign
                log.warning("S3 Secret not read again; the cached one stays",
                            extra={"namespace": namespace, "secret": self._name,
                                   "error": f"{type(error).__name__}: {error}"})
                cached.checked_at = self._clock()
                return cached.client
            raise StorageUnavailable(
                f"The S3 Secret {self._name!r} of namespace {namespace} cannot be read: {error}"
            ) from error
        if secret is None:
            self._cache.pop(namespace, None)
            raise StorageUnavailable(
                f"The S3 Secret {self._name!r} does not exist in namespace {namespace}."
            )
        version = str((secret.get("metadata") or {}).get("resourceVersion") or "")
        if cached is not None and version and cached.resource_version == version:
            cached.checked_at = self._clock()
            return cached.client
        credentials = credentials_from_secret(secret, default_region=self._default_region)
        try:
            client = await asyncio.to_thread(build_client, credentials)
        except BotoCoreError as error:
            raise StorageUnavailable(f"No S3 client for namespace {namespace}: {error}") from error
        self._cache[namespace] = _Cached(version, client, self._clock())
        log.info("S3 credentials loaded", extra={"namespace": namespace, "secret": self._name,
                                                 "resource_version": version})
        return client


class SecretPresence:
    """Whether a namespace has the S3 Secret, read at most every ``ttl`` seconds: the
    reconciler asks on every sync of a running brokered import."""

    def __init__(self, kube: Kube, name: str, *, ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._kube, self._name, self._ttl, self._clock = kube, name, ttl, clock
        self._seen: dict[str, tuple[float, bool]] = {}

    async def exists(self, namespace: str) -> bool:
        now = self._clock()
        cached = self._seen.get(namespace)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            found = await self._kube.get(secret_path(namespace, self._name)) is not None
        except (ApiError, OSError, TimeoutError):
            return True  # unknown: say nothing rather than something wrong
        self._seen[namespace] = (now, found)
        return found


# -- the operations -----------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectHead:
    size: int
    content_type: str | None
    metadata: dict[str, str]

    @property
    def sha256(self) -> str | None:
        return self.metadata.get(SHA256_METADATA)


def signed_headers(url: str, values: dict[str, str]) -> dict[str, str]:
    """The headers a presigned URL's signature covers, with the values they were signed
    with (``values``, by lowercase name); ``host`` is the URL's own."""
    query = parse_qs(urlsplit(url).query)
    names = (query.get("X-Amz-SignedHeaders") or [""])[0].split(";")
    headers: dict[str, str] = {}
    for name in names:
        if name in ("", "host"):
            continue
        if name not in values:
            raise StorageUnavailable(f"The presigned URL signs a header not asked for: {name}.")
        headers[_HEADER_NAMES.get(name, name)] = values[name]
    return headers


_HEADER_NAMES = {"content-type": "Content-Type", "content-length": "Content-Length"}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _translate(error: Exception, action: str) -> Exception:
    if isinstance(error, ClientError):
        code = _code(error)
        message = str(error.response.get("Error", {}).get("Message", "")) or code
        if code in _REQUEST_ERRORS:
            return StorageRefused(f"{action}: S3 answered {code}: {message}")
        return StorageUnavailable(f"{action}: S3 answered {code}: {message}")
    return StorageUnavailable(f"{action}: {type(error).__name__}: {error}")


class Storage:
    """S3 operations for imports, each confined to the import's ``Scope``."""

    def __init__(self, source: ClientSource, *, bucket: str, max_object_bytes: int) -> None:
        self._source = source
        self.bucket = bucket
        self.max_object_bytes = max_object_bytes

    @classmethod
    def from_settings(cls, settings: Settings, kube: Kube) -> Storage:
        source: ClientSource
        if settings.s3_secret_name:
            source = NamespaceSecrets(kube, settings.s3_secret_name,
                                      default_region=settings.s3_region)
        else:
            source = OwnIdentity(region=settings.s3_region, endpoint_url=settings.s3_endpoint)
        return cls(source, bucket=settings.bucket, max_object_bytes=settings.max_bytes)

    def _check(self, scope: Scope, key: str) -> None:
        if scope.bucket != self.bucket:
            raise KeyRefused(f"The bucket {scope.bucket!r} is not the configured one "
                             f"({self.bucket}).")
        scope.require(key)

    async def _run(self, scope: Scope, action: str, call: Callable[[S3Client], Any]) -> Any:
        client = await self._source.client(scope.namespace)
        try:
            return await asyncio.to_thread(call, client)
        except (ClientError, BotoCoreError) as error:
            raise _translate(error, action) from error

    async def presign_put(
        self, scope: Scope, key: str, *, content_type: str, sha256: str, content_length: int
    ) -> PresignedRequest:
        """A PutObject URL for ``key``; its Content-Type, Content-Length and sha256 metadata
        are signed in, so the pod must send exactly the headers returned."""
        self._check(scope, key)
        problem = content_type_problem(content_type)
        if problem is not None:
            raise StorageRefused(problem)
        if not _SHA256.match(sha256):
            raise StorageRefused("The sha256 must be 64 lowercase hexadecimal digits.")
        if not 0 <= content_length <= min(MAX_PUT_BYTES, self.max_object_bytes):
            raise StorageRefused(f"A single PUT takes at most "
                                 f"{min(MAX_PUT_BYTES, self.max_object_bytes)} bytes.")
        params = {"Bucket": scope.bucket, "Key": key, "ContentType": content_type,
                  "ContentLength": content_length, "Metadata": {SHA256_METADATA: sha256}}

        def sign(client: S3Client) -> str:
            return client.generate_presigned_url("put_object", Params=params,
                                                 ExpiresIn=PRESIGN_EXPIRES_S)

        url = str(await self._run(scope, "Signing a PutObject", sign))
        headers = signed_headers(url, {
            "content-type": content_type,
            "content-length": str(content_length),
            f"x-amz-meta-{SHA256_METADATA}": sha256,
        })
        return PresignedRequest(url=url, headers=headers, expiresIn=PRESIGN_EXPIRES_S)

    async def create_multipart(self, scope: Scope, key: str) -> str:
        """Start a multipart upload of ``key``; its upload id."""
        self._check(scope, key)

        def create(client: S3Client) -> str:
            return client.create_multipart_upload(Bucket=scope.bucket, Key=key)["UploadId"]

        return str(await self._run(scope, "Creating a multipart upload", create))

    async def presign_parts(
        self, scope: Scope, key: str, *, upload_id: str, first: int, count: int
    ) -> PartsSigned:
        """UploadPart URLs for parts ``first`` .. ``first + count - 1`` of an upload."""
        self._check(scope, key)
        if not (1 <= count <= MAX_PARTS_PER_REQUEST and first >= 1
                and first + count - 1 <= MAX_PART_NUMBER):
            raise StorageRefused(f"Part numbers run from 1 to {MAX_PART_NUMBER}, at most "
                                 f"{MAX_PARTS_PER_REQUEST} per request.")

        def sign(client: S3Client) -> list[PresignedPart]:
            return [
                PresignedPart(partNumber=number, url=client.generate_presigned_url(
                    "upload_part",
                    Params={"Bucket": scope.bucket, "Key": key, "UploadId": upload_id,
                            "PartNumber": number},
                    ExpiresIn=PRESIGN_EXPIRES_S))
                for number in range(first, first + count)
            ]

        parts = await self._run(scope, "Signing UploadPart", sign)
        return PartsSigned(parts=parts, expiresIn=PRESIGN_EXPIRES_S)

    async def complete(
        self, scope: Scope, key: str, *, upload_id: str, parts: Sequence[CompletedPart],
        content_type: str, sha256: str,
    ) -> ObjectHead:
        """Complete an upload, then give the object its final Content-Type and sha256
        metadata (a copy onto itself: known only after the probe); the object as stored."""
        self._check(scope, key)
        problem = content_type_problem(content_type)
        if problem is not None:
            raise StorageRefused(problem)
        if not _SHA256.match(sha256):
            raise StorageRefused("The sha256 must be 64 lowercase hexadecimal digits.")
        completed: list[CompletedPartTypeDef] = [
            {"PartNumber": part.partNumber, "ETag": part.etag}
            for part in sorted(parts, key=lambda part: part.partNumber)
        ]

        def complete(client: S3Client) -> int:
            client.complete_multipart_upload(Bucket=scope.bucket, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": completed})
            return int(client.head_object(Bucket=scope.bucket, Key=key)["ContentLength"])

        size = int(await self._run(scope, "Completing the multipart upload", complete))
        if size > self.max_object_bytes:
            await self._run(scope, "Deleting an oversized object",
                            lambda client: client.delete_object(Bucket=scope.bucket, Key=key))
            raise StorageRefused(f"The object holds {size} bytes, more than imports may store "
                                 f"({self.max_object_bytes}); it was deleted.")

        def replace(client: S3Client) -> None:
            replace_metadata(client, scope.bucket, key, size=size, content_type=content_type,
                             sha256=sha256)

        await self._run(scope, "Setting the object's metadata", replace)
        head = await self.head(scope, key)
        if head is None:
            raise StorageUnavailable(f"The object {key} vanished after its upload completed.")
        return head

    async def abort(self, scope: Scope, key: str, *, upload_id: str) -> None:
        """Abort an upload (one already gone counts as aborted)."""
        self._check(scope, key)

        def abort(client: S3Client) -> None:
            try:
                client.abort_multipart_upload(Bucket=scope.bucket, Key=key, UploadId=upload_id)
            except ClientError as error:
                if _code(error) != "NoSuchUpload":
                    raise

        await self._run(scope, "Aborting the multipart upload", abort)

    async def head(self, scope: Scope, key: str) -> ObjectHead | None:
        """An object's size and metadata; None when it does not exist."""
        self._check(scope, key)

        def head(client: S3Client) -> ObjectHead | None:
            try:
                answer = client.head_object(Bucket=scope.bucket, Key=key)
            except ClientError as error:
                if _code(error) in _MISSING:
                    return None
                raise
            return ObjectHead(size=int(answer["ContentLength"]),
                              content_type=answer.get("ContentType"),
                              metadata=dict(answer.get("Metadata") or {}))

        result: ObjectHead | None = await self._run(scope, "Reading an object's metadata", head)
        return result

    async def delete_prefix(self, scope: Scope) -> int:
        """Delete every object under the import's prefix and abort its unfinished uploads
        (an import that ended Failed leaves nothing half-written); how many objects went."""
        if scope.bucket != self.bucket:
            raise KeyRefused(f"The bucket {scope.bucket!r} is not the configured one.")
        problem = prefix_problem(scope.prefix)
        if problem is not None:
            raise KeyRefused(problem)
        under = scope.prefix + "/"

        def delete(client: S3Client) -> int:
            uploads = client.get_paginator("list_multipart_uploads")
            for listing in uploads.paginate(Bucket=scope.bucket, Prefix=under):
                for upload in listing.get("Uploads") or []:
                    try:
                        client.abort_multipart_upload(Bucket=scope.bucket, Key=upload["Key"],
                                                      UploadId=upload["UploadId"])
                    except ClientError as error:
                        if _code(error) != "NoSuchUpload":
                            raise
            deleted = 0
            for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=scope.bucket, Prefix=under):
                keys = [item["Key"] for item in page.get("Contents") or []]
                if not keys:
                    continue
                answer = client.delete_objects(
                    Bucket=scope.bucket,
                    Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True})
                errors = answer.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise StorageUnavailable(f"{len(errors)} objects not deleted, e.g. "
                                             f"{first.get('Key')}: {first.get('Code')}")
                deleted += len(keys)
            return deleted

        count = int(await self._run(scope, "Deleting the import's objects", delete))
        log.info("import's objects deleted", extra={"namespace": scope.namespace,
                                                    "bucket": scope.bucket,
                                                    "prefix": scope.prefix, "objects": count})
        return count
