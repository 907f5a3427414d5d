"""A small async JSON client for the few Kubernetes calls the operator makes itself.

kopf watches and patches through its own client; this one creates Jobs, reads
pods, writes MediaImport status with a resourceVersion precondition and keeps
the leader Lease. It rides on aiohttp (kopf's own transport) and takes its
connection settings from the ordinary loaders of the ``kubernetes`` package
(kubeconfig, or the in-cluster service account), so it reaches any cluster
kopf reaches. Requests travel in lanes (``lanes.Lane``): Job creations go first,
the Lease is never held back by either.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from .lanes import Lane, Lanes

Json = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
log = logging.getLogger(__name__)
# Projected service account tokens rotate: the file is read again this often. A
# kubeconfig's token is renewed by the client's hook as often (the hook renews an expiring
# token five minutes ahead; run per request it rebuilds the whole client configuration).
TOKEN_REREAD_SECONDS = 60.0
# The client's loaders write "bearer <token>" (in-cluster) or "Bearer <token>".
_BEARER = re.compile(r"^\s*bearer\s+", re.IGNORECASE)


def bearer_token(authorization: object) -> str:
    """The token of an Authorization value, whatever the case of its scheme."""
    return _BEARER.sub("", str(authorization or "")).strip()


# The API server stores objects nested up to 10,000 levels (Go's JSON decoder stops
# there), e.g. in a MediaImport's free-form spec.metadata. Python's JSON decoder and
# encoder recurse once per level and stop at the recursion limit, 1,000 by default: one
# such object would break every watch that lists it. A level costs a few hundred bytes of
# C stack, so 10,000 fit in the 8 MiB of the main thread and of worker threads.
KUBERNETES_MAX_DEPTH = 10_000


def allow_kubernetes_nesting() -> None:
    """Let this process decode and encode whatever the API server can store."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), KUBERNETES_MAX_DEPTH + 2_000))


