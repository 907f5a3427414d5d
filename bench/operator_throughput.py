"""Benchmark: the operator under 200 MediaImports applied at once, each imported by a real pod.

    python bench/operator_throughput.py                    # kubectl apply -f of 200 imports
    python bench/operator_throughput.py --apply parallel   # 200 POSTs from 32 threads at once
    python bench/operator_throughput.py --count 50
    python bench/operator_throughput.py --apply sequential --count 20   # one import's latency

Sets up a private cluster (control plane and the real node, which runs each import's Job as a
pod of the job image), Postgres, S3 and an origin serving a small PNG on the node's veth
(where pods reach them), starts the operator as a process (`python -m mediaimport_operator`),
applies N MediaImports at once and follows everything through watches in a process of its own,
stamping each event with the machine's monotonic clock when it arrives (creationTimestamps
have 1 s granularity: too coarse for sub-second latencies).

How the imports are applied (`--apply`):
* `kubectl` (default): one `kubectl apply -f` of a file holding all N, as a user applies
  them; kubectl creates them one after another (a GET and a POST each) and each import's
  creation is stamped when kubectl reports it ("... created");
* `parallel`: POSTs from `--creators` threads (32) at once, each connected before the clock
  starts — a harsher burst (~200 creations per second here) in which the benchmark's own
  creations compete with the operator's Job creations for the same API server and cores;
  each is stamped when its POST returns;
* `sequential`: one POST at a time, the next once the previous import is Ready or Failed:
  what one import costs on a quiet cluster; each is stamped when its POST is sent.

Measures
* wall_s: first create sent → last MediaImport seen Ready;
* create→Job latency p50/p99: the creation stamped (above) → the Job's ADDED event received
  (targets ≤ 0.3 s and ≤ 2 s), split into the watch delivering the new MediaImport
  (create→watch) and the operator's part up to the Job's ADDED event (watch→Job);
* operator peak RSS (VmHWM of the operator process), MiB;
* create→Ready p50/p90: the creation stamped → the MediaImport seen Ready (in the bursts this
  includes waiting for room on the node);
* overhead share: per import, (Job seen - MediaImport created) + (Ready seen - the pod's
  container seen terminated), summed, over the sum of (Ready seen - created). The rest is the
  job itself and the pods waiting for room on the node (each requests 250m CPU of the node's
  2). Target ≤ 10 %.
* pod end→Ready p50: the pod's container seen terminated → the MediaImport seen Ready (the
  operator takes the result from the pod; the Job is Complete ~2 s later), and Job
  Complete→Ready p50 (negative: Ready first);
* the stack's total RSS at the end (control plane, node with its shims, Postgres, S3,
  operator), MiB;

* CPU seconds of etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the node's
  processes and the pods (the jobs, from the `kubepods` cgroup) during the run [info]: on one
  machine they all compete for the cores.

Prints a table, then one JSON object as the last line of stdout; the per-import stamps are
left in `<work dir>/stamps.json` for a timeline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "devstack"))

import psutil  # noqa: E402
from mediaimport_dev import nodehost, nodenet  # noqa: E402
from mediaimport_dev.binaries import binary  # noqa: E402
from mediaimport_dev.cluster import Cluster, node_images  # noqa: E402
from mediaimport_dev.controlplane import ControlPlane  # noqa: E402
from mediaimport_dev.crd import install_crd  # noqa: E402
from mediaimport_dev.images import PAUSE_IMAGE, job_image  # noqa: E402
from mediaimport_dev.kube import Kube, KubeError  # noqa: E402
from mediaimport_dev.postgres import PostgresServer  # noqa: E402
from mediaimport_dev.s3server import S3Server  # noqa: E402
from mediaimport_dev.samples import serve_directory  # noqa: E402

GROUP = "/apis/mediaimport.dev/v1alpha1"
def make_image(directory: Path) -> Path:
    path = directory / "bench.png"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180",
            "-frames:v",
            "1",
            str(path),
        ],
        check=True,
    )
    return path


class Watcher(threading.Thread):
    """Follows one collection; records the local time of the first event matching each key."""

    def __init__(self, kube: Kube, path: str, stamp: Any, **params: str) -> None:
        super().__init__(daemon=True)
        self.kube, self.path, self.stamp, self.params = kube, path, stamp, params
        self.stopped = threading.Event()
        self.version = _list_version(kube, path, **params)

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._follow()
            except (requests.RequestException, KubeError):
                if self.stopped.is_set():
                    return  # the stack is going down
                raise

    def _follow(self) -> None:
        for event in self.kube.watch(
            self.path, resource_version=self.version, timeout_seconds=30, **self.params
        ):
            now = time.monotonic()
            obj = event["object"]
            self.version = obj["metadata"].get("resourceVersion", self.version)
            if event["type"] in ("ADDED", "MODIFIED"):
                self.stamp(obj, now)
            if self.stopped.is_set():
                return


def containers_ended(pod: dict[str, Any]) -> bool:
    """The kubelet reports every container of ``pod`` terminated."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all("terminated" in (c.get("state") or {}) for c in statuses)


