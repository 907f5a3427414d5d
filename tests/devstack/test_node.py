"""The real node: what the kubelet enforces on the import Job's pod, and what kubectl and
Services do on any cluster (logs, exec, port-forward, ClusterIP, NodePort)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from k8s_helpers import eventually, terminated
from mediaimport_dev import nodenet
from mediaimport_dev.binaries import binary
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.kube import Json, Kube
from mediaimport_operator.jobs import build_job
from mediaimport_operator.model import MediaImport
from mediaimport_operator.settings import Settings

pytestmark = pytest.mark.e2e

UID = "6f1c2a52-3b7e-4f0e-9d1a-2b8f5c7e9a01"

# What the container sees of itself, one `key=value` per line, into the termination log.
PROBE = r"""
exec > /dev/termination-log 2>&1
echo "uid=$(id -u)"
echo "gid=$(id -g)"
echo "groups=$(id -G)"
if touch /probe 2>/dev/null; then echo "root=writable"; else echo "root=read-only"; fi
if touch /tmp/probe; then echo "tmp=writable"; fi
grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -d ' \t' | tr ':' '='
echo "memory_limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
echo "cpu_quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"
echo "token=$(ls /var/run/secrets/kubernetes.io/serviceaccount 2>/dev/null | wc -l)"
"""


def import_job(kube: Kube, namespace: str, image: str, command: list[str],
               **settings: Any) -> Json:
    """The operator's own Job manifest for an import, with its command replaced."""
    kube.create(f"/api/v1/namespaces/{namespace}/secrets",
                {"metadata": {"name": "s3-creds"}, "stringData": {"AWS_REGION": "x"}})
    body = {
        "apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
        "metadata": {"name": "probe", "namespace": namespace, "uid": UID, "generation": 1},
        "spec": {"url": "http://198.51.100.1/x.mp4", "userId": "u"},
    }
    job = build_job(MediaImport.from_body(body), Settings(
        s3_secret_name="s3-creds", job_image=image, job_image_pull_policy="Never",
        backoff_limit=0, **settings,
    ))
    job["metadata"].pop("ownerReferences")
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["command"], container["args"] = command, []
    return kube.create(f"/apis/batch/v1/namespaces/{namespace}/jobs", job)


def job_pod(kube: Kube, namespace: str, job: str, *, phases: tuple[str, ...]) -> Json:
    def check() -> Json | None:
        pods = kube.get(f"/api/v1/namespaces/{namespace}/pods",
                        labelSelector=f"job-name={job}")["items"]
        done = [p for p in pods if p["status"].get("phase") in phases]
        return done[0] if done else None

    pod: Json = eventually(check, timeout=60, what=f"a pod of {job} in {phases}")
    return pod


def test_the_import_jobs_security_context_and_limits_are_enforced(
    kube: Kube, namespace: str, job_image: str
) -> None:
    job = import_job(kube, namespace, job_image, ["sh", "-c", PROBE])
    pod = job_pod(kube, namespace, job["metadata"]["name"], phases=("Succeeded", "Failed"))
    report = dict(line.split("=", 1) for line in terminated(pod)["message"].splitlines())
    assert report["uid"] == "10001"
    assert report["gid"] == "10001"
    assert "10001" in report["groups"].split()  # fsGroup
    assert report["root"] == "read-only"
    assert report["tmp"] == "writable"
    assert report["CapEff"] == "0000000000000000"
    assert report["NoNewPrivs"] == "1"
    assert report["Seccomp"] == "2"  # filter mode: RuntimeDefault
    assert report["memory_limit"] == str(1024**3)  # the default 1Gi
    assert report["cpu_quota"] == "200000"  # 2 CPUs of 100 ms periods
    assert report["token"] == "0"  # automountServiceAccountToken: false
    assert pod["status"]["phase"] == "Succeeded"


def test_a_container_over_its_memory_limit_is_killed(
    kube: Kube, namespace: str, job_image: str
) -> None:
    # 200 MiB of written bytes against a limit of 64 MiB.
    job = import_job(kube, namespace, job_image,
                     ["python3", "-c", "data = b'x' * (200 * 2**20)"],
                     memory_limit="64Mi", memory_request="32Mi")
    pod = job_pod(kube, namespace, job["metadata"]["name"], phases=("Failed",))
    state = terminated(pod)
    assert state["reason"] == "OOMKilled"
    assert state["exitCode"] == 137


