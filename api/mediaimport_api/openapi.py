"""The OpenAPI document, with the one error shape where FastAPI would put its own.

FastAPI documents a 422 ``{"detail": [...]}`` on every route with parameters; this
API answers ``{"error": {...}}`` instead (errors.py), so the document says so too,
and every route under /api/v1 documents its 401 and the bearer scheme. The scheme is
written here rather than declared as a FastAPI security dependency: the token is checked by
AuthMiddleware before anything else, and a dependency would only parse the header again
on every request.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_BEARER = "HTTPBearer"
_BEARER_SCHEME = {"type": "http", "scheme": "bearer",
                  "description": "A token from the API's tokens file."}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def install(app: FastAPI) -> None:
    def document() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                answers = operation.setdefault("responses", {})
                if "422" in answers:
                    answers["422"] = _error_response("The request is not valid.")
                for status, answer in answers.items():
                    # Errors are JSON also where the success is a stream.
                    if status >= "400":
                        answers[status] = _error_response(answer.get("description", ""))
                if path.startswith("/api/v1/") and path != "/api/v1/webhooks/replicate":
                    answers.setdefault("401", _error_response("Missing or unknown token."))
                    operation["security"] = [{_BEARER: []}]
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[_BEARER] = (
            _BEARER_SCHEME)
        components = schema["components"].setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = document  # type: ignore[method-assign]
