"""Issue 24 item 1, the API's side: it answers only the assets of the namespaces it serves
(its own by default). An import another namespace made for one of its users' ids is not
that user's media: the row the operator writes for it is never listed, read or presigned,
and its MediaImport is not one of the user's imports. Rows the seed application made
itself (no import, no namespace) stay the user's."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_world import ApiServer
from mediaimport_dev.kube import Json, Kube
from mediaimport_operator.db import Database, UpsertOutcome
from mediaimport_operator.model import MediaImport
from mediaimport_operator.records import row_for
from psycopg.types.json import Jsonb

pytestmark = pytest.mark.e2e

URL = "https://cdn.example.test/clips/sunset.mp4"
GROUP_PATH = "/apis/mediaimport.dev/v1alpha1"


@pytest.fixture
def other_namespace(kube: Kube) -> Iterator[str]:
    name = f"other-{uuid.uuid4().hex[:8]}"
    kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")


def foreign_import(api: ApiServer, namespace: str, user: str) -> tuple[str, str]:
    """A MediaImport for ``user`` made in ``namespace`` (by whoever may create imports
    there), and the row the operator writes for it: (asset id, import name)."""
    asset_id, name = str(uuid.uuid4()), f"foreign-{uuid.uuid4().hex[:8]}"
    body: Json = api.kube.create(
        f"{GROUP_PATH}/namespaces/{namespace}/mediaimports",
        {"apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
         "metadata": {"name": name},
         "spec": {"url": URL, "userId": user, "assetId": asset_id, "type": "video"}},
    )

    async def write() -> UpsertOutcome:
        db = Database(api.postgres.url)
        await db.open()
        try:
            await db.ensure_schema()
            return await db.upsert(row_for(MediaImport.from_body(body)))
        finally:
            await db.close()

    assert asyncio.run(write()) is UpsertOutcome.WRITTEN
    return asset_id, name


def seed_row(api: ApiServer, user: str) -> str:
    """A ready asset the seed application wrote itself: no import, no namespace."""
    asset_id = str(uuid.uuid4())
    with psycopg.connect(api.postgres.url) as conn:
        conn.execute(
            "INSERT INTO media_assets (id, user_id, name, file_size, file_type, s3_key,"
            " status, file_metadata) VALUES (%s, %s, 'old.mp4', 10, 'video', %s, 'ready', %s)",
            (asset_id, user, f"media/{user}/{asset_id}/old.mp4", Jsonb({"codec": "h264"})),
        )
    return asset_id


def listed(api: ApiServer, user: str, query: str = "") -> list[dict[str, Any]]:
    answer = api.request("GET", f"/api/v1/media{query}", user)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_an_import_made_in_another_namespace_is_not_the_users(
    quiet_api: ApiServer, other_namespace: str,
) -> None:
    user = quiet_api.new_user("alice")
    own = quiet_api.post_import(user, {"url": URL, "type": "video"}).json()["id"]
    legacy = seed_row(quiet_api, user)
    foreign, foreign_name = foreign_import(quiet_api, other_namespace, user)
    # The operator recorded where each row came from.
    namespaces = {str(row["id"]): row["namespace"] for row in quiet_api.rows(user)}
    assert namespaces == {own: quiet_api.namespace, legacy: None, foreign: other_namespace}

    assert [item["id"] for item in listed(quiet_api, user)] == [legacy, own]
    for query in ("?status=uploading", "?type=video", "?limit=1"):
        assert foreign not in [item["id"] for item in listed(quiet_api, user, query)], query
    page = quiet_api.request("GET", "/api/v1/media?limit=1", user).json()
    rest = listed(quiet_api, user, f"?limit=5&cursor={page['next_cursor']}")
    assert [item["id"] for item in page["items"] + rest] == [legacy, own]

    answer = quiet_api.request("GET", f"/api/v1/media/{foreign}", user)
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "not_found"
    for method, path in [("GET", f"/api/v1/imports/{foreign_name}"),
                         ("GET", f"/api/v1/imports/{foreign_name}/events"),
                         ("DELETE", f"/api/v1/imports/{foreign_name}")]:
        answer = quiet_api.request(method, path, user)
        assert answer.status_code == 404, (method, path, answer.text)
    assert quiet_api.kube.get(
        f"{GROUP_PATH}/namespaces/{other_namespace}/mediaimports/{foreign_name}") is not None

    # The user's own import and the seed's row read as before; the seed's is presigned.
    assert quiet_api.request("GET", f"/api/v1/media/{own}", user).status_code == 200
    old = quiet_api.request("GET", f"/api/v1/media/{legacy}", user)
    assert old.status_code == 200, old.text
    assert old.json()["status"] == "ready"
    assert f"/media/{user}/{legacy}/old.mp4" in old.json()["url"]


def test_a_namespace_the_api_is_configured_to_serve_is_listed(
    quiet_api: ApiServer, other_namespace: str, tmp_path: Any,
) -> None:
    """MEDIAIMPORT_API_SERVED_NAMESPACES adds namespaces (e.g. a platform team's batch
    imports); the API's own namespace is always served."""
    user = quiet_api.new_user("bob")
    own = quiet_api.post_import(user, {"url": URL}).json()["id"]
    foreign, _ = foreign_import(quiet_api, other_namespace, user)
    wider = ApiServer(
        quiet_api.kube, quiet_api.namespace, quiet_api.bucket, quiet_api.postgres,
        quiet_api.tokens_file, tmp_path / "api.log",
        {**quiet_api.env, "MEDIAIMPORT_API_SERVED_NAMESPACES": other_namespace},
        tokens=quiet_api.tokens,
    ).start()
    try:
        assert {item["id"] for item in listed(wider, user)} == {own, foreign}
        assert wider.request("GET", f"/api/v1/media/{foreign}", user).status_code == 200
    finally:
        wider.stop()
    assert [item["id"] for item in listed(quiet_api, user)] == [own]
