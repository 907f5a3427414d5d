"""Benchmark: the local cluster (control plane and the real node).

    python bench/controlplane.py            # build times, `up`, Job round trips, 50 Jobs at once
    python bench/controlplane.py --cold     # also rebuild every binary into an empty cache
                                            # (10-25 min on 2 cores; the Go module cache stays)

* binary build, cold: the times `scripts/build-binaries.sh` recorded when it last really built
  (`<cache>/build-times.tsv`), or measured now with `--cold`; warm: the script run again;
* warm start of `mediaimport-dev up` (network, control plane, node with its images already
  built and imported, Postgres, S3, and the chart's release: the operator's two replicas and the
  API as pods) until it returns with the node Ready, a leader and the API answering, median of
  `--up-runs` (target <= 20 s; a start that waited for another stack's node is measured again);
  then `down`;
* round trip of a trivial Job (the job image running `true`, a real pod) from create to the
  `Complete` condition, seen through a watch, p50 of 20 (target <= 2.5 s);
* 50 trivial Jobs created at once until all are `Complete` (target >= 10 jobs/s);
* resident memory of the node's processes (kubelet, containerd, kube-proxy, the shims) and of
  the whole stack, after the burst.

Prints a table, then one JSON object as the last line of stdout. Missed targets are
reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "devstack"))

import psutil  # noqa: E402
from mediaimport_dev import nodehost  # noqa: E402
from mediaimport_dev.binaries import cache_root  # noqa: E402
from mediaimport_dev.kube import Kube  # noqa: E402
from operator_throughput import Watcher, containers_ended  # noqa: E402

CLI = str(Path(sys.executable).parent / "mediaimport-dev")
WAITED = "waiting for the machine's one local node"


def build_times_recorded() -> dict[str, int]:
    """Latest recorded cold build time per component (seconds)."""
    times: dict[str, int] = {}
    path = cache_root() / "build-times.tsv"
    if path.exists():
        for line in path.read_text().splitlines():
            _, label, seconds = line.split("\t")
            times[label] = int(seconds)
    return times


def run_build(env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    subprocess.run(
        [str(REPO / "scripts" / "build-binaries.sh")],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def cold_build() -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix="mediaimport-cold-") as cache:
        env = {**os.environ, "MEDIAIMPORT_CACHE": cache}
        run_build(env)
        previous, os.environ["MEDIAIMPORT_CACHE"] = os.environ.get("MEDIAIMPORT_CACHE"), cache
        try:
            return build_times_recorded()
        finally:
            if previous is None:
                os.environ.pop("MEDIAIMPORT_CACHE")
            else:
                os.environ["MEDIAIMPORT_CACHE"] = previous


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "--home", str(home), *args], capture_output=True, text=True, check=True
    )


def job(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": image,
                                    "imagePullPolicy": "Never", "command": ["true"]}],
                }
            },
        },
    }


def complete(obj: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Complete" and c["status"] == "True"
        for c in obj.get("status", {}).get("conditions", [])
    )


def wait_complete(
    kube: Kube, path: str, names: set[str], since_version: str, done: dict[str, float]
) -> None:
    """Record the time each named Job is seen Complete, through a watch."""
    version = since_version
    while names - done.keys():
        for event in kube.watch(path, resource_version=version, timeout_seconds=120):
            obj = event["object"]
            version = obj["metadata"]["resourceVersion"]
            name = obj["metadata"].get("name", "")
            if name in names and name not in done and complete(obj):
                done[name] = time.monotonic()
                if not names - done.keys():
                    return


class PodStages:
    """When each Job's pod reaches the stages of its way, seen through a watch of pods.

    ``exited``: the kubelet reports the container terminated (the pod still running its
    sandbox); ``succeeded``: the pod's phase is Succeeded (sandbox stopped). Between the
    last one and the Job's ``Complete`` is the Job controller's part.
    """

    def __init__(self, kube: Kube, ns: str) -> None:
        self.stamps: dict[tuple[str, str], float] = {}
        self.watcher = Watcher(kube, f"/api/v1/namespaces/{ns}/pods", self._stamp)
        self.watcher.start()

    def _stamp(self, pod: dict[str, Any], now: float) -> None:
        job_name = pod["metadata"].get("labels", {}).get("job-name")
        if job_name is None:
            return
        if containers_ended(pod):
            self.stamps.setdefault((job_name, "exited"), now)
        if pod.get("status", {}).get("phase") == "Succeeded":
            self.stamps.setdefault((job_name, "succeeded"), now)


def round_trips(
    kube: Kube, ns: str, count: int, image: str
) -> tuple[list[float], dict[str, float]]:
    """Create→Complete of each Job, one after another, and the median of each stage."""
    path = f"/apis/batch/v1/namespaces/{ns}/jobs"
    pods = PodStages(kube, ns)
    times = []
    stages: dict[str, list[float]] = {"to_exited": [], "exited_to_succeeded": [],
                                      "succeeded_to_complete": []}
    for i in range(count):
        name = f"rt-{i}"
        started = time.monotonic()
        created = kube.create(path, job(name, image))
        done: dict[str, float] = {}
        wait_complete(kube, path, {name}, created["metadata"]["resourceVersion"], done)
        times.append(done[name] - started)
        exited = pods.stamps.get((name, "exited"))
        succeeded = pods.stamps.get((name, "succeeded"))
        if exited is not None and succeeded is not None:
            stages["to_exited"].append(exited - started)
            stages["exited_to_succeeded"].append(succeeded - exited)
            stages["succeeded_to_complete"].append(done[name] - succeeded)
    pods.watcher.stopped.set()
    return times, {k: round(statistics.median(v), 3) for k, v in stages.items() if v}


def busy_cpu_seconds() -> float:
    """CPU seconds this machine has spent on anything but idling, since boot."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq)


