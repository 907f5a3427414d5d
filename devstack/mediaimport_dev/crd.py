"""The MediaImport CRD on a cluster of the local stack (benchmarks and tests that run the
operator themselves; `mediaimport-dev up` installs it with the chart)."""

from __future__ import annotations

import importlib.resources
import time
from typing import Any

import yaml

from mediaimport_dev.kube import Kube, KubeError

CRD_NAME = "mediaimports.mediaimport.dev"


def crd_manifest() -> dict[str, Any]:
    text = (
        importlib.resources.files("mediaimport_operator") / "crds" / f"{CRD_NAME}.yaml"
    ).read_text()
    manifest: dict[str, Any] = yaml.safe_load(text)
    return manifest


def install_crd(kube: Kube, *, timeout: float = 60.0) -> None:
    """Create or update the CRD and wait until it is Established."""
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    manifest = crd_manifest()
    try:
        kube.create(path, manifest)
    except KubeError as error:
        if error.status != 409:
            raise
        current = kube.get(f"{path}/{CRD_NAME}")
        manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        kube.request("PUT", f"{path}/{CRD_NAME}", body=manifest)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # start-up only
        crd = kube.get(f"{path}/{CRD_NAME}")
        conditions = (crd.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the CRD {CRD_NAME} was not Established within {timeout:.0f} s")
