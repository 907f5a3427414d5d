"""Request bodies: size limits (413) and JSON only (415), before any route sees them.

The body is read here, at most ``limit + 1`` bytes of it, and handed on whole;
bodies are small (64 KiB, 1 MiB for webhook deliveries whose predictions carry
logs), so buffering costs little and lets a too-large body be refused however it
is framed (Content-Length or chunked).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response

KIB = 1024
MIB = 1024 * KIB
API_BODY_LIMIT = 64 * KIB
WEBHOOK_BODY_LIMIT = 1 * MIB
WEBHOOK_PATH = "/api/v1/webhooks/replicate"
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def body_limit(path: str) -> int:
    return WEBHOOK_BODY_LIMIT if path.rstrip("/") == WEBHOOK_PATH else API_BODY_LIMIT


def is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media_type.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


class _BodyTooLargeError(Exception):
    pass


class BodyPolicyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _METHODS_WITH_BODY
            or not scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        try:
            body, more = await self._read(receive, limit)
        except _BodyTooLargeError:
            await self._too_large(scope, receive, send, limit)
            return
        if body and not is_json(headers.get("content-type", "")):
            response = error_response(
                415, "unsupported_media_type",
                "The body must be JSON (Content-Type: application/json).",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, self._replay(body, more, receive), send)

    @staticmethod
    async def _read(receive: Receive, limit: int) -> tuple[bytes, list[Message]]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), [message]  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyTooLargeError
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), []

    @staticmethod
    def _replay(body: bytes, more: list[Message], receive: Receive) -> Receive:
        pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False},
                                  *more]

        async def replay() -> Message:
            if pending:
                return pending.pop(0)
            return await receive()

        return replay

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(
            413, "payload_too_large",
            f"The body is larger than {limit // KIB} KiB.", details={"limit_bytes": limit},
        )
        await response(scope, receive, send)