@pytest.fixture
def web(kube: Kube, namespace: str, job_image: str) -> Iterator[Json]:
    """A pod serving HTTP on 8080 (a line on stdout per request), behind a NodePort Service."""
    script = ("import http.server as h, sys\n"
              "class H(h.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        body = f'hello from {self.path}'.encode()\n"
              "        print('served', self.path, flush=True)\n"
              "        self.send_response(200); self.send_header('Content-Length', len(body))\n"
              "        self.end_headers(); self.wfile.write(body)\n"
              "print('listening', flush=True)\n"
              "h.ThreadingHTTPServer(('', 8080), H).serve_forever()\n")
    pods = f"/api/v1/namespaces/{namespace}/pods"
    kube.create(pods, {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "web", "image": job_image, "imagePullPolicy": "Never",
                "command": ["python3", "-c", script],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            }],
        },
    })
    service = kube.create(f"/api/v1/namespaces/{namespace}/services", {
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"},
                 "ports": [{"port": 80, "targetPort": 8080}]},
    })

    def ready() -> bool:
        pod = kube.get(f"{pods}/web")
        conditions = pod["status"].get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    eventually(ready, timeout=60, what="the web pod to be Ready")
    yield service


def kubectl(plane: ControlPlane, *args: str, timeout: float = 60) -> str:
    done = subprocess.run([str(binary("kubectl")), "--kubeconfig", str(plane.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout, check=True)
    return done.stdout


def get_until_answered(url: str, timeout: float = 30) -> str:
    """kube-proxy programs a new Service within about a second: retry until then."""
    def answer() -> str | None:
        try:
            return requests.get(url, timeout=2).text
        except requests.RequestException:
            return None

    text: str = eventually(answer, timeout=timeout, what=url)
    return text


def test_services_from_this_machine_clusterip_and_nodeport(web: Json) -> None:
    cluster_ip = web["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(nodenet.SERVICE_CIDR)
    assert get_until_answered(f"http://{cluster_ip}/a") == "hello from /a"
    node_port = web["spec"]["ports"][0]["nodePort"]
    assert get_until_answered(f"http://{nodenet.NODE_IP}:{node_port}/b") == "hello from /b"


def test_a_pod_reaches_services_and_the_api_server(
    kube: Kube, namespace: str, job_image: str, web: Json
) -> None:
    # The `kubernetes` Service with the service account's CA; anyone may read /livez.
    script = (
        "import os, ssl, sys, urllib.request as u\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "api = 'https://%s:%s/livez' % (os.environ['KUBERNETES_SERVICE_HOST'],"
        " os.environ['KUBERNETES_SERVICE_PORT'])\n"
        "web = u.urlopen(sys.argv[1], timeout=10).read().decode()\n"
        "live = u.urlopen(api, context=ctx, timeout=10).read().decode()\n"
        "open('/dev/termination-log', 'w').write(web + '|' + live)\n"
    )
    jobs = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    kube.create(jobs, {
        "metadata": {"name": "client"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": job_image, "imagePullPolicy": "Never",
                            "command": ["python3", "-c", script,
                                        f"http://{web['spec']['clusterIP']}/from-pod"]}],
        }}},
    })
    pod = job_pod(kube, namespace, "client", phases=("Succeeded", "Failed"))
    assert terminated(pod)["message"] == "hello from /from-pod|ok", terminated(pod)


def test_kubectl_logs_exec_and_port_forward(
    control_plane: ControlPlane, namespace: str, web: Json
) -> None:
    assert "listening" in kubectl(control_plane, "-n", namespace, "logs", "web")
    assert kubectl(control_plane, "-n", namespace, "exec", "web", "--",
                   "sh", "-c", "echo $((6 * 7))").strip() == "42"

    follow = subprocess.Popen(
        [str(binary("kubectl")), "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace,
         "logs", "-f", "web"], stdout=subprocess.PIPE, text=True)
    forward = subprocess.Popen(
        [str(binary("kubectl")), "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace,
         "port-forward", "pod/web", ":8080"], stdout=subprocess.PIPE, text=True)
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 8080"
        port = int(line.split("->")[0].rsplit(":", 1)[1])
        assert get_until_answered(f"http://127.0.0.1:{port}/forwarded") == (
            "hello from /forwarded")
        assert follow.stdout is not None
        deadline = time.monotonic() + 20
        seen = []
        while time.monotonic() < deadline:
            seen.append(follow.stdout.readline())
            if "served /forwarded" in seen[-1]:
                break
        assert any("served /forwarded" in line for line in seen), seen
    finally:
        forward.kill()
        follow.kill()
        forward.wait(10)
        follow.wait(10)


def test_the_node_lists_its_images_and_addresses(kube: Kube, job_image: str) -> None:
    node = kube.get("/api/v1/nodes/mediaimport-node")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == nodenet.NODE_IP
    names = {n for image in node["status"]["images"] for n in image.get("names") or []}
    assert job_image in names, names
    assert not node["spec"].get("taints")
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.6")


def test_nothing_is_routed_off_this_machine() -> None:
    routes = subprocess.run(["ip", "-n", nodenet.NETNS, "-j", "route", "show"],
                            capture_output=True, text=True, check=True).stdout
    destinations = {r["dst"] for r in json.loads(routes)}
    assert "default" not in destinations
    assert Path(f"/sys/class/net/{nodenet.HOST_IF}").exists()
