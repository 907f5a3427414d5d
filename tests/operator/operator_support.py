"""Helpers of the operator's component and end-to-end tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mediaimport_dev.kube import Json, Kube
from mediaimport_dev.postgres import PostgresServer


def stop_postgres_fast(server: PostgresServer) -> None:
    """Stop Postgres now, with clients still connected (the operator's pool).

    ``PostgresServer.stop`` uses ``pg_ctl -m fast``, which ends the sessions:
    what an outage looks like to the operator.
    """
    server.stop()
    assert not Path(server.data_dir / "postmaster.pid").exists()


def finished_import(name: str, *, when: str = "2026-01-01T00:00:00Z") -> tuple[Json, Json]:
    """A MediaImport and the status an operator leaves on it once Ready and recorded."""
    asset = str(uuid.uuid4())
    key = f"media/user-1/{asset}"
    body = {
        "apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
        "metadata": {"name": name},
        "spec": {"url": f"https://replicate.delivery/pbxt/{asset}/out.mp4", "userId": "user-1",
                 "assetId": asset, "type": "video",
                 "metadata": {"prompt": "a sunset over the sea", "model": "wan-2.1"}},
    }
    condition = {"lastTransitionTime": when, "observedGeneration": 1}
    status = {
        "observedGeneration": 1, "phase": "Ready", "type": "video", "assetId": asset,
        "jobName": f"mi-{name}", "attempts": 1, "startTime": when, "completionTime": when,
        "conditions": [
            {**condition, "type": "Succeeded", "status": "True", "reason": "Imported",
             "message": f"Imported video out.mp4 to s3://bucket/{key}/out.mp4."},
            {**condition, "type": "Recorded", "status": "True", "reason": "RowUpToDate",
             "message": f"The media_assets row {asset} is ready."},
        ],
        "result": {"bucket": "bucket", "key": f"{key}/out.mp4",
                   "thumbnailKey": f"{key}/thumbnail.jpg", "name": "out.mp4", "size": 2_512_345,
                   "sha256": "ab" * 32, "contentType": "video/mp4",
                   "media": {"duration": 4.0, "width": 1280, "height": 720, "frameRate": 24.0,
                             "codec": "h264", "bitrate": 5_000_000, "format": "mp4"}},
    }
    return body, status


def create_finished(kube: Kube, namespace: str, names: Iterable[str]) -> None:
    """Create finished MediaImports (each created, then given its status), 16 at a time."""
    path = f"/apis/mediaimport.dev/v1alpha1/namespaces/{namespace}/mediaimports"

    def one(name: str) -> None:
        body, status = finished_import(name)
        kube.create(path, body)
        kube.merge_patch(f"{path}/{name}/status", {"status": status})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, names))
