"""The operator's memory does not grow with the finished imports a cluster keeps
(bench/operator_scale.py measures the same at 0, 1,000 and 5,000)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests
from conftest import GROUP_PATH, OperatorProcess, eventually
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.kube import Kube
from operator_support import create_finished

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FINISHED = 1500
# Measured before the operator watched MediaImports itself: +35 MiB for 1,500 (kopf's
# listing in one response, and its memory of every object).
GROWTH_MIB = 6.0


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _peak_after_start(plane: ControlPlane, kube: Kube, namespace: str, log: Path,
                      probe: str) -> float:
    """Start an operator, wait until it started an import created after it, its peak RSS."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "MEDIAIMPORT_", "KUBECONFIG"))}
    env.update({
        "KUBECONFIG": str(plane.kubeconfig), "MEDIAIMPORT_NAMESPACES": namespace,
        "MEDIAIMPORT_HTTP_PORT": "0", "MEDIAIMPORT_HTTP_HOST": "127.0.0.1",
        # No pod runs here: no channel to hand them.
        "MEDIAIMPORT_STORAGE_ACCESS": "credentials",
        "MEDIAIMPORT_LEASE_NAMESPACE": namespace, "MEDIAIMPORT_IDENTITY": probe,
        # The probe's pod never runs: no image of that name exists and none is pulled.
        "MEDIAIMPORT_JOB_IMAGE": "mediaimport.invalid/none:0",
        "MEDIAIMPORT_JOB_IMAGE_PULL_POLICY": "Never", "PYTHONUNBUFFERED": "1",
    })
    operator = OperatorProcess(env, log).start()
    try:
        eventually(lambda: "health and metrics server listening" in operator.log(), timeout=60)
        port = operator.port()
        eventually(lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).ok,
                   timeout=120, what="the operator to be ready")
        path = f"{GROUP_PATH}/namespaces/{namespace}/mediaimports"
        kube.create(path, {"apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
                           "metadata": {"name": probe},
                           "spec": {"url": "https://example.com/clip.mp4", "userId": "user-1"}})
        eventually(lambda: (kube.get(f"{path}/{probe}").get("status") or {}).get("phase"),
                   timeout=120, what="the probe import to start")
        time.sleep(2)  # whatever the start left to do, within the peak
        assert operator.process is not None and operator.process.poll() is None, operator.log()
        return _peak_rss_mib(operator.process.pid)
    finally:
        operator.stop()


@pytest.mark.usefixtures("crd")
def test_the_operators_memory_does_not_grow_with_finished_imports(
    control_plane: ControlPlane, kube: Kube, namespace: str, tmp_path: Path,
) -> None:
    empty = _peak_after_start(control_plane, kube, namespace, tmp_path / "empty.log", "probe-0")
    create_finished(kube, namespace, [f"done-{i:04d}" for i in range(FINISHED)])
    full = _peak_after_start(control_plane, kube, namespace, tmp_path / "full.log", "probe-1")
    print(f"peak RSS: {empty:.1f} MiB empty, {full:.1f} MiB over {FINISHED} finished imports")
    assert full - empty <= GROWTH_MIB, (
        f"peak RSS {empty:.1f} MiB over no finished import, {full:.1f} MiB over {FINISHED}")