def _list_version(kube: Kube, path: str, **params: str) -> str:
    """The collection's resourceVersion; a CRD just established may answer 429 for a moment."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return str(kube.get(path, **params)["metadata"]["resourceVersion"])
        except KubeError as error:
            if error.status != 429 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


Stamps = dict[str, dict[str, float]]
STAMP_KINDS = ("seen", "job", "jobDone", "podDone", "ready", "failed")


def follow_imports(kubeconfig: str, namespace: str, count: int, started: Any, stop: Any,
                   results: Any) -> None:
    """Process body: watch the MediaImports, our Jobs and their pods, stamp each first
    arrival, and send
    the stamps ({kind: {import name: monotonic time}}) once `count` imports are Ready or
    Failed, or when told to stop."""
    kube = Kube.from_kubeconfig(kubeconfig)
    stamps: Stamps = {kind: {} for kind in STAMP_KINDS}
    lock = threading.Lock()
    finished = threading.Event()

    def on_job(obj: dict[str, Any], now: float) -> None:
        owner = obj["metadata"]["labels"].get("mediaimport.dev/import-name", "")
        with lock:
            stamps["job"].setdefault(owner, now)
            for cond in (obj.get("status") or {}).get("conditions") or []:
                if cond["type"] == "Complete" and cond["status"] == "True":
                    stamps["jobDone"].setdefault(owner, now)

    def on_pod(obj: dict[str, Any], now: float) -> None:
        owner = obj["metadata"]["labels"].get("mediaimport.dev/import-name", "")
        if containers_ended(obj):
            with lock:
                stamps["podDone"].setdefault(owner, now)

    def on_mi(obj: dict[str, Any], now: float) -> None:
        phase = (obj.get("status") or {}).get("phase")
        name = obj["metadata"]["name"]
        with lock:
            stamps["seen"].setdefault(name, now)
            if phase == "Ready":
                stamps["ready"].setdefault(name, now)
            elif phase == "Failed":
                stamps["failed"].setdefault(name, now)
            if len(stamps["ready"]) + len(stamps["failed"]) >= count:
                finished.set()

    watchers = [
        Watcher(
            kube,
            f"/apis/batch/v1/namespaces/{namespace}/jobs",
            on_job,
            labelSelector="app.kubernetes.io/managed-by=mediaimport-operator",
        ),
        Watcher(
            kube,
            f"/api/v1/namespaces/{namespace}/pods",
            on_pod,
            labelSelector="app.kubernetes.io/managed-by=mediaimport-operator",
        ),
        Watcher(kube, f"{GROUP}/namespaces/{namespace}/mediaimports", on_mi),
    ]
    for watcher in watchers:
        watcher.start()
    started.set()
    while not finished.wait(0.1) and not stop.is_set():
        pass
    for watcher in watchers:
        watcher.stopped.set()
    with lock:
        results.put(json.dumps(stamps))


def channel_env(work: Path) -> dict[str, str]:
    """The operator's channel where the node's pods reach it, with a key of its own."""
    keys = work / "channel-keys"
    keys.mkdir(exist_ok=True)
    (keys / "1").write_bytes(os.urandom(48))
    return {"MEDIAIMPORT_CHANNEL_KEYS_DIR": str(keys),
            "MEDIAIMPORT_CHANNEL_HOST": nodenet.HOST_IP, "MEDIAIMPORT_CHANNEL_PORT": "0"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of a process (and of its waited-for children, when asked)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_by_component(cluster: Cluster) -> dict[str, float]:
    """CPU seconds so far of each control-plane and node process, and of every pod (the
    jobs themselves; cpuacct charges a pod's usage to `kubepods`, which outlives the pod):
    on one machine they all compete for the cores."""
    components = {**cluster.plane.components, **cluster.node.components}
    seconds = {name: cpu_seconds(c.pid) for name, c in components.items()}
    usage = Path("/sys/fs/cgroup/cpuacct") / nodehost.CGROUP_PARENT / "cpuacct.usage"
    seconds["pods (the jobs)"] = int(usage.read_text()) / 1e9 if usage.exists() else 0.0
    return seconds


def stack_rss_mib(cluster: Cluster, pids: list[int]) -> float:
    """Resident memory of every process of the stack: control plane, node (with the shims
    and whatever pods still run), and the given ones (Postgres, S3, the operator)."""
    every = {c.pid for c in cluster.plane.components.values()} | set(nodehost.node_pids())
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            every |= {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
    total = 0
    for pid in every:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total / 2**20


def apply_with_kubectl(
    plane: ControlPlane, work: Path, manifests: list[dict[str, Any]]
) -> tuple[dict[str, float], float]:
    """`kubectl apply -f` of one file holding every MediaImport, as a user applies them;
    each object's creation is stamped when kubectl reports it ("... created")."""
    path = work / "imports.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}))
    # HOME: kubectl caches discovery under it; the work dir keeps ~/.kube untouched.
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "HOME": str(work)}
    kubectl = str(binary("kubectl"))
    # Discovery cached before the clock starts, as on a user's machine.
    subprocess.run([kubectl, "api-resources", "--api-group=mediaimport.dev"], env=env,
                   check=True, capture_output=True)
    created: dict[str, float] = {}
    start = time.monotonic()
    with subprocess.Popen([kubectl, "apply", "-f", str(path)], env=env,
                          stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:  # "mediaimport.mediaimport.dev/NAME created"
            now = time.monotonic()
            resource, _, verb = line.strip().partition(" ")
            if verb == "created":
                created[resource.rpartition("/")[2]] = now
    if process.returncode != 0:
        raise SystemExit(f"kubectl apply failed ({process.returncode})")
    if len(created) != len(manifests):
        raise SystemExit(f"kubectl reported {len(created)} of {len(manifests)} created")
    return created, start


def create_in_parallel(
    plane: ControlPlane, manifests: list[dict[str, Any]], creators: int
) -> tuple[dict[str, float], float]:
    """POST every MediaImport from `creators` threads at once (each connected before the
    clock starts): a harsher burst than kubectl's one object after another."""
    client = plane.kube()
    created: dict[str, float] = {}
    barrier = threading.Barrier(creators)
    namespace = manifests[0]["metadata"]["namespace"]

    def connect(_: int) -> None:
        # Each thread opens its connection (TLS handshake) before the clock starts: the
        # benchmark measures the operator, not this client.
        client.get(f"{GROUP}/namespaces/{namespace}/mediaimports", limit="1")
        barrier.wait(30)

    def create(manifest: dict[str, Any]) -> None:
        client.create(f"{GROUP}/namespaces/{namespace}/mediaimports", manifest)
        created[manifest["metadata"]["name"]] = time.monotonic()

    with ThreadPoolExecutor(creators) as pool:
        list(pool.map(connect, range(creators)))
        start = time.monotonic()
        list(pool.map(create, manifests))
    return created, start


def create_one_at_a_time(
    plane: ControlPlane, manifests: list[dict[str, Any]], timeout: float
) -> tuple[dict[str, float], float]:
    """POST each MediaImport once the previous one is Ready or Failed."""
    client = plane.kube()
    namespace = manifests[0]["metadata"]["namespace"]
    path = f"{GROUP}/namespaces/{namespace}/mediaimports"
    client.get(path, limit="1")  # connected before the clock starts
    created: dict[str, float] = {}
    start = time.monotonic()
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        created[name] = time.monotonic()
        client.create(path, manifest)
        deadline = time.monotonic() + timeout
        while (client.get(f"{path}/{name}").get("status") or {}).get("phase") not in (
            "Ready",
            "Failed",
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} neither Ready nor Failed after {timeout} s")
            time.sleep(0.05)
    return created, start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--apply", choices=("kubectl", "parallel", "sequential"), default="kubectl",
        help="how the MediaImports are created: `kubectl apply -f` of one file (default), "
        "POSTs from --creators threads at once, or one at a time",
    )
    parser.add_argument("--creators", type=int, default=32)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mediaimport-bench-op-"))
    for parent in [work, *work.parents]:  # Postgres runs as `postgres` under root
        if parent != Path("/") and os.geteuid() == 0:
            parent.chmod(parent.stat().st_mode | 0o005)
    images = node_images()
    cluster = Cluster(work / "cluster", pause_image=PAUSE_IMAGE, images=images)
    cluster.start()
    plane = cluster.plane
    kube = plane.kube()
    postgres = PostgresServer(work / "postgres")
    postgres.start()
    s3 = S3Server(work / "s3", host=nodenet.HOST_IP)  # the pods upload to it
    s3.start()
    s3.create_bucket("bench")
    install_crd(kube)
    namespace = "bench"
    kube.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
    kube.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {"metadata": {"name": "mediaimport-s3"}, "stringData": s3.env()},
    )
    image = make_image(work)
    operator: subprocess.Popen[bytes] | None = None
    try:
        with serve_directory(image.parent, nodenet.HOST_IP) as base_url:
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIAIMPORT_"))
            }
            env.update(
                {
                    "KUBECONFIG": str(plane.kubeconfig),
                    "MEDIAIMPORT_NAMESPACES": namespace,
                    "MEDIAIMPORT_BUCKET": "bench",
                    "MEDIAIMPORT_DATABASE_URL": postgres.url,
                    "MEDIAIMPORT_ALLOWED_NETWORKS": f"{nodenet.HOST_IP}/32",
                    "MEDIAIMPORT_JOB_IMAGE": job_image(images),
                    "MEDIAIMPORT_JOB_IMAGE_PULL_POLICY": "Never",
                    "MEDIAIMPORT_HTTP_PORT": "0",
                    "MEDIAIMPORT_LEASE_NAMESPACE": namespace,
                    "MEDIAIMPORT_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
                    "MEDIAIMPORT_CONCURRENCY": "32",
                    "PYTHONUNBUFFERED": "1",
                    **channel_env(work),
                }
            )
            log = (work / "operator.log").open("wb")
            operator = subprocess.Popen(
                [sys.executable, "-m", "mediaimport_operator"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            time.sleep(4)  # start-up: leader election and kopf's initial listing

            spawned = multiprocessing.get_context("spawn")
            started, stop, results = spawned.Event(), spawned.Event(), spawned.Queue()
            follower = spawned.Process(
                target=follow_imports,
                args=(str(plane.kubeconfig), namespace, args.count, started, stop, results),
                daemon=True,
            )
            follower.start()
            if not started.wait(60):
                raise SystemExit("the watching process did not start")
            cpu_before = cpu_by_component(cluster)

            names = [f"bench-{i:03d}-{uuid.uuid4().hex[:4]}" for i in range(args.count)]
            manifests = [
                {
                    "apiVersion": "mediaimport.dev/v1alpha1",
                    "kind": "MediaImport",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"url": f"{base_url}/bench.png", "userId": "bench", "type": "image"},
                }
                for name in names
            ]
            if args.apply == "kubectl":
                created, start = apply_with_kubectl(plane, work, manifests)
            elif args.apply == "sequential":
                created, start = create_one_at_a_time(plane, manifests, 120)
            else:
                created, start = create_in_parallel(plane, manifests, args.creators)
            create_s = max(created.values(), default=start) - start
            deadline = start + args.timeout
            stamped: Stamps | None = None
            while stamped is None:
                if operator.poll() is not None:
                    raise SystemExit(
                        f"the operator exited ({operator.returncode}); see {work / 'operator.log'}"
                    )
                if time.monotonic() > deadline:
                    stop.set()  # report what arrived so far
                if not follower.is_alive() and results.empty():
                    raise SystemExit("the watching process died")
                with contextlib.suppress(queue.Empty):
                    stamped = json.loads(results.get(timeout=0.5))
            follower.join(10)
            mi_seen, job_seen, job_done, pod_done, ready, failed = (
                stamped[k] for k in STAMP_KINDS
            )
            wall = max([*ready.values(), *failed.values(), start]) - start
            rss = peak_rss_mib(operator.pid)
            cpu = cpu_seconds(operator.pid)
            component_cpu = {
                name: round(seconds - cpu_before[name], 1)
                for name, seconds in cpu_by_component(cluster).items()
            }
            total_rss = stack_rss_mib(cluster, [operator.pid, postgres.pid or 0, s3.pid or 0])

        latencies = [job_seen[n] - created[n] for n in names if n in job_seen]
        # The raw stamps (seconds from the first create), for a timeline of the run.
        stamps = {
            n: {k: round(d[n] - start, 3) for k, d in
                (("created", created), ("seen", mi_seen), ("job", job_seen),
                 ("podDone", pod_done), ("jobDone", job_done), ("ready", ready)) if n in d}
            for n in names
        }
        (work / "stamps.json").write_text(json.dumps(stamps, indent=1))
        # Where the latency goes: the API server's watch delivering the new MediaImport
        # (to this process, as to the operator), then the operator's own part.
        delivery = [mi_seen[n] - created[n] for n in names if n in mi_seen]
        reaction = [job_seen[n] - mi_seen[n] for n in names if n in job_seen and n in mi_seen]
        overhead = total = 0.0
        for name in names:
            if name in ready and name in pod_done and name in job_seen:
                overhead += (job_seen[name] - created[name]) + (ready[name] - pod_done[name])
                total += ready[name] - created[name]
        to_ready = [ready[n] - created[n] for n in names if n in ready and n in created]
        pod_to_ready = [ready[n] - pod_done[n] for n in names if n in ready and n in pod_done]
        job_to_ready = [ready[n] - job_done[n] for n in names if n in ready and n in job_done]
        share = overhead / total if total else float("nan")
        figures = {
            "count": args.count,
            "ready": len(ready),
            "failed": len(failed),
            "apply": f"parallel x{args.creators}" if args.apply == "parallel" else args.apply,
            "create_all_s": round(create_s, 2),
            "wall_s": round(wall, 2),
            "imports_per_s": round(len(ready) / wall, 2) if wall else None,
            "create_to_job_p50_s": round(percentile(latencies, 0.5), 3) if latencies else None,
            "create_to_job_p99_s": round(percentile(latencies, 0.99), 3) if latencies else None,
            "create_to_watch_p50_s": round(percentile(delivery, 0.5), 3) if delivery else None,
            "watch_to_job_p50_s": round(percentile(reaction, 0.5), 3) if reaction else None,
            "watch_to_job_p99_s": round(percentile(reaction, 0.99), 3) if reaction else None,
            "operator_peak_rss_mib": round(rss, 1),
            "stack_rss_mib": round(total_rss, 1),
            "operator_cpu_s": round(cpu, 1),
            "create_to_ready_p50_s": round(percentile(to_ready, 0.5), 3) if to_ready else None,
            "create_to_ready_p90_s": round(percentile(to_ready, 0.9), 3) if to_ready else None,
            "operator_overhead_share": round(share, 4),
            "pod_end_to_ready_p50_s": (
                round(percentile(pod_to_ready, 0.5), 3) if pod_to_ready else None
            ),
            "job_complete_to_ready_p50_s": (
                round(percentile(job_to_ready, 0.5), 3) if job_to_ready else None
            ),
        }
        targets = {
            "create_to_job_p50_s": 0.3,
            "create_to_job_p99_s": 2.0,
            "operator_overhead_share": 0.10,
        }
        print(f"{'metric':28} {'value':>10}  target")
        for key, value in figures.items():
            target = targets.get(key)
            verdict = (
                ""
                if target is None
                else ("ok" if value is not None and value <= target else "MISSED")
            )
            print(f"{key:28} {value!s:>10}  {'' if target is None else f'<= {target} {verdict}'}")
        print(f"{'cpu seconds during the run [info]':28}")
        for name, seconds in component_cpu.items():
            print(f"  {name:26} {seconds:>10}")
        print(json.dumps(figures))
        return 0
    finally:
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(20)
            except subprocess.TimeoutExpired:
                operator.kill()
        s3.stop()
        postgres.stop()
        cluster.stop()
        print(f"(work dir {work}; the node's logs are under {work / 'cluster' / 'node'})",
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