class ApiError(Exception):
    """A non-2xx answer of the API server."""

    def __init__(self, method: str, path: str, status: int, body: Json | str) -> None:
        self.status = status
        self.body = body
        self.reason = body.get("reason", "") if isinstance(body, dict) else ""
        message = body.get("message", "") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path}: HTTP {status} {self.reason}: {message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


class Fenced(Exception):  # noqa: N818 - a state, not a programming error
    """This replica no longer leads: it sends nothing but Lease requests."""


@dataclass
class _Connection:
    server: str
    ssl_context: ssl.SSLContext | bool
    token: str | None
    token_file: Path | None
    refresh: Any = None  # the kubernetes Configuration, when its token needs refreshing
    read_at: float = 0.0  # when the token was last read or renewed (time.monotonic)


def _load_connection() -> _Connection:
    # The loaders only: slow to import, and used once.
    from kubernetes import client, config  # noqa: PLC0415
    from kubernetes.config import incluster_config  # noqa: PLC0415

    cfg = client.Configuration()
    token_file: Path | None = None
    try:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        # The file the loader read: the projected service account token.
        token_file = Path(incluster_config.SERVICE_TOKEN_FILENAME)
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    context: ssl.SSLContext | bool
    if cfg.verify_ssl is False:
        context = False
    else:
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
        if cfg.cert_file and cfg.key_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
    auth = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
    return _Connection(
        server=str(cfg.host).rstrip("/"),
        ssl_context=context,
        token=bearer_token(auth) or None,
        token_file=token_file,
        refresh=cfg if cfg.refresh_api_key_hook else None,
        read_at=time.monotonic(),
    )


class Kube:
    def __init__(self, *, concurrency: int = 16, timeout: float = 30.0) -> None:
        self._conn = _load_connection()
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))
        # Job creations first: in a burst they are what the start of every import waits for
        # (measured in bench/operator_throughput.py: the API server is the bottleneck).
        self.lanes = Lanes(concurrency)
        self._session: aiohttp.ClientSession | None = None
        # Watches hold their connection for minutes: they get connections of their own, so
        # that no lane (the Lease's above all) ever waits for one a watch holds.
        self._watch_session: aiohttp.ClientSession | None = None
        self.fenced = False

    def fence(self) -> None:
        """Refuse every request from now on but the Lease's (leadership was lost)."""
        self.fenced = True

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()
        self._session = self._watch_session = None

    def _headers(self) -> dict[str, str]:
        conn = self._conn
        now = time.monotonic()
        if conn.token_file is not None:
            if now - conn.read_at > TOKEN_REREAD_SECONDS:
                conn.token = conn.token_file.read_text().strip() or conn.token
                conn.read_at = now
        elif conn.refresh is not None and now - conn.read_at > TOKEN_REREAD_SECONDS:
            conn.refresh.refresh_api_key_hook(conn.refresh)
            conn.token = bearer_token(conn.refresh.api_key.get("authorization")) or conn.token
            conn.read_at = now
        headers = {"Accept": "application/json"}
        if conn.token:
            headers["Authorization"] = f"Bearer {conn.token}"
        return headers

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._conn.ssl_context, limit=self.lanes.connections
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    def _get_watch_session(self) -> aiohttp.ClientSession:
        if self._watch_session is None or self._watch_session.closed:
            connector = aiohttp.TCPConnector(ssl=self._conn.ssl_context, limit=0)
            self._watch_session = aiohttp.ClientSession(connector=connector)
        return self._watch_session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        lane: Lane = Lane.WORK,
    ) -> Json:
        if self.fenced and lane is not Lane.LEASE:
            raise Fenced(f"{method} {path}: this replica no longer leads")
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        queued = time.monotonic()
        async with self.lanes.slot(lane):
            started = time.monotonic()
            async with self._get_session().request(
                method, self._conn.server + path, data=data, params=params, headers=headers
            ) as response:
                result = await self._answer(method, path, response)
        done = time.monotonic()
        if done - queued > 1.0:
            log.debug(
                "slow API request",
                extra={"method": method, "path": path, "queued_s": round(started - queued, 3),
                       "request_s": round(done - started, 3)},
            )
        return result

    @staticmethod
    async def _answer(method: str, path: str, response: aiohttp.ClientResponse) -> Json:
        text = await response.text()
        try:
            payload: Json | str = json.loads(text) if text else {}
        except ValueError:
            payload = text
        if response.status >= 300:
            raise ApiError(method, path, response.status, payload)
        return payload if isinstance(payload, dict) else {}

    # -- the calls the operator makes -------------------------------------------------
    async def get(self, path: str, *, lane: Lane = Lane.WORK) -> Json | None:
        try:
            return await self.request("GET", path, lane=lane)
        except ApiError as error:
            if error.not_found:
                return None
            raise

    async def create(
        self, path: str, body: Json, *, lane: Lane = Lane.WORK
    ) -> tuple[Json, bool]:
        """Create; (object, True), or (the existing object, False) when it is already there."""
        try:
            return await self.request("POST", path, body=body, lane=lane), True
        except ApiError as error:
            if not error.conflict:
                raise
        existing = await self.get(f"{path}/{body['metadata']['name']}")
        if existing is None:  # deleted in between: let the caller try again
            raise ApiError("POST", path, 409, "AlreadyExists, then gone")
        return existing, False

    async def watch(
        self, path: str, *, resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[Json]:
        """Watch events (``{"type", "object"}``) of a collection after ``resource_version``,
        bookmarks included, until the server ends the watch (after ``timeout_seconds``).

        Not through the lanes: a watch holds its connection for minutes. An ``ERROR``
        event (e.g. 410 Gone: the version is too old) is yielded like any other.
        """
        if self.fenced:
            raise Fenced(f"WATCH {path}: this replica no longer leads")
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        async with self._get_watch_session().get(
            self._conn.server + path, params=params, headers=self._headers(), timeout=timeout
        ) as response:
            if response.status >= 300:
                await self._answer("GET", path, response)
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        if isinstance(event, dict):
                            yield event

    async def merge_patch(self, path: str, patch: Json) -> Json:
        return await self.request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def list_pages(
        self, path: str, *, limit: int, **params: str
    ) -> AsyncIterator[tuple[list[Json], str]]:
        """A collection in pages of at most ``limit`` objects, each page with the listing's
        resourceVersion (the same on every page: the pages are one consistent snapshot).

        Only one page is held at a time: a caller that handles each page before asking for
        the next never has the whole collection in memory. No ``resourceVersion=0``: the
        API server's cache would answer that with the whole collection in one response. A
        continue token that expired (after etcd's compaction, a few minutes) raises an
        ``ApiError`` 410: the caller lists again from the start.
        """
        query = {**params, "limit": str(limit)}
        while True:
            listing = await self.request("GET", path, params=query)
            meta = listing.get("metadata") or {}
            token = meta.get("continue")
            items = [item for item in listing.get("items") or [] if isinstance(item, dict)]
            del listing  # the page's items are all that is handed on
            yield items, str(meta.get("resourceVersion") or "")
            del items
            if not token:
                return
            query["continue"] = str(token)

    async def list_items(self, path: str, **params: str) -> list[Json]:
        listing = await self.request("GET", path, params=params)
        items = listing.get("items") or []
        return [item for item in items if isinstance(item, dict)]


def mediaimport_path(namespace: str | None, name: str | None = None) -> str:
    """A MediaImport, a namespace's MediaImports, or (namespace None) every namespace's."""
    group = "/apis/mediaimport.dev/v1alpha1"
    if namespace is None:
        return f"{group}/mediaimports"
    base = f"{group}/namespaces/{namespace}/mediaimports"
    return f"{base}/{name}" if name else base


def job_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    return f"{base}/{name}" if name else base


def pods_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/pods"
    return f"{base}/{name}" if name else base


def secret_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets/{name}"


def service_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/services/{name}"


def events_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/events"


def lease_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return f"{base}/{name}" if name else base
