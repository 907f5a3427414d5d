"""One error body for every 4xx and 5xx: ``{"error": {"code", "message", "details"?}}``.

FastAPI's and Starlette's own shapes (``{"detail": ...}``) are replaced by the
handlers installed here; middleware answers through ``error_response`` too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mediaimport_operator.db import DatabaseUnavailable
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable, machine-readable code, e.g. 'validation_failed'.")
    message: str = Field(description="A sentence for people.")
    details: Any | None = Field(default=None, description="More about the error, per code.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiProblem(Exception):  # noqa: N818 - answered to the client, not a bug
    """Raised anywhere in a request: answered as the one error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


# Codes for the statuses Starlette raises by itself (routing, methods).
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    500: "internal",
    503: "unavailable",
}


def error_body(code: str, message: str, *, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details=details), status_code=status,
                        headers=dict(headers or {}))


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic's errors without the offending input (it may be huge or not JSON)."""
    return [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "message": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in errors
    ]


def _first_message(details: list[dict[str, Any]]) -> str:
    if not details:
        return "The request is not valid."
    first = details[0]
    where = ".".join(part for part in first["loc"] if part not in ("body", "query", "path"))
    return f"{where}: {first['message']}" if where else first["message"]


def _validation_message(errors: Sequence[Any], details: list[dict[str, Any]]) -> str:
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        # FastAPI reports undecodable JSON as an error at ("body", offset), with the
        # decoder's reason in ctx; "1: JSON decode error" says neither clearly.
        reason = str((first.get("ctx") or {}).get("error", "")).rstrip(".")
        offset = first.get("loc", ("body", None))[-1]
        where = f" (at character {offset})" if isinstance(offset, int) else ""
        return f"The body is not valid JSON: {reason}{where}." if reason else (
            "The body is not valid JSON.")
    return _first_message(details)


def install(app: FastAPI) -> None:
    async def problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return error_response(exc.status, exc.code, exc.message, details=exc.details,
                              headers=exc.headers)

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        details = validation_details(errors)
        return error_response(422, "validation_failed", _validation_message(errors, details),
                              details=details)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
        allowed = (exc.headers or {}).get("Allow")
        if status == 405 and allowed:
            message = f"{request.method} is not allowed here; this path takes {allowed}."
        if status == 400:
            # FastAPI's answer to a body it cannot decode (e.g. not UTF-8): a body problem
            # like any other malformed JSON.
            status, message = 422, "The body is not valid JSON."
        if status == 404 and message == "Not Found":
            message = "No such resource."
        return error_response(status, _CODES.get(status, f"http_{status}"), message,
                              headers=exc.headers)

    async def database_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable", extra={"error": str(exc)})
        return error_response(503, "unavailable", "The database is unavailable; retry.",
                              headers={"Retry-After": "1"})

    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path}, exc_info=exc)
        return error_response(500, "internal", "An internal error occurred.")

    app.add_exception_handler(ApiProblem, problem)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(DatabaseUnavailable, database_down)
    app.add_exception_handler(Exception, crash)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    return {
        status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
        for status in statuses
    }
