"""The OpenAPI document built without any service: what it says about authentication."""

from __future__ import annotations

from mediaimport_api.app import create_app
from mediaimport_api.settings import Settings


def test_every_authenticated_operation_documents_the_bearer_scheme() -> None:
    document = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/x")).openapi()
    assert document["components"]["securitySchemes"] == {"HTTPBearer": {
        "type": "http", "scheme": "bearer",
        "description": "A token from the API's tokens file."}}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            authenticated = path.startswith("/api/v1/") and path != "/api/v1/webhooks/replicate"
            expected = [{"HTTPBearer": []}] if authenticated else None
            assert operation.get("security") == expected, (method, path)
            if authenticated:
                assert "401" in operation["responses"], (method, path)
