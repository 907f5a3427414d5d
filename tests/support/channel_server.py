"""A channel server for job-level tests: it stands in for the operator's channel.

The operator's own channel (``mediaimport_operator``) needs a Kubernetes API to find the
import, check the credential's subject and write status; job-level tests need none of
that, only the protocol (``mediaimport_job.channel_protocol``) spoken faithfully against
a real, signature-checking S3 server (versitygw):

- ``Authorization: Bearer`` checked per import: none or malformed → 401, another
  import's credential → 403;
- ``uploads/put`` and ``uploads/parts`` presign with boto3 (SigV4 query strings, the
  S3 server checks them) only keys under the import's prefix, in its bucket (else 403);
  a presigned PUT fixes Content-Type and the sha256 metadata (the headers returned);
- ``uploads/multipart`` / ``complete`` / ``abort`` are done here with the keys; a
  completion sets the final Content-Type and sha256 by copying the object onto itself
  (as the operator does), and a completion repeated after the object exists succeeds;
- ``result`` is checked like the operator checks it: the pod, the bucket, every key under
  the prefix, each object there with the size claimed; else 422 ``InvalidResult``;
- ``progress`` reports are validated and recorded with the time they arrived.

Faults on request: ``fail(endpoint, status, times)`` answers the next requests of an
endpoint with an error; every request is recorded (endpoint, status, client port).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from mediaimport_dev.s3server import S3Server
from mediaimport_job import channel_protocol as protocol
from pydantic import ValidationError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass
class Fault:
    status: int
    times: int
    reason: str
    message: str
    retry_after: str | None = None


@dataclass
class Request:
    endpoint: str
    status: int
    client_port: int
    at: float


@dataclass
class ImportChannel:
    """One import as the channel knows it."""

    namespace: str
    name: str
    bucket: str
    prefix: str
    token: str
    base_url: str
    pod_name: str = "import-pod-1"
    pod_uid: str = "0d5e7c9a-pod-uid"
    progress: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    uploads: dict[str, str] = field(default_factory=dict)  # upload id -> key
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"{self.base_url}{protocol.import_path(self.namespace, self.name)}"

    def env(self) -> dict[str, str]:
        """What the operator puts in the Job's pod for this import."""
        return {
            protocol.CHANNEL_URL_ENV: self.url,
            protocol.CHANNEL_TOKEN_ENV: self.token,
            protocol.POD_NAME_ENV: self.pod_name,
            protocol.POD_UID_ENV: self.pod_uid,
        }

    def fail(
        self,
        endpoint: str,
        status: int,
        times: int = 1,
        *,
        reason: str = "Refused",
        message: str = "refused by the test",
        retry_after: str | None = None,
    ) -> None:
        with self.lock:
            self.faults.setdefault(endpoint, []).append(
                Fault(status, times, reason, message, retry_after)
            )

    def count(self, endpoint: str, status: int | None = None) -> int:
        with self.lock:
            return sum(
                1 for r in self.requests
                if r.endpoint == endpoint and (status is None or r.status == status)
            )  # fmt: skip

    def _fault(self, endpoint: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get(endpoint, [])
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault


class ChannelServer:
    """The HTTP server; ``register`` adds an import and returns its credential and URL."""

    def __init__(
        self, s3: S3Server, host: str = "127.0.0.1", *, endpoint_url: str | None = None
    ) -> None:
        """``endpoint_url``: where the presigned URLs point (default: the S3 server; the
        benchmark gives its paced link)."""
        self.s3 = s3
        self.client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or s3.endpoint_url,
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
            region_name=s3.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        self.imports: dict[tuple[str, str], ImportChannel] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(_Handler):
            channel_server = server

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def register(self, bucket: str, prefix: str, name: str | None = None) -> ImportChannel:
        name = name or f"import-{secrets.token_hex(4)}"
        channel = ImportChannel(
            namespace="default", name=name, bucket=bucket, prefix=prefix.strip("/"),
            token=secrets.token_urlsafe(32), base_url=self.base_url,
        )  # fmt: skip
        with self.lock:
            self.imports[(channel.namespace, channel.name)] = channel
        return channel

    def start(self) -> ChannelServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def serve(s3: S3Server) -> Iterator[ChannelServer]:
    server = ChannelServer(s3).start()
    try:
        yield server
    finally:
        server.stop()


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    channel_server: ChannelServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = urlsplit(self.path).path
        prefix = protocol.API_PREFIX + "/"
        channel: ImportChannel | None = None
        endpoint = ""
        headers: dict[str, str] = {}
        try:
            if not path.startswith(prefix):
                raise _Refusal(404, "NotFound", "no such endpoint")
            namespace, name, *rest = path[len(prefix) :].split("/")
            endpoint = "/".join(rest)
            with self.channel_server.lock:
                channel = self.channel_server.imports.get((namespace, name))
            if channel is None:
                raise _Refusal(404, "NotFound", "no such import")
            self._authorize(channel)
            fault = channel._fault(endpoint)
            if fault is not None:
                if fault.retry_after:
                    headers["Retry-After"] = fault.retry_after
                raise _Refusal(fault.status, fault.reason, fault.message)
            status, body = 200, self._handle(channel, endpoint, raw)
        except _Refusal as refusal:
            status, body = refusal.status, {"reason": refusal.reason, "message": refusal.message}
        except ValidationError as exc:
            status, body = 422, {"reason": "InvalidRequest", "message": str(exc)[:500]}
        except Exception as exc:  # S3 failing: what the operator answers then
            status, body = 503, {"reason": "StorageUnavailable", "message": str(exc)[:500]}
        if channel is not None:
            # Recorded before the answer goes out: the client's next request comes after.
            with channel.lock:
                channel.requests.append(
                    Request(endpoint, status, self.client_address[1], time.monotonic())
                )
        self._reply(status, body, headers)

    def _authorize(self, channel: ImportChannel) -> None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:]:
            raise _Refusal(401, "Unauthorized", "no bearer credential")
        token = header[7:]
        if secrets.compare_digest(token, channel.token):
            return
        raise _Refusal(403, "Forbidden", "the credential is not for this import")

    # -- endpoints -------------------------------------------------------------------

    def _handle(self, channel: ImportChannel, endpoint: str, raw: bytes) -> dict[str, Any]:
        handlers = {
            protocol.PROGRESS: (protocol.ProgressReport, self._progress),
            protocol.PUT: (protocol.PutRequest, self._put),
            protocol.MULTIPART: (protocol.MultipartRequest, self._multipart),
            protocol.PARTS: (protocol.PartsRequest, self._parts),
            protocol.COMPLETE: (protocol.CompleteRequest, self._complete),
            protocol.ABORT: (protocol.AbortRequest, self._abort),
            protocol.RESULT: (protocol.ResultSubmission, self._result),
        }
        if endpoint not in handlers:
            raise _Refusal(404, "NotFound", f"no endpoint {endpoint!r}")
        model, handler = handlers[endpoint]
        return handler(channel, model.model_validate_json(raw))  # type: ignore[operator]

    def _check_key(self, channel: ImportChannel, key: str) -> None:
        if not key.startswith(channel.prefix + "/") or ".." in key.split("/"):
            raise _Refusal(403, "KeyOutsidePrefix", f"{key} is not under {channel.prefix}/")

    @property
    def s3(self) -> S3Client:
        return self.channel_server.client

    def _progress(self, channel: ImportChannel, report: protocol.ProgressReport) -> dict[str, Any]:
        with channel.lock:
            channel.progress.append((time.monotonic(), report.model_dump()))
        return {}

    def _put(self, channel: ImportChannel, request: protocol.PutRequest) -> dict[str, Any]:
        self._check_key(channel, request.key)
        url = self.s3.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": channel.bucket, "Key": request.key, "ContentType": request.contentType,
                "Metadata": {"sha256": request.sha256},
            },
            ExpiresIn=protocol.PRESIGN_EXPIRES_S,
        )  # fmt: skip
        headers = {"Content-Type": request.contentType, "x-amz-meta-sha256": request.sha256}
        signed = parse_qs(urlsplit(url).query).get("X-Amz-SignedHeaders", [""])[0].split(";")
        assert set(signed) >= {"content-type", "x-amz-meta-sha256"}, signed
        return protocol.PresignedRequest(
            url=url, headers=headers, expiresIn=protocol.PRESIGN_EXPIRES_S
        ).model_dump()

    def _known_upload(self, channel: ImportChannel, key: str, upload_id: str) -> None:
        self._check_key(channel, key)
        with channel.lock:
            if channel.uploads.get(upload_id) != key:
                raise _Refusal(403, "UnknownUpload", "not an upload of this import")

    def _multipart(
        self, channel: ImportChannel, request: protocol.MultipartRequest
    ) -> dict[str, Any]:
        self._check_key(channel, request.key)
        created = self.s3.create_multipart_upload(Bucket=channel.bucket, Key=request.key)
        with channel.lock:
            channel.uploads[created["UploadId"]] = request.key
        return protocol.MultipartCreated(uploadId=created["UploadId"]).model_dump()

    def _parts(self, channel: ImportChannel, request: protocol.PartsRequest) -> dict[str, Any]:
        self._known_upload(channel, request.key, request.uploadId)
        last = min(10_000, request.first + request.count - 1)
        parts = [
            protocol.PresignedPart(
                partNumber=number,
                url=self.s3.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": channel.bucket,
                        "Key": request.key,
                        "UploadId": request.uploadId,
                        "PartNumber": number,
                    },
                    ExpiresIn=protocol.PRESIGN_EXPIRES_S,
                ),
            )
            for number in range(request.first, last + 1)
        ]
        return protocol.PartsSigned(parts=parts, expiresIn=protocol.PRESIGN_EXPIRES_S).model_dump()

    def _complete(
        self, channel: ImportChannel, request: protocol.CompleteRequest
    ) -> dict[str, Any]:
        self._known_upload(channel, request.key, request.uploadId)
        parts = [{"PartNumber": p.partNumber, "ETag": p.etag} for p in request.parts]
        try:
            self.s3.complete_multipart_upload(
                Bucket=channel.bucket, Key=request.key, UploadId=request.uploadId,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )  # fmt: skip
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchUpload":
                raise _Refusal(422, "InvalidUpload", str(exc)) from None
            # Completed already (a retried request): fine if the object is there.
        head = self._head(channel.bucket, request.key)
        if head is None or head["ContentLength"] != request.size:
            raise _Refusal(422, "InvalidUpload", "the object does not have the size claimed")
        self.s3.copy_object(
            Bucket=channel.bucket, Key=request.key,
            CopySource={"Bucket": channel.bucket, "Key": request.key},
            MetadataDirective="REPLACE", ContentType=request.contentType,
            Metadata={"sha256": request.sha256},
        )  # fmt: skip
        return {}

    def _abort(self, channel: ImportChannel, request: protocol.AbortRequest) -> dict[str, Any]:
        self._known_upload(channel, request.key, request.uploadId)
        try:
            self.s3.abort_multipart_upload(
                Bucket=channel.bucket, Key=request.key, UploadId=request.uploadId
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchUpload":
                raise
        return {}

    def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.s3.head_object(Bucket=bucket, Key=key))
        except ClientError:
            return None

    def _result(
        self, channel: ImportChannel, submission: protocol.ResultSubmission
    ) -> dict[str, Any]:
        result = submission.result
        document = json.loads(result.model_dump_json())
        if submission.pod.name != channel.pod_name or submission.pod.uid != channel.pod_uid:
            raise _Refusal(422, protocol.REASON_INVALID_RESULT, "not a pod of this import's Job")
        if result.status == "ready":
            if result.bucket != channel.bucket:
                raise _Refusal(422, protocol.REASON_INVALID_RESULT, "another bucket")
            sizes: dict[str, int | None] = {result.key: result.size}
            if result.thumbnailKey:
                sizes[result.thumbnailKey] = None
            for key, size in sizes.items():
                if not key.startswith(channel.prefix + "/"):
                    raise _Refusal(422, protocol.REASON_INVALID_RESULT, f"{key}: another prefix")
                head = self._head(channel.bucket, key)
                if head is None or (size is not None and head["ContentLength"] != size):
                    raise _Refusal(422, protocol.REASON_INVALID_RESULT, f"{key}: not stored")
        with channel.lock:
            channel.results.append(document)
        return {}


def reports(channel: ImportChannel) -> list[dict[str, Any]]:
    with channel.lock:
        return [report for _, report in channel.progress]
