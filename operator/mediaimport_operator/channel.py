"""The per-import channel: the one HTTP endpoint an import pod talks to (contract 6).

Every replica serves it, leader or standby: a credential is checked with the key ring
alone, and every write goes to the API server with a precondition, so any replica may
answer any pod. The endpoints are ``mediaimport_job.channel_protocol``'s, under
``/v1/imports/{namespace}/{name}/``. For each request: the Bearer credential is read,
the MediaImport looked up (a second or two of cache per import: pods report once a second;
always fresh for a result or a completed upload), the credential checked against that
object's uid, and a finished or deleted import refused. Then:

- progress goes to ``status.progress`` in the background, at most every
  ``STATUS_INTERVAL_S`` per import (``progress.ProgressGate``), with a JSON patch that
  first tests ``/status/phase == Importing``, so a late report never touches a finished
  import; these writes have a small bound of their own and are dropped, never queued,
  when it is full: Job creations and status writes go through other connections anyway;
- uploads are signed (or done) by ``storage.Storage`` for the import's own prefix only;
- a result is accepted from a pod the import's Job controls; a Ready one must pass
  ``verify.ResultVerifier`` before it is written to ``status.result`` (same precondition),
  else ``InvalidResult``: a Warning Event, a metric, and nothing written.

The channel has a Kubernetes client of its own: never fenced (standbys serve too) and
never in the way of the reconciler's requests. Credentials and presigned URLs are never
logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from mediaimport_job.channel_protocol import (
    ABORT,
    API_PREFIX,
    COMPLETE,
    MULTIPART,
    PARTS,
    PROGRESS,
    PUT,
    REASON_INVALID_RESULT,
    RESULT,
    AbortRequest,
    ChannelError,
    CompleteRequest,
    MultipartCreated,
    MultipartRequest,
    PartsRequest,
    ProgressReport,
    PutRequest,
    ResultSubmission,
)
from mediaimport_job.result import ReadyResult
from pydantic import BaseModel, ValidationError

from . import metrics
from .credentials import CredentialRefused, KeyRing, Refusal, check, mint, precheck
from .events import EventPoster
from .jobs import ChannelGrant, job_name
from .kube import ApiError, Json, Kube, job_path, mediaimport_path, pods_path, service_path
from .model import MediaImport, Phase
from .owners import sender_problem
from .progress import ImportKey, ProgressGate, WriteBudget
from .settings import Settings
from .status import Event
from .storage import KeyRefused, Scope, Storage, StorageRefused, StorageUnavailable
from .verify import ResultRefused, ResultVerifier

log = logging.getLogger(__name__)

JSON_PATCH = "application/json-patch+json"
# A MediaImport read for a request serves the requests of the next moments too.
LOOKUP_TTL_S = 1.5
LOOKUP_CACHE_LIMIT = 10_000
# status.progress writes in flight at once; more are dropped (the next report follows).
PROGRESS_CONCURRENCY = 4
# A Complete request lists up to 10,000 parts (about 60 bytes each).
MAX_BODY_BYTES = 2 * 1024 * 1024
EVENT_FLUSH_S = 2.0
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)
_UNAVAILABLE = (ApiError, OSError, TimeoutError, aiohttp.ClientError)
Model = TypeVar("Model", bound=BaseModel)


class ChannelConfigError(Exception):
    """The channel cannot run as configured (no keys, no URL pods could reach)."""


class _Refused(Exception):  # noqa: N818 - an answer, not a failure
    """Answer the request with this status and ``ChannelError`` body."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


_RESULT_WRITE_TRIES = 5


def status_patch(uid: str, field: str, value: Json) -> list[Json]:
    """A JSON patch of ``status.<field>`` that applies only while the import (this very
    object, by uid) is Importing: a late write can never touch a finished import."""
    return [
        {"op": "test", "path": "/status/phase", "value": Phase.IMPORTING.value},
        {"op": "test", "path": "/metadata/uid", "value": uid},
        {"op": "add", "path": f"/status/{field}", "value": value},
    ]


