"""`mediaimport-dev demo`: import a locally made sample video, end to end.

The whole path a user's import takes: the local stack comes up (control plane,
a real node, Postgres, S3, and the chart installed as a Helm release: the
operator's two replicas and the API as pods), a sample video is served on
MEDIAIMPORT_ORIGIN_HOST (this machine's end of the node's veth), a MediaImport
is applied with kubectl, the import Job runs the job image in a pod, and once it is Ready the
demo shows `kubectl get mediaimports -o wide`, the S3 objects and the
Postgres row; then the same video is imported through the HTTP API and through a
signed Replicate webhook delivery, each followed by its server-sent events, and
a presigned URL of each is printed. The stack stays up afterwards for a look around.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from .api_demo import run_api_demo
from .binaries import binary, cache_root
from .kube import Kube
from .s3server import S3Server
from .samples import make_sample_video, serve_directory
from .stack import DEFAULT_NETWORKS, ORIGIN_HOST, Stack

READY_TIMEOUT = 180.0


def _manifest(name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "mediaimport.dev/v1alpha1",
        "kind": "MediaImport",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "url": url,
            "userId": "demo-user",
            "type": "video",
            "metadata": {
                "prompt": "a test card drifting across the screen",
                "model": "local/testsrc2",
                "aiGenerated": True,
            },
            "thumbnail": {"width": 320, "at": 1},
        },
    }


def _kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    print(f"$ kubectl {' '.join(args)}", flush=True)
    subprocess.run(
        [str(binary("kubectl")), *args], input=stdin, text=True, env=env, check=True
    )


def _wait_until_finished(kube: Kube, name: str) -> dict[str, Any]:
    path = f"/apis/mediaimport.dev/v1alpha1/namespaces/default/mediaimports/{name}"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:  # a demo: short polling keeps it simple
        status: dict[str, Any] = kube.get(path).get("status") or {}
        if status.get("phase") in ("Ready", "Failed"):
            return status
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not finish within {READY_TIMEOUT:.0f} s")


def run_demo(home: Path) -> int:
    stack = Stack(home)
    if not all(stack.health().values()):
        print(f"starting the local stack in {home} ...", flush=True)
        stack.up(allow_networks=list(DEFAULT_NETWORKS))
    env = {**os.environ, **stack.env()}
    kube = Kube.from_kubeconfig(env["KUBECONFIG"])
    sample = make_sample_video(cache_root() / "samples")
    name = f"demo-{uuid.uuid4().hex[:8]}"
    with serve_directory(sample.parent, ORIGIN_HOST) as origin:
        url = f"{origin}/{sample.name}"
        print(f"serving {sample} at {url}")
        _kubectl(env, "apply", "-f", "-", stdin=json.dumps(_manifest(name, url)))
        status = _wait_until_finished(kube, name)
        api_ok = run_api_demo(env, url)
    _kubectl(env, "get", "pods", "-l", "app.kubernetes.io/instance=mediaimport")
    _kubectl(env, "get", "mediaimports", "-o", "wide")
    _kubectl(env, "get", "events", "--field-selector", f"involvedObject.name={name}")
    if status.get("phase") != "Ready" or not api_ok:
        print(json.dumps(status, indent=2))
        return 1
    result = status["result"]
    s3 = S3Server.from_state((stack.load() or {})["components"]["s3"]).client()
    for key in (result["key"], result["thumbnailKey"]):
        head = s3.head_object(Bucket=result["bucket"], Key=key)
        print(f"s3://{result['bucket']}/{key}  {head['ContentLength']} bytes  "
              f"{head['ContentType']}  sha256={head['Metadata'].get('sha256', '-')}")
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT id, status, file_type, file_size, s3_key, file_metadata "
            "FROM media_assets WHERE id = %s",
            (status["assetId"],),
        ).fetchone()
    print(f"media_assets row: {row}")
    print(
        '\nThe stack is still up: eval "$(mediaimport-dev env)"; kubectl get mi -o wide\n'
        "Stop it with: mediaimport-dev down"
    )
    return 0
