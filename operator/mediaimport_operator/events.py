"""Kubernetes Events about MediaImports, posted in the background.

The operator's work happens outside kopf's handlers (its own MediaImport watch, the retry
queue, the resync), where kopf's ``kopf.event`` has no queue to post to: Events are posted
here instead, as kopf posts them (core/v1, the reporting component and instance, messages cut
to the API's 1,024 characters). ``post`` never waits: the Event is queued and a few senders
post it in the background, in the ordinary request lane (status writes and Job creations go
first); a full queue (the API server unreachable for long) drops the newest with a log line;
a failed post is tried twice more after a short pause, then logged and dropped — Events are
helpful but auxiliary, never a reason to hold up an import.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import aiohttp

from .kube import ApiError, Fenced, Json, Kube, events_path
from .model import API_VERSION, KIND
from .status import Event

log = logging.getLogger(__name__)

MAX_MESSAGE = 1024
_CUT = "..."
# Enough for a burst of a few thousand imports' Events while the API server is slow.
QUEUE_SIZE = 10_000
_LEVELS = {"Normal": logging.INFO, "Warning": logging.WARNING}
SENDERS = 4
_PAUSES_S = (0.5, 2.0)  # before the second and the third try


def cut(message: str) -> str:
    """A message the API accepts: at most 1,024 characters, its middle cut out if longer."""
    if len(message) <= MAX_MESSAGE:
        return message
    keep = MAX_MESSAGE - len(_CUT)
    return message[: keep // 2] + _CUT + message[-(keep - keep // 2):]


def event_body(involved: Json, event: Event, *, component: str, instance: str,
               now: datetime) -> Json:
    """The core/v1 Event about ``involved`` (a MediaImport's body, or its reference's)."""
    meta = involved.get("metadata") or {}
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "metadata": {"namespace": meta.get("namespace"), "generateName": "mediaimport-"},
        # A listing's items may leave out apiVersion and kind: all are MediaImports.
        "involvedObject": {"apiVersion": involved.get("apiVersion") or API_VERSION,
                           "kind": involved.get("kind") or KIND,
                           "namespace": meta.get("namespace"), "name": meta.get("name"),
                           "uid": meta.get("uid")},
        "type": event.type,
        "reason": event.reason,
        "message": cut(event.message),
        "action": event.reason,
        "source": {"component": component},  # the "From" of kubectl describe
        "reportingComponent": component,
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp[:19] + "Z",
        "lastTimestamp": stamp[:19] + "Z",
        "eventTime": stamp,
        "count": 1,
    }


class EventPoster:
    def __init__(self, kube: Kube, *, component: str, instance: str, level: int) -> None:
        self.kube = kube
        self.component, self.instance, self.level = component, instance, level
        self._queue: asyncio.Queue[Json] = asyncio.Queue(QUEUE_SIZE)

    def post(self, involved: Json, event: Event) -> None:
        """Queue an Event about ``involved`` (never waits)."""
        if _LEVELS.get(event.type, logging.WARNING) < self.level:
            return
        body = event_body(involved, event, component=self.component, instance=self.instance,
                          now=datetime.now(UTC))
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            log.warning("event dropped: too many waiting to be posted",
                        extra={"reason": event.reason, "event_message": event.message})

    def pending(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        """Post queued Events for ever (a background loop of a few senders)."""
        await asyncio.gather(*(self._sender() for _ in range(SENDERS)))

    async def _sender(self) -> None:
        while True:
            body = await self._queue.get()
            await self._send(body)

    async def flush(self, within: float) -> None:
        """Post what is queued now, for at most ``within`` seconds (at a clean stop)."""

        async def drain() -> None:
            while not self._queue.empty():
                await self._send(self._queue.get_nowait())

        try:
            await asyncio.wait_for(drain(), within)
        except TimeoutError:
            log.warning("events not posted at the stop", extra={"events": self.pending()})

    async def _send(self, body: Json) -> None:
        namespace = str(body["metadata"]["namespace"])
        for pause in (*_PAUSES_S, None):
            try:
                await self.kube.request("POST", events_path(namespace), body=body)
            except Fenced:
                return  # no longer the leader: nothing more goes out
            except (ApiError, OSError, TimeoutError, aiohttp.ClientError) as error:
                transient = not isinstance(error, ApiError) or error.status in (429, 500,
                                                                                502, 503, 504)
                if pause is None or not transient:
                    log.warning("event not posted",
                                extra={"reason": body.get("reason"), "namespace": namespace,
                                       "event_message": body.get("message"),
                                       "error": f"{type(error).__name__}: {error}"})
                    return
                await asyncio.sleep(pause)
            else:
                return
