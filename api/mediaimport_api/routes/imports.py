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
from typing import Annotated, Any

from fastapi import APIRouter, Depends, WebSocket
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.websockets import WebSocketDisconnect

from .. import metrics
from ..deps import ServicesDep, UserDep
from ..errors import ApiProblem, error_response, responses
from ..schemas import JobStatus
from ..views import TERMINAL_JOB_STATUSES, cancelled_status, job_status
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


class _Stream:
    """Subscribed before the first read, so no change between the two is missed."""

    def __init__(self, subscription: Subscription, first: dict[str, Any]) -> None:
        self.subscription = subscription
        self.first = first

    async def messages(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(resourceVersion, message) pairs: the current state, then each new one, to the end."""
        body = self.first
        last: dict[str, Any] | None = None
        while True:
            message = job_status(body)
            if message != last:
                yield (body.get("metadata") or {}).get("resourceVersion", ""), message
                last = message
            if message["status"] in TERMINAL_JOB_STATUSES:
                return
            update = await self.subscription.next()
            if update is None:
                continue
            if update.type == DELETED:
                yield "", cancelled_status()
                return
            body = update.body


async def _open_stream(name: str, user: UserDep, services: ServicesDep
                       ) -> AsyncIterator[_Stream]:
    with services.watch.subscribed(name) as subscription:
        body = await services.imports.get_owned(user, name)
        yield _Stream(subscription, body)


StreamDep = Annotated[_Stream, Depends(_open_stream)]


@router.get(
    "/{name}/events",
    response_class=EventSourceResponse,
    summary="An import's state as server-sent events",
    responses={
        200: {"description": "text/event-stream: one `data:` JSON message (the import's "
                             "state, as GET /api/v1/imports/{name}) per change."},
        **responses(401, 404, 503),
    },
)
async def import_events(stream: StreamDep) -> AsyncIterator[ServerSentEvent]:
    """The current state at once, then each change; the stream ends after Ready or Failed.
    Browsers may pass the token as ``?access_token=`` (EventSource sends no headers)."""
    gauge = metrics.OPEN_STREAMS.labels("sse")
    gauge.inc()
    try:
        async for version, message in stream.messages():
            yield ServerSentEvent(raw_data=json.dumps(message), id=version or None)
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
        async for _, message in stream.messages():
            await websocket.send_text(json.dumps(message))
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