def burst(kube: Kube, ns: str, count: int, image: str) -> float:
    path = f"/apis/batch/v1/namespaces/{ns}/jobs"
    version = kube.get(path)["metadata"]["resourceVersion"]
    started = time.monotonic()
    names = set()
    for i in range(count):
        names.add(kube.create(path, job(f"burst-{i}", image))["metadata"]["name"])
    done: dict[str, float] = {}
    wait_complete(kube, path, names, version, done)
    return max(done.values()) - started


def _rss_mib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    return round(total / 2**20)


def memory(home: Path) -> tuple[dict[str, int], int]:
    """RSS of the node's processes (by name) and of every process of the stack."""
    node = {}
    for name, pids in _node_processes(nodehost.node_pids()).items():
        node[name] = _rss_mib(pids)
    state = json.loads((home / "stack.json").read_text())["components"]
    stack = [state["network"]["lock_holder"]]
    stack += [s["pid"] for s in state.values() if "pid" in s]
    plane = json.loads((home / "controlplane" / "controlplane.json").read_text())
    stack += [c["pid"] for c in plane["components"].values()]
    children = [c.pid for pid in stack if psutil.pid_exists(pid)
                for c in psutil.Process(pid).children(recursive=True)]
    return node, _rss_mib(sorted({*stack, *children, *nodehost.node_pids()}))