def precondition_failed(error: ApiError) -> bool:
    """Whether a JSON patch was refused by one of its tests (the API server answers 422
    without causes; a schema refusal names its causes)."""
    if error.status != 422:
        return False
    details = error.body.get("details") if isinstance(error.body, dict) else None
    return not (isinstance(details, dict) and details.get("causes"))


def public_url(settings: Settings, *, port: int, service: Json | None = None) -> str:
    """The base URL import pods reach the channel at: ``channel_url``; else the cluster IP
    and the port named ``channel`` of ``service`` (``channel_service``'s body); else
    ``channel_host`` and ``port`` when the host is a concrete address or name."""
    if settings.channel_url:
        return settings.channel_url.rstrip("/")
    if settings.channel_service:
        if service is None:
            raise ChannelConfigError(f"The Service {settings.channel_service} was not found.")
        spec = service.get("spec") or {}
        address = str(spec.get("clusterIP") or "")
        ports = [p for p in spec.get("ports") or [] if p.get("name") == "channel"]
        if not address or address == "None" or not ports:
            raise ChannelConfigError(f"The Service {settings.channel_service} has no cluster "
                                     f"IP or no port named 'channel'.")
        return f"http://{_host(address)}:{int(ports[0]['port'])}"
    host = settings.channel_host.strip()
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = not host
    if unspecified:
        raise ChannelConfigError(f"Import pods cannot reach {host or 'an empty host'}: set "
                                 f"channel_url or channel_service.")
    return f"http://{_host(host)}:{port}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def credential_expiry(settings: Settings, *, deadline_s: int, now: float) -> int:
    """When an import's credential expires: its Job's deadline, the pod's grace period
    and the margin from ``now`` (unix seconds)."""
    return int(now) + deadline_s + settings.job_termination_grace_period_seconds + (
        settings.channel_credential_margin)


@contextlib.contextmanager
def _credential_refusals() -> Iterator[None]:
    try:
        yield
    except CredentialRefused as refused:
        status = 401 if refused.reason is Refusal.MALFORMED else 403
        raise _Refused(status, str(refused.reason), refused.message) from None


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item.get("loc", ())) or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "The request is invalid: " + "; ".join(parts) + "."


