"""One watch of the namespace's MediaImports per API process, shared by every stream.

Each SSE stream, WebSocket and waiting import subscribes to one import by name;
the single watch (list for a resourceVersion, then watch from it, resumed from the
last version seen, bookmarks on) hands every event to the subscribers of that
name. A subscriber keeps only the latest update, so a slow client costs no memory
and sees the newest state. After the watch had to start over (410 Gone, or the
API server restarted) every subscribed import is read again, and the watch resumes
only when all of them were (a failed re-read starts the round over), so nobody misses
a change that happened in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mediaimport_operator.kube import ApiError, Json, Kube, mediaimport_path

log = logging.getLogger(__name__)

DELETED = "DELETED"


@dataclass
class Update:
    """An import's state as the watch saw it (``type`` DELETED: it is gone).

    One Update goes to every subscriber of its import: what they make of it is made
    once and kept in ``rendered`` (a thousand streams, one JSON encoding).
    """

    type: str
    body: Json
    rendered: Any = field(default=None, compare=False, repr=False)


class Subscription:
    def __init__(self, hub: ImportWatch, name: str) -> None:
        self.hub = hub
        self.name = name
        self._latest: Update | None = None
        self._changed = asyncio.Event()

    def push(self, update: Update) -> None:
        self._latest = update
        self._changed.set()

    async def next(self, within: float | None = None) -> Update | None:
        """The next update (the newest if several came), or None after ``within`` seconds."""
        if self._latest is None:
            try:
                await asyncio.wait_for(self._changed.wait(), within)
            except TimeoutError:
                return None
        update, self._latest = self._latest, None
        self._changed.clear()
        return update

    def close(self) -> None:
        self.hub.unsubscribe(self)


class ImportWatch:
    def __init__(self, kube: Kube, namespace: str, *, timeout_seconds: int = 300) -> None:
        self.kube = kube
        self.namespace = namespace
        self.timeout_seconds = timeout_seconds
        self._subscribers: dict[str, set[Subscription]] = {}
        self.connected = asyncio.Event()
        self.restarts = 0

    @property
    def subscriptions(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    def subscribe(self, name: str) -> Subscription:
        subscription = Subscription(self, name)
        self._subscribers.setdefault(name, set()).add(subscription)
        return subscription

    @contextlib.contextmanager
    def subscribed(self, name: str) -> Iterator[Subscription]:
        subscription = self.subscribe(name)
        try:
            yield subscription
        finally:
            subscription.close()

    def unsubscribe(self, subscription: Subscription) -> None:
        subs = self._subscribers.get(subscription.name)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self._subscribers[subscription.name]

    def dispatch(self, update: Update) -> None:
        name = (update.body.get("metadata") or {}).get("name", "")
        for subscription in list(self._subscribers.get(name, ())):
            subscription.push(update)

    async def run(self) -> None:
        """Watch for ever (a background task); errors are logged and retried with backoff."""
        path = mediaimport_path(self.namespace)
        version: str | None = None
        backoff = 0.5
        while True:
            try:
                if version is None:
                    listing = await self.kube.request("GET", path, params={"limit": "1"})
                    # Resumed from this version only once every subscribed import has been
                    # read again: if a re-read fails, the next round lists and re-reads all
                    # of them, so no stream misses an end that happened in the gap.
                    await self._resync()
                    version = str(listing["metadata"]["resourceVersion"])
                self.connected.set()
                async for event in self.kube.watch(
                    path, resource_version=version, timeout_seconds=self.timeout_seconds
                ):
                    backoff = 0.5
                    kind, body = event.get("type", ""), event.get("object") or {}
                    _raise_for_error(path, kind, body)
                    version = (body.get("metadata") or {}).get("resourceVersion") or version
                    if kind != "BOOKMARK":
                        self.dispatch(Update(kind, body))
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                if error.status == 410:  # too old: start over from a fresh list
                    version = None
                    self.restarts += 1
                    continue
                await self._pause(error, backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception as error:
                await self._pause(error, backoff)
                backoff = min(backoff * 2, 10.0)

    async def _pause(self, error: Exception, delay: float) -> None:
        self.connected.clear()
        log.warning("MediaImport watch interrupted; resuming",
                    extra={"error": str(error) or type(error).__name__, "retry_in_s": delay})
        await asyncio.sleep(delay)

    async def _resync(self) -> None:
        for name in list(self._subscribers):
            body = await self.kube.get(mediaimport_path(self.namespace, name))
            if body is None:
                self.dispatch(Update(DELETED, {"metadata": {"name": name}}))
            else:
                self.dispatch(Update("MODIFIED", body))


def _raise_for_error(path: str, kind: str, body: Json) -> None:
    """A watch's ERROR event (its object is a Status) as the ApiError it stands for."""
    if kind == "ERROR":
        raise ApiError("WATCH", path, int(body.get("code") or 500), body)
