"""The operator's own watch of MediaImports: listed in pages, then watched from the listing.

Why not kopf's: a cluster keeps its finished imports (thousands, each a few KB of JSON with
its managedFields), and kopf, at every start, lists them in one response parsed whole, then
keeps a memory for every object it ever saw (until the object is deleted) and, for a few
seconds, a worker task holding its whole body. Measured with 5,000 finished imports: the
operator's peak RSS 88 → 192 MiB. Here the listing comes in pages of ``page_size`` objects
(continue tokens), each handed over object by object and dropped before the next page is
asked for; the handler keeps what it needs of live imports, and nothing of finished ones.
kopf still watches the Jobs and their pods (a few per live import, collected by their TTL).

The protocol is the informers' (client-go's reflector): list, then watch from the listing's
resourceVersion with bookmarks, resume each watch from the last version seen, and list again
when the version is gone (410). A listing again also tells what the watch missed in between:
a known import no longer listed (or listed under a new uid) was deleted meanwhile, and is
handed over as ``DELETED`` with the last body known of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from .kube import ApiError, Json, Kube, mediaimport_path

log = logging.getLogger(__name__)

# (event type, body): type None for an object as listed, else ADDED, MODIFIED or DELETED.
Handle = Callable[[str | None, Json], Awaitable[None]]
_EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED")
_MAX_PAUSE_S = 10.0


def _key(body: Json) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _uid(body: Json) -> str:
    return str((body.get("metadata") or {}).get("uid", ""))


class Informer:
    """Lists and watches the MediaImports of one namespace (``None``: of every namespace)."""

    def __init__(
        self,
        kube: Kube,
        namespace: str | None,
        *,
        handle: Handle,
        known: Callable[[], Iterable[Json]],
        page_size: int = 100,
        timeout_seconds: int = 300,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.handle = handle
        self.known = known  # the bodies the handler holds: checked against each listing
        self.page_size = page_size
        self.timeout_seconds = timeout_seconds
        self.listed = asyncio.Event()  # the first listing was handed over
        self.listings = 0
        self.pages = 0

    async def run(self) -> None:
        """List and watch for ever (a background task); errors are logged and retried."""
        version: str | None = None
        pause = 0.5
        while True:
            try:
                if version is None:
                    version = await self.relist()
                    self.listed.set()
                async for event in self.kube.watch(
                    mediaimport_path(self.namespace), resource_version=version,
                    timeout_seconds=self.timeout_seconds,
                ):
                    kind, body = str(event.get("type", "")), event.get("object") or {}
                    _raise_for_error(self.namespace, kind, body)
                    version = (body.get("metadata") or {}).get("resourceVersion") or version
                    if kind in _EVENT_TYPES:
                        await self.handle(kind, body)
                    pause = 0.5
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                if error.status == 410:  # the version is gone: list again
                    log.info("MediaImport watch expired; listing again",
                             extra={"namespace": self.namespace})
                    version = None
                    continue
                await self._pause(error, pause)
                pause = min(pause * 2, _MAX_PAUSE_S)
            except Exception as error:
                await self._pause(error, pause)
                pause = min(pause * 2, _MAX_PAUSE_S)

    async def relist(self) -> str:
        """Hand over every MediaImport as listed (type None), page by page, then ``DELETED``
        for each known one the listing no longer holds; the listing's resourceVersion."""
        gone = {_key(body): body for body in self.known()
                if self.namespace is None
                or (body.get("metadata") or {}).get("namespace") == self.namespace}
        version = ""
        async for items, page_version in self.kube.list_pages(
            mediaimport_path(self.namespace), limit=self.page_size
        ):
            version = page_version
            self.pages += 1
            for body in items:
                old = gone.pop(_key(body), None)
                if old is not None and _uid(old) != _uid(body):
                    await self.handle("DELETED", old)  # deleted, and created again since
                await self.handle(None, body)
            del items
        for old in gone.values():
            await self.handle("DELETED", old)
        self.listings += 1
        return version

    async def _pause(self, error: Exception, delay: float) -> None:
        log.warning("MediaImport watch interrupted; resuming",
                    extra={"namespace": self.namespace, "retry_in_s": delay,
                           "error": f"{type(error).__name__}: {error}"})
        await asyncio.sleep(delay)


def _raise_for_error(namespace: str | None, kind: str, body: Json) -> None:
    """A watch's ERROR event (its object is a Status) as the ApiError it stands for."""
    if kind == "ERROR":
        raise ApiError("WATCH", mediaimport_path(namespace), int(body.get("code") or 500), body)
