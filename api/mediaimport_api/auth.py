"""Bearer tokens → user ids, and the middleware that checks them before anything else.

Tokens are stored as SHA-256 hashes, one ``<sha256 hex> <user-id>`` per line, in a
file (a mounted Secret). The file is re-read every second, and at once when an
unknown token arrives, so a token added to the
Secret works without a restart and a removed one stops working.

The check is an ASGI middleware rather than a FastAPI dependency: FastAPI reads
and parses the body before dependencies run, and an unauthenticated request must
learn nothing about its body (not even that it is too large or not JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from .errors import error_response

log = logging.getLogger(__name__)

# The MediaImport's spec.userId rule (the CRD's pattern): the id is part of S3 keys.
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_HASH = re.compile(r"^[0-9a-fA-F]{64}$")
REALM = 'Bearer realm="mediaimport"'
# The webhook receiver is authenticated by its signature and signed context instead.
PUBLIC_API_PATHS = frozenset({"/api/v1/webhooks/replicate"})
# Browsers cannot set headers on EventSource and WebSocket requests: these two may
# carry the token as the access_token query parameter (RFC 6750, section 2.3).
_QUERY_TOKEN_SUFFIXES = ("/events", "/ws")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def valid_user_id(user: str) -> bool:
    return bool(USER_ID.match(user)) and ".." not in user


def parse_tokens(text: str) -> tuple[dict[str, str], list[str]]:
    """(token hash → user id, problems by line number) of a tokens file's text."""
    tokens: dict[str, str] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not _HASH.match(parts[0]):
            problems.append(f"line {number}: expected '<sha256 hex> <user-id>'")
            continue
        digest, user = parts[0].lower(), parts[1]
        if not valid_user_id(user):
            problems.append(
                f"line {number}: user id must be letters, digits, '.', '_', '@' or '-' "
                "(at most 128, starting with a letter or digit, no '..')"
            )
            continue
        tokens[digest] = user
    return tokens, problems


class TokenStore:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._tokens: dict[str, str] = {}
        self._users: frozenset[str] = frozenset()
        self._text: str | None = None
        self._lock = asyncio.Lock()
        self.loaded_at = 0.0

    def __len__(self) -> int:
        return len(self._tokens)

    def has_user(self, user: str) -> bool:
        """Whether ``user`` holds a live token (the file is re-read every second: a
        removed line revokes within that)."""
        return user in self._users

    async def user_for(self, token: str) -> str | None:
        digest = hash_token(token)
        user = self._tokens.get(digest)
        if user is None and self.path is not None:
            await self.refresh()
            user = self._tokens.get(digest)
        return user

    async def refresh(self) -> None:
        """Re-read the file; adopt its tokens if it changed (file access off the event loop)."""
        if self.path is None:
            return
        path = self.path
        if self._lock.locked():  # a refresh is under way: share its outcome
            async with self._lock:
                return
        async with self._lock:
            try:
                # Read whole each time (a small file): a change within the file system's
                # timestamp granularity, or a Secret's symlink swap, is never missed.
                text = await asyncio.to_thread(path.read_text)
            except OSError as error:
                if self._text is not None:
                    log.warning("tokens file unreadable; keeping the tokens known",
                                extra={"path": str(path), "error": str(error)})
                    self._text = None
                return
            if text == self._text:
                return
            tokens, problems = parse_tokens(text)
            for problem in problems:
                log.warning("tokens file: %s", problem, extra={"path": str(path)})
            self._tokens, self._text = tokens, text
            self._users = frozenset(tokens.values())
            self.loaded_at = time.monotonic()
            log.info("tokens loaded", extra={"path": str(path), "tokens": len(tokens)})

    async def follow(self, interval: float = 1.0) -> None:
        """Re-check the file every ``interval`` seconds, for ever (a background task)."""
        while True:
            with contextlib.suppress(Exception):
                await self.refresh()
            await asyncio.sleep(interval)


def bearer_token(headers: Headers, query: Mapping[str, str] | None = None) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if query is not None and query.get("access_token"):
        return query["access_token"]
    return None


def needs_auth(path: str) -> bool:
    return path.startswith("/api/") and path.rstrip("/") not in PUBLIC_API_PATHS


class AuthMiddleware:
    """Refuse unauthenticated requests under /api/ (401); put the user id in the scope."""

    def __init__(self, app: ASGIApp, tokens: TokenStore) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not needs_auth(scope["path"]):
            await self.app(scope, receive, send)
            return
        query = None
        if scope["path"].endswith(_QUERY_TOKEN_SUFFIXES):
            query = QueryParams(scope.get("query_string", b"").decode("latin-1"))
        token = bearer_token(Headers(scope=scope), query)
        user = await self.tokens.user_for(token) if token else None
        if user is None:
            await self._deny(scope, receive, send, missing=token is None)
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(scope: Scope, receive: Receive, send: Send, *, missing: bool) -> None:
        if missing:
            challenge, message = REALM, "A bearer token is required (Authorization: Bearer ...)."
        else:
            challenge = f'{REALM}, error="invalid_token"'
            message = "The bearer token is not known."
        response = error_response(401, "unauthorized", message,
                                  headers={"WWW-Authenticate": challenge})
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(code=1008, reason="unauthorized")


def new_token() -> str:
    """A fresh random bearer token (what `mediaimport-dev token` hands out)."""
    return "mi_" + os.urandom(32).hex()