class ChannelServer:
    def __init__(
        self,
        settings: Settings,
        *,
        ring: KeyRing,
        kube: Kube,
        storage: Storage,
        verifier: ResultVerifier | None = None,
        events: EventPoster | None = None,
        progress_concurrency: int = PROGRESS_CONCURRENCY,
        lookup_ttl: float = LOOKUP_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.ring, self.kube, self.storage = ring, kube, storage
        self.verifier = verifier or ResultVerifier(storage, settings)
        self.events = events or EventPoster(
            kube, component="mediaimport-operator", instance=settings.identity,
            level=logging.getLevelName(settings.event_level))
        self.port = settings.channel_port
        self._progress_limit = progress_concurrency
        self._lookup_ttl = lookup_ttl
        self._clock, self._wall = clock, wall
        self._gate = ProgressGate()
        self._budget = WriteBudget(settings.channel_progress_writes)
        # Whether this process is creating Jobs right now (set by the operator's runtime).
        self.yield_to: Callable[[], bool] = lambda: False
        self._lookups: dict[tuple[str, str], tuple[float, Json | None]] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self._flushes: dict[ImportKey, asyncio.TimerHandle] = {}
        self._progress_in_flight = 0
        self._runner: web.AppRunner | None = None
        self._events_task: asyncio.Task[None] | None = None
        self._url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ChannelServer:
        """A server with the key ring of ``channel_keys_dir`` and a Kubernetes client of
        its own."""
        if not settings.channel_keys_dir:
            raise ChannelConfigError("channel_keys_dir is not set: the channel has no keys.")
        ring = KeyRing.from_directory(settings.channel_keys_dir)
        kube = Kube(concurrency=settings.concurrency, timeout=settings.api_timeout)
        return cls(settings, ring=ring, kube=kube, storage=Storage.from_settings(settings, kube))

    # -- life ------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen, then resolve the URL pods are given (ChannelConfigError if none)."""
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._answer])
        base = API_PREFIX + "/{namespace}/{name}/"
        app.router.add_get("/healthz", self._healthz, name="healthz")
        for path, handler in ((PROGRESS, self._progress), (PUT, self._put),
                              (MULTIPART, self._multipart), (PARTS, self._parts),
                              (COMPLETE, self._complete), (ABORT, self._abort),
                              (RESULT, self._result)):
            app.router.add_post(base + path, handler, name=path.replace("/", "."))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # reuse_port: replicas that share a host (a node's host network, or the tests'
        # processes) share the port; the kernel spreads connections over them as a Service
        # spreads them over pods.
        site = web.TCPSite(self._runner, self.settings.channel_host, self.settings.channel_port,
                           reuse_port=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._events_task = asyncio.create_task(self.events.run(), name="channel-events")
        try:
            self._url = await self.resolve_url()
        except BaseException:
            await self.stop()
            raise
        log.info("channel listening", extra={"port": self.port, "url": self._url})

    async def stop(self) -> None:
        """Stop serving; the channel's own Kubernetes client is closed too."""
        for handle in self._flushes.values():
            handle.cancel()
        self._flushes.clear()
        for task in list(self._writes):
            task.cancel()
        await asyncio.gather(*self._writes, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._events_task is not None:
            await self.events.flush(EVENT_FLUSH_S)
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_task
            self._events_task = None
        await self.kube.close()

    async def resolve_url(self) -> str:
        service = None
        if not self.settings.channel_url and self.settings.channel_service:
            namespace = os.environ.get("POD_NAMESPACE") or "default"
            service = await self.kube.get(service_path(namespace, self.settings.channel_service))
        return public_url(self.settings, port=self.port, service=service)

    @property
    def url(self) -> str:
        """The channel's base URL for import pods (known once started)."""
        if self._url is None:
            raise ChannelConfigError("The channel has not started.")
        return self._url

    def import_url(self, mi: MediaImport) -> str:
        """The URL of one import's endpoints (what its Job gets)."""
        return f"{self.url}{API_PREFIX}/{mi.ref.namespace}/{mi.ref.name}"

    def credential_for(
        self, mi: MediaImport, *, deadline_s: int | None = None, now: float | None = None
    ) -> str:
        """A credential for ``mi`` alone, good until its Job's deadline (by default the
        one ``settings.deadline_for`` gives), the pod's grace period and the margin."""
        deadline = deadline_s if deadline_s is not None else self.settings.deadline_for(
            mi.spec.type)
        expires_at = credential_expiry(self.settings, deadline_s=deadline,
                                       now=self._wall() if now is None else now)
        return mint(self.ring, namespace=mi.ref.namespace, name=mi.ref.name, uid=mi.ref.uid,
                    expires_at=expires_at)

    def grant(self, mi: MediaImport) -> ChannelGrant:
        """What ``mi``'s Job gets: its endpoints' URL and its credential."""
        return ChannelGrant(url=self.import_url(mi), token=self.credential_for(mi))

    async def discard(self, mi: MediaImport) -> int:
        """Delete what ``mi``'s pods stored under its prefix (a failed import: brokered
        pods cannot delete), aborting its unfinished uploads; how many objects went."""
        deleted: int = await self.storage.delete_prefix(Scope.of(mi, self.settings))
        return deleted

    # -- every request ---------------------------------------------------------------
    @web.middleware
    async def _answer(
        self, request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        route = request.match_info.route.name or "unknown"
        where = {"endpoint": route, "namespace": request.match_info.get("namespace"),
                 "mediaimport": request.match_info.get("name")}
        try:
            response = await handler(request)
        except _Refused as refused:
            level = logging.WARNING if refused.status >= 500 else logging.INFO
            log.log(level, "channel request refused",
                    extra={**where, "status": refused.status, "reason": refused.reason,
                           "refusal": refused.message})
            response = web.json_response(
                ChannelError(reason=refused.reason, message=refused.message).model_dump(),
                status=refused.status)
        except web.HTTPException as http:
            response = web.json_response(
                ChannelError(reason=http.reason, message=f"{http.reason}.").model_dump(),
                status=http.status)
        except Exception:
            log.exception("channel request failed", extra=where)
            response = web.json_response(
                ChannelError(reason="InternalError",
                             message="The channel failed to answer; try again.").model_dump(),
                status=500)
        metrics.CHANNEL_REQUESTS.labels(route, str(response.status)).inc()
        return response

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _authorized(self, request: web.Request, *, fresh: bool) -> MediaImport:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if not (_NAME.match(namespace) and _NAME.match(name)):
            raise _Refused(404, "NotFound", "There is no such import.")
        match = _BEARER.match(request.headers.get("Authorization", ""))
        if match is None:
            raise _Refused(401, "Unauthorized", "A Bearer credential is required.")
        token = match.group(1)
        now = self._wall()
        with _credential_refusals():
            # Before any API request: a made-up credential costs no lookup.
            precheck(self.ring, token, now=now)
        body = await self._lookup(namespace, name, fresh=fresh)
        if body is None:
            raise _Refused(404, "NotFound", f"There is no import {namespace}/{name}.")
        mi = MediaImport.from_body(body)
        with _credential_refusals():
            check(self.ring, token, namespace=namespace, name=name, uid=mi.ref.uid, now=now)
        if mi.deleting:
            raise _Refused(409, "Deleting", f"The import {namespace}/{name} is being deleted.")
        if mi.status.phase is not None and mi.status.phase.terminal:
            raise _Refused(409, "Finished",
                           f"The import {namespace}/{name} has finished "
                           f"({mi.status.phase.value}).")
        return mi

    async def _lookup(self, namespace: str, name: str, *, fresh: bool) -> Json | None:
        key = (namespace, name)
        now = self._clock()
        cached = self._lookups.get(key)
        if not fresh and cached is not None and cached[0] > now:
            return cached[1]
        try:
            body = await self.kube.get(mediaimport_path(namespace, name))
        except _UNAVAILABLE as error:
            raise _Refused(503, "Unavailable",
                           f"The API server cannot be reached: {type(error).__name__}.") from error
        if len(self._lookups) >= LOOKUP_CACHE_LIMIT:
            self._lookups = {k: v for k, v in self._lookups.items() if v[0] > now}
        self._lookups[key] = (now + self._lookup_ttl, body)
        return body

    @staticmethod
    async def _parse(request: web.Request, model: type[Model]) -> Model:
        try:
            return model.model_validate_json(await request.read())
        except ValidationError as error:
            raise _Refused(422, "Invalid", _validation_message(error)) from None

    def _require_brokered(self) -> None:
        if self.settings.storage_access != "brokered":
            raise _Refused(403, "NotBrokered",
                           "Uploads are not brokered: import pods use their own credentials.")

    @staticmethod
    async def _storage(call: Awaitable[Any]) -> Any:
        try:
            return await call
        except KeyRefused as refused:
            raise _Refused(403, "KeyRefused", str(refused)) from None
        except StorageRefused as refused:
            raise _Refused(422, "StorageRefused", str(refused)) from None
        except StorageUnavailable as unavailable:
            raise _Refused(503, "StorageUnavailable", str(unavailable)) from None

    # -- progress --------------------------------------------------------------------
    async def _progress(self, request: web.Request) -> web.Response:
        mi = await self._authorized(request, fresh=False)
        report = await self._parse(request, ProgressReport)
        # A pod cannot know which attempt of its Job it is; the status counts them.
        attempts = mi.status.attempts or 1
        if report.attempt < attempts:
            report = report.model_copy(update={"attempt": attempts})
        key: ImportKey = (mi.ref.namespace, mi.ref.name, mi.ref.uid)
        try:
            decision = self._gate.offer(key, report, self._clock())
        except ValueError as error:
            raise _Refused(422, "Invalid", f"The report's updatedAt is invalid: {error}.") from None
        if decision.write is not None:
            self._write_progress(key, decision.write.wire())
        elif decision.flush_in is not None:
            self._flushes[key] = asyncio.get_running_loop().call_later(
                decision.flush_in, self._flush, key)
        return web.Response(status=204)

    def _flush(self, key: ImportKey) -> None:
        self._flushes.pop(key, None)
        status = self._gate.flush(key, self._clock())
        if status is not None:
            self._write_progress(key, status.wire())

    def _write_progress(self, key: ImportKey, progress: Json) -> None:
        # Dropped first under pressure: while Jobs are being created here, beyond the
        # replica's write budget, or with its own small lane full. The pod reports again in a
        # second; the import's last status write carries its final progress anyway.
        if (self._progress_in_flight >= self._progress_limit or self.yield_to()
                or not self._budget.take(self._clock())):
            metrics.PROGRESS_WRITES.labels(metrics.PROGRESS_DROPPED).inc()
            return
        self._progress_in_flight += 1
        task = asyncio.create_task(self._send_progress(key, progress))
        self._writes.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._writes.discard(finished)
            self._progress_in_flight -= 1

        task.add_done_callback(done)

    async def _send_progress(self, key: ImportKey, progress: Json) -> None:
        namespace, name, uid = key
        try:
            await self.kube.request("PATCH", mediaimport_path(namespace, name) + "/status",
                                    body=status_patch(uid, "progress", progress),
                                    content_type=JSON_PATCH)
        except ApiError as error:
            if precondition_failed(error) or error.not_found:
                metrics.PROGRESS_WRITES.labels(metrics.PROGRESS_FINISHED).inc()
                self._gate.forget(key)
                return
            metrics.PROGRESS_WRITES.labels(metrics.PROGRESS_FAILED).inc()
            log.warning("progress not written", extra={"namespace": namespace, "mediaimport": name,
                                                       "error": str(error)})
            return
        except (OSError, TimeoutError, aiohttp.ClientError) as error:
            metrics.PROGRESS_WRITES.labels(metrics.PROGRESS_FAILED).inc()
            log.warning("progress not written", extra={"namespace": namespace, "mediaimport": name,
                                                       "error": f"{type(error).__name__}"})
            return
        metrics.PROGRESS_WRITES.labels(metrics.PROGRESS_WRITTEN).inc()

    # -- uploads ---------------------------------------------------------------------
    async def _put(self, request: web.Request) -> web.Response:
        # Fresh: a finished import's prefix gets no new write URL, not even from a stale
        # cache entry.
        mi = await self._authorized(request, fresh=True)
        self._require_brokered()
        body = await self._parse(request, PutRequest)
        signed = await self._storage(self.storage.presign_put(
            Scope.of(mi, self.settings), body.key, content_type=body.contentType,
            sha256=body.sha256, content_length=body.contentLength))
        log.debug("PutObject signed", extra={"namespace": mi.ref.namespace,
                                             "mediaimport": mi.ref.name, "key": body.key})
        return web.json_response(signed.model_dump())

    async def _multipart(self, request: web.Request) -> web.Response:
        # Fresh: a finished import's prefix gets no new write URL, not even from a stale
        # cache entry.
        mi = await self._authorized(request, fresh=True)
        self._require_brokered()
        body = await self._parse(request, MultipartRequest)
        upload_id = await self._storage(
            self.storage.create_multipart(Scope.of(mi, self.settings), body.key))
        log.info("multipart upload created", extra={"namespace": mi.ref.namespace,
                                                    "mediaimport": mi.ref.name, "key": body.key})
        return web.json_response(MultipartCreated(uploadId=upload_id).model_dump())

    async def _parts(self, request: web.Request) -> web.Response:
        # Fresh: a finished import's prefix gets no new write URL, not even from a stale
        # cache entry.
        mi = await self._authorized(request, fresh=True)
        self._require_brokered()
        body = await self._parse(request, PartsRequest)
        signed = await self._storage(self.storage.presign_parts(
            Scope.of(mi, self.settings), body.key, upload_id=body.uploadId, first=body.first,
            count=body.count))
        return web.json_response(signed.model_dump())

    async def _complete(self, request: web.Request) -> web.Response:
        mi = await self._authorized(request, fresh=True)
        self._require_brokered()
        body = await self._parse(request, CompleteRequest)
        head = await self._storage(self.storage.complete(
            Scope.of(mi, self.settings), body.key, upload_id=body.uploadId, parts=body.parts,
            content_type=body.contentType, sha256=body.sha256))
        log.info("multipart upload completed",
                 extra={"namespace": mi.ref.namespace, "mediaimport": mi.ref.name, "key": body.key,
                        "size": head.size})
        return web.json_response({"key": body.key, "size": head.size})

    async def _abort(self, request: web.Request) -> web.Response:
        mi = await self._authorized(request, fresh=False)
        self._require_brokered()
        body = await self._parse(request, AbortRequest)
        await self._storage(self.storage.abort(Scope.of(mi, self.settings), body.key,
                                               upload_id=body.uploadId))
        return web.Response(status=204)

    # -- the result ------------------------------------------------------------------
    async def _result(self, request: web.Request) -> web.Response:
        mi = await self._authorized(request, fresh=True)
        submission = await self._parse(request, ResultSubmission)
        where = {"namespace": mi.ref.namespace, "mediaimport": mi.ref.name,
                 "pod": submission.pod.name}
        await self._check_sender(mi, submission)
        result = submission.result
        if not isinstance(result, ReadyResult):
            # The pod's exit decides a failure; its document only says why.
            log.info("failed result received",
                     extra={**where, "reason": str(result.error.reason)})
            return web.json_response({"status": "accepted"})
        try:
            checked = await self.verifier.verify(mi, result)
        except ResultRefused as refused:
            metrics.INVALID_RESULTS.inc()
            self.events.post(mi.ref.body, Event("Warning", REASON_INVALID_RESULT,
                                                f"The import pod's result was refused: "
                                                f"{refused.message}"))
            log.warning("result refused", extra={**where, "refusal": refused.message})
            raise _Refused(422, REASON_INVALID_RESULT, refused.message) from None
        except StorageUnavailable as unavailable:
            raise _Refused(503, "StorageUnavailable", str(unavailable)) from None
        await self._write_result(request, mi, checked.wire())
        log.info("result accepted", extra={**where, "key": checked.key, "size": checked.size})
        return web.json_response({"status": "accepted"})

    async def _write_result(self, request: web.Request, mi: MediaImport, result: Json) -> None:
        """``status.result``, on the very version that was read unfinished (its
        resourceVersion and uid are the patch's preconditions; the import may still be
        Pending if its operator stopped before writing Importing). Changed meanwhile: read
        again (a finished import answers 409 there) and try again."""
        for _ in range(_RESULT_WRITE_TRIES):
            patch = {"metadata": {"resourceVersion": mi.resource_version, "uid": mi.ref.uid},
                     "status": {"result": result}}
            try:
                await self.kube.merge_patch(
                    mediaimport_path(mi.ref.namespace, mi.ref.name) + "/status", patch)
            except ApiError as error:
                if error.not_found:
                    raise _Refused(404, "NotFound", "The import is gone.") from None
                if not error.conflict:
                    raise _Refused(503, "Unavailable",
                                   f"The result was not written: {error}.") from None
                mi = await self._authorized(request, fresh=True)
                continue
            except (OSError, TimeoutError, aiohttp.ClientError) as error:
                raise _Refused(503, "Unavailable",
                               f"The result was not written: {type(error).__name__}.") from None
            return
        raise _Refused(503, "Unavailable", "The import kept changing; try again.")

    async def _check_sender(self, mi: MediaImport, submission: ResultSubmission) -> None:
        namespace = mi.ref.namespace
        try:
            pod, job = await asyncio.gather(
                self.kube.get(pods_path(namespace, submission.pod.name)),
                self.kube.get(job_path(namespace, job_name(mi))))
        except _UNAVAILABLE as error:
            raise _Refused(503, "Unavailable",
                           f"The API server cannot be reached: {type(error).__name__}.") from error
        problem = sender_problem(mi, pod_name=submission.pod.name, pod_uid=submission.pod.uid,
                                 pod=pod, job=job)
        if problem is not None:
            raise _Refused(403, "NotTheImportsPod", problem)
