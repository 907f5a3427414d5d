"""GET/DELETE /api/v1/imports/{name}, and its state as server-sent events or a WebSocket.

Both streams send the current state at once, then each change, and end after the
import is Ready or Failed (or deleted). They are fed by the process's one shared
watch (``watch.ImportWatch``), never by a watch of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.websockets import WebSocketDisconnect

from .. import metrics
from ..deps import ServicesDep, UserDep
from ..errors import ApiProblem, error_response, responses
from ..schemas import JobStatus
from ..views import TERMINAL_JOB_STATUSES, cancelled_status, is_deleting, job_status
from ..watch import DELETED, Subscription

router = APIRouter(prefix="/api/v1/imports", tags=["imports"])
KEEPALIVE_SECONDS = 15.0


@router.get("/{name}", response_model=JobStatus, summary="An import's state",
            responses=responses(401, 404, 503))
async def get_import(name: str, user: UserDep, services: ServicesDep) -> Any:
    """The seed's job status: Pending→queued, Importing→started, Ready→finished, Failed→failed."""
    return job_status(await services.imports.get_owned(user, name))


@router.delete("/{name}", status_code=202, response_model=JobStatus, summary="Cancel an import",
               responses=responses(401, 404, 503))
async def cancel_import(name: str, user: UserDep, services: ServicesDep) -> Any:
    """Deletes the MediaImport; the operator stops its Job and fails a row still uploading.
    Answers the import's last state."""
    return JSONResponse(job_status(await services.imports.cancel(user, name)), status_code=202)


@dataclass(frozen=True)
class Frame:
    """One message of a stream, encoded once: the import's resourceVersion, its state."""

    version: str
    data: str
    terminal: bool

    @classmethod
    def of(cls, body: dict[str, Any]) -> Frame:
        message = job_status(body)
        return cls((body.get("metadata") or {}).get("resourceVersion", ""),
                   json.dumps(message), message["status"] in TERMINAL_JOB_STATUSES)

    def older_than(self, other: Frame) -> bool:
        """Whether this state is older than ``other``'s: a watch event can arrive after
        the stream's own first read of a newer version (or a re-read after a 410), and
        must not take the stream back (percent down, then up again: two extra events).
        Versions are compared as numbers, as the API server writes them; other
        versions are never judged older."""
        if self.version.isdigit() and other.version.isdigit():
            return int(self.version) < int(other.version)
        return False

    def sse(self) -> bytes:
        version = f"id: {self.version}\n" if self.version else ""
        return f"{version}data: {self.data}\n\n".encode()


CANCELLED = Frame("", json.dumps(cancelled_status()), terminal=True)
KEEPALIVE = b": ping\n\n"


class _Stream:
    """Subscribed before the first read, so no change between the two is missed."""

    def __init__(self, subscription: Subscription, first: dict[str, Any]) -> None:
        self.subscription = subscription
        self.first = first

    async def frames(self) -> AsyncIterator[Frame | None]:
        """The current state, then each new one, to the end; None after a quiet spell
        (for a keep-alive)."""
        frame = Frame.of(self.first)
        sent: Frame | None = None
        while True:
            # One message per distinct state, in order: a progress report is a change
            # of its own; an event that changes nothing the message says (a label, the
            # finalizer) or an older state is not sent.
            if sent is None or (frame.data != sent.data and not frame.older_than(sent)):
                yield frame
                sent = frame
            if sent.terminal:
                return
            update = await self.subscription.next(KEEPALIVE_SECONDS)
            if update is None:
                yield None
                continue
            if update.type == DELETED or is_deleting(update.body):
                # Deleted (or being deleted): the import ends cancelled, whatever the
                # operator writes on the way out; a finished one ended above.
                yield CANCELLED
                return
            if update.rendered is None:  # the first of its subscribers renders it
                update.rendered = Frame.of(update.body)
            frame = update.rendered


async def _open_stream(name: str, user: UserDep, services: ServicesDep
                       ) -> AsyncIterator[_Stream]:
    # A dependency with yield: the subscription ends after the response, however it ends.
    with services.watch.subscribed(name) as subscription:
        body = await services.imports.get_owned(user, name)
        yield _Stream(subscription, body)


StreamDep = Annotated[_Stream, Depends(_open_stream)]


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


@router.get(
    "/{name}/events",
    response_class=EventStream,
    summary="An import's state as server-sent events",
    responses={
        200: {"description": "text/event-stream: one `data:` JSON message (the import's "
                             "state, as GET /api/v1/imports/{name}) per change."},
        **responses(401, 404, 503),
    },
)
async def import_events(stream: StreamDep) -> EventStream:
    """The current state at once, then each change; the stream ends after Ready or Failed.
    Browsers may pass the token as ``?access_token=`` (EventSource sends no headers).
    A ``: ping`` comment every 15 s keeps proxies from closing a quiet stream."""
    # Served as plain bytes, each message encoded once for all its streams.
    return EventStream(_event_stream(stream),
                       headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _event_stream(stream: _Stream) -> AsyncIterator[bytes]:
    gauge = metrics.OPEN_STREAMS.labels("sse")
    gauge.inc()
    try:
        async for frame in stream.frames():
            yield KEEPALIVE if frame is None else frame.sse()
    finally:
        gauge.dec()


@router.websocket("/{name}/ws")
async def import_socket(websocket: WebSocket, name: str) -> None:
    """The same messages as /events, one JSON text frame each; closed (1000) after the end."""
    services = websocket.app.state.services
    user = websocket.state.user
    with services.watch.subscribed(name) as subscription:
        try:
            body = await services.imports.get_owned(user, name)
        except ApiProblem as problem:
            await _deny(websocket, problem)
            return
        await websocket.accept()
        gauge = metrics.OPEN_STREAMS.labels("websocket")
        gauge.inc()
        try:
            # The client's side is read only to notice that it went away.
            sender = asyncio.create_task(_send_all(websocket, _Stream(subscription, body)))
            gone = asyncio.create_task(_until_disconnect(websocket))
            await asyncio.wait({sender, gone}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sender, gone):
                task.cancel()
            await asyncio.gather(sender, gone, return_exceptions=True)
        finally:
            gauge.dec()


async def _send_all(websocket: WebSocket, stream: _Stream) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        async for frame in stream.frames():
            if frame is not None:  # the WebSocket protocol keeps itself alive (pings)
                await websocket.send_text(frame.data)
        await websocket.close(code=1000)


async def _until_disconnect(websocket: WebSocket) -> None:
    with contextlib.suppress(Exception):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


async def _deny(websocket: WebSocket, problem: ApiProblem) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(
            error_response(problem.status, problem.code, problem.message,
                           headers=problem.headers)
        )
    else:
        await websocket.close(code=4000 + problem.status if problem.status < 1000 else 1011,
                              reason=problem.message[:120])
