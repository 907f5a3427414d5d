"""The operator as a component of the local stack (`mediaimport-dev up`).

`up` installs the MediaImport CRD (the chart's file, shipped in the operator
package), creates the S3 Secret the import Jobs read in the `default` namespace,
and starts `python -m mediaimport_operator` against the local control plane,
Postgres and S3; `mediaimport-dev logs operator` shows its log.

Hooked in by `stack.EXTENSIONS.append(OperatorComponent())`.
"""

from __future__ import annotations

import importlib.resources
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import yaml

from mediaimport_dev.kube import Kube, KubeError
from mediaimport_dev.ports import free_port
from mediaimport_dev.processes import pid_alive, spawn, stop_group, wait_started

if TYPE_CHECKING:
    from mediaimport_dev.stack import StackContext

State = dict[str, Any]
CRD_NAME = "mediaimports.mediaimport.dev"
SECRET_NAME = "mediaimport-s3"  # noqa: S105 - a Secret object's name, not a secret
NAMESPACE = "default"
_AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL_S3")


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


def ensure_s3_secret(kube: Kube, env: dict[str, str], namespace: str = NAMESPACE) -> None:
    data = {key: env[key] for key in _AWS_KEYS if key in env}
    body = {"metadata": {"name": SECRET_NAME}, "stringData": data}
    path = f"/api/v1/namespaces/{namespace}/secrets"
    try:
        kube.create(path, body)
    except KubeError as error:
        if error.status != 409:
            raise
        kube.merge_patch(f"{path}/{SECRET_NAME}", {"stringData": data})


def job_image(images: dict[str, Path]) -> str:
    """The job image's name among the node's images."""
    names = [name for name in images if "mediaimport-job" in name]
    if len(names) != 1:
        raise RuntimeError(f"expected one mediaimport-job image among {sorted(images)}")
    return names[0]


def operator_env(ctx_env: dict[str, str], *, port: int, home: Path,
                 image: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIAIMPORT_"))}
    env.update({k: v for k, v in ctx_env.items() if k.startswith("AWS_") or k == "KUBECONFIG"})
    env.update(
        {
            "MEDIAIMPORT_BUCKET": ctx_env.get("MEDIAIMPORT_BUCKET", "mediaimport"),
            "MEDIAIMPORT_ALLOWED_NETWORKS": ctx_env.get("MEDIAIMPORT_ALLOWED_NETWORKS", ""),
            "MEDIAIMPORT_S3_SECRET_NAME": SECRET_NAME,
            # Imported into the node's containerd; there is no registry to pull from.
            "MEDIAIMPORT_JOB_IMAGE": image,
            "MEDIAIMPORT_JOB_IMAGE_PULL_POLICY": "Never",
            "MEDIAIMPORT_HTTP_HOST": "127.0.0.1",
            "MEDIAIMPORT_HTTP_PORT": str(port),
            "MEDIAIMPORT_LEASE_NAMESPACE": NAMESPACE,
            "MEDIAIMPORT_IDENTITY": f"mediaimport-dev-{os.getpid()}",
            "MEDIAIMPORT_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            "HOME": str(home),
        }
    )
    if "DATABASE_URL" in ctx_env:
        env["MEDIAIMPORT_DATABASE_URL"] = ctx_env["DATABASE_URL"]
    return env


class OperatorComponent:
    name = "operator"

    def up(self, ctx: StackContext) -> State:
        kube = Kube.from_kubeconfig(ctx.env["KUBECONFIG"])
        install_crd(kube)
        ensure_s3_secret(kube, ctx.env)
        home = ctx.home / "operator"
        home.mkdir(parents=True, exist_ok=True)
        log = home / "operator.log"
        port = free_port("127.0.0.1")
        process = spawn(
            [sys.executable, "-m", "mediaimport_operator"],
            log,
            env=operator_env(ctx.env, port=port, home=home, image=job_image(ctx.images)),
        )
        state = {"pid": process.pid, "log": str(log), "port": port}
        wait_started(process, log, lambda: self._ready(port),
                     what="the operator", timeout=60, interval=0.2)
        return state

    @staticmethod
    def _ready(port: int) -> bool:
        try:
            answer = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
        except requests.RequestException:
            return False
        return answer.status_code == 200 and answer.json().get("role") == "leader"

    def down(self, state: State) -> None:
        stop_group(state["pid"], grace=15.0)

    def healthy(self, state: State) -> bool:
        if not pid_alive(state["pid"]):
            return False
        try:
            return requests.get(f"http://127.0.0.1:{state['port']}/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    def describe(self, state: State) -> str:
        return (
            f"pid {state['pid']}, http://127.0.0.1:{state['port']}/metrics, "
            f"imports in namespace {NAMESPACE} (S3 Secret {SECRET_NAME})"
        )

    def log_path(self, state: State) -> Path | None:
        return Path(state["log"])