def _node_processes(pids: list[int]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for pid in pids:
        try:
            name = psutil.Process(pid).name()
        except psutil.Error:
            continue
        key = name if name in ("kubelet", "containerd", "kube-proxy") else (
            "shims" if name.startswith("containerd-shim") else "pods")
        groups.setdefault(key, []).append(pid)
    return groups


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cold", action="store_true", help="rebuild binaries in an empty cache")
    parser.add_argument("--up-runs", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=20)
    parser.add_argument("--burst", type=int, default=50)
    args = parser.parse_args()

    cold = cold_build() if args.cold else build_times_recorded()
    warm_build = run_build()

    up_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mediaimport-bench-") as tmp:
        home = Path(tmp) / "home"
        try:
            waited = 0
            while len(up_times) < args.up_runs:
                cli(home, "down")
                started = time.monotonic()
                out = cli(home, "up").stdout
                if WAITED in out and waited < args.up_runs:
                    waited += 1  # another stack had the node meanwhile: not a start time
                    continue
                up_times.append(time.monotonic() - started)
            env = json.loads((home / "stack.json").read_text())["env"]
            image = env["MEDIAIMPORT_JOB_IMAGE"]
            kube = Kube.from_kubeconfig(env["KUBECONFIG"])
            ns = f"bench-{uuid.uuid4().hex[:6]}"
            kube.create("/api/v1/namespaces", {"metadata": {"name": ns}})
            trips, stages = round_trips(kube, ns, args.round_trips, image)
            cpu_before = busy_cpu_seconds()
            burst_seconds = burst(kube, ns, args.burst, image)
            burst_cpu = busy_cpu_seconds() - cpu_before
            node_rss, stack_rss = memory(home)
            started = time.monotonic()
            cli(home, "down")
            down_seconds = time.monotonic() - started
        finally:
            subprocess.run([CLI, "--home", str(home), "down"], capture_output=True, check=False)

    up = statistics.median(up_times)
    p50 = statistics.median(trips)
    p90 = statistics.quantiles(trips, n=10)[-1] if len(trips) >= 2 else p50
    rate = args.burst / burst_seconds
    cores = os.cpu_count() or 1
    rows = [
        (
            "binary build, cold (recorded)" if not args.cold else "binary build, cold",
            ", ".join(f"{k} {v} s" for k, v in cold.items()) or "not recorded",
            "",
        ),
        ("binary build, warm", f"{warm_build:.1f} s", ""),
        (
            f"mediaimport-dev up, warm (median of {len(up_times)})",
            f"{up:.1f} s",
            "<= 20 s " + ("ok" if up <= 20 else "MISSED"),
        ),
        (
            f"Job create -> Complete, p50 of {len(trips)}",
            f"{p50:.2f} s (p90 {p90:.2f} s)",
            "<= 2.5 s " + ("ok" if p50 <= 2.5 else "MISSED"),
        ),
        (
            "  of which (medians): create -> container exited, -> pod Succeeded, -> Complete",
            " / ".join(f"{v:.2f} s" for v in stages.values()),
            "",
        ),
        (
            f"{args.burst} Jobs at once -> all Complete",
            f"{burst_seconds:.1f} s = {rate:.1f} jobs/s",
            ">= 10 jobs/s " + ("ok" if rate >= 10 else "MISSED"),
        ),
        (
            "  CPU of the whole machine during the burst",
            f"{burst_cpu:.1f} s of {cores * burst_seconds:.1f} s on {cores} cores"
            f" = {burst_cpu / args.burst:.2f} s per Job",
            "",
        ),
        ("RSS after the burst", ", ".join(f"{k} {v} MiB" for k, v in node_rss.items())
         + f"; whole stack {stack_rss} MiB", ""),
        ("mediaimport-dev down", f"{down_seconds:.1f} s", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<40} {target}")
    print(
        json.dumps(
            {
                "bench": "controlplane",
                "cold_build_seconds": cold,
                "warm_build_seconds": round(warm_build, 2),
                "warm_up_s": round(up, 2),
                "up_runs_s": [round(t, 2) for t in up_times],
                "job_roundtrip_p50_s": round(p50, 3),
                "job_roundtrip_p90_s": round(p90, 3),
                "job_roundtrip_stages_p50_s": stages,
                "burst_jobs": args.burst,
                "burst_s": round(burst_seconds, 2),
                "jobs_per_s_50": round(rate, 2),
                "burst_cpu_s_per_job": round(burst_cpu / args.burst, 3),
                "node_rss_mib": node_rss,
                "stack_rss_mib": stack_rss,
                "down_s": round(down_seconds, 2),
                "targets_met": {"warm_up": up <= 20, "job_roundtrip": p50 <= 2.5,
                                "jobs_per_s": rate >= 10},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
