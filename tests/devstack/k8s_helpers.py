"""Helpers for tests against the cluster: create Jobs and pods, wait for the controllers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from mediaimport_dev.kube import Json, Kube, KubeError

T = TypeVar("T")


def eventually(check: Callable[[], T | None], *, timeout: float = 30.0, what: str = "") -> T:
    """Poll check() (tests may poll; production code watches) until it returns a value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or check}")


class Jobs:
    """Jobs whose one container runs ``image`` (the job image: it has sh and python3)."""

    def __init__(self, kube: Kube, namespace: str, image: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.image = image

    def path(self, name: str = "") -> str:
        base = f"/apis/batch/v1/namespaces/{self.namespace}/jobs"
        return f"{base}/{name}" if name else base

    def create(self, name: str, command: list[str], **spec: Any) -> Json:
        pod_spec = spec.pop("pod_spec", {})
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 0,
                **spec,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": self.image,
                                        "imagePullPolicy": "Never", "command": command}],
                        **pod_spec,
                    }
                },
            },
        }
        return self.kube.create(self.path(), job)

    def get(self, name: str) -> Json | None:
        try:
            return self.kube.get(self.path(name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def condition(self, name: str, *kinds: str, timeout: float = 30.0) -> Json:
        """The first True condition among kinds (e.g. Complete, Failed)."""

        def check() -> Json | None:
            job = self.get(name) or {}
            for condition in (job.get("status") or {}).get("conditions") or []:
                if condition["type"] in kinds and condition["status"] == "True":
                    return dict(condition)
            return None

        return eventually(check, timeout=timeout, what=f"job {name} {kinds}")

    def pods(self, name: str) -> list[Json]:
        listing = self.kube.get(
            f"/api/v1/namespaces/{self.namespace}/pods", labelSelector=f"job-name={name}"
        )
        return list(listing["items"])


def terminated(pod: Json) -> Json:
    """The first container's terminated state (exitCode, reason, message, ...)."""
    state: Json = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    return state
