"""Benchmark: the operator started in a cluster that already holds many finished MediaImports.

    python bench/operator_scale.py                       # 0, 1,000 and 5,000 finished imports
    python bench/operator_scale.py --sizes 0,200 --probes 10

Sets up a private stack (control plane, Postgres; no node agent: no pod runs, only Jobs are
created) and, for each size N in turn, brings the namespace to N finished MediaImports —
created with their status (Ready, recorded, a result), as an operator leaves them; no Jobs —
and then starts the operator (`python -m mediaimport_operator`, leader election on) and
measures, with a watch on the Jobs in a thread of this process stamping each event with the
machine's monotonic clock:

* ready_s: from the operator's start to the Job of an import created at that moment (the
  operator has to list the N finished imports before it gets to the new one). Target ≤ 30 s
  at 5,000.
* create_to_job_p50_s: then `--probes` new imports created one after another (each once the
  previous one's Job exists): creation (its POST returned) → its Job's ADDED event. Target
  ≤ 0.3 s at 5,000.
* rss_mib: the operator's peak RSS (VmHWM) over its whole run at that size (before the
  burst, if any). Targets: ≤ 150 MiB at 5,000 and no more than +10 % over the empty
  cluster's (N = 0).
* locks_after: the operator's per-import locks once every new import was handled (its
  `mediaimport_operator_import_locks` gauge); target 0 at 5,000: the operator keeps nothing
  of the imports it is done with.
* with `--burst M` (default 0: none), then M new imports POSTed from 32 threads at once (each
  connected before the clock starts), as `operator_throughput.py --apply parallel` does but
  with no node (no pod runs): burst_p50_s / burst_p99_s, creation (its POST returned) → its
  Job's ADDED event; `--concurrency` sets the operator's MEDIAIMPORT_CONCURRENCY (the
  throughput benchmark runs it at 32).

Prints a table, then one JSON object as the last line of stdout with `rss_mib_N`,
`locks_after_N`, `ready_s_N`
and `create_to_job_p50_s_N` (and `burst_p50_s_N`, `burst_p99_s_N`) for every size, and
`rss_growth_5000` (rss_mib_5000 / rss_mib_0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "devstack"))
sys.path.insert(0, str(REPO / "tests" / "operator"))  # the finished imports' factory

from mediaimport_dev.controlplane import ControlPlane  # noqa: E402
from mediaimport_dev.crd import install_crd  # noqa: E402
from mediaimport_dev.kube import Kube  # noqa: E402
from mediaimport_dev.postgres import PostgresServer  # noqa: E402
from operator_support import create_finished  # noqa: E402
from operator_throughput import GROUP, Watcher, peak_rss_mib, percentile  # noqa: E402

NAMESPACE = "scale"


def fill(kube: Kube, have: int, want: int) -> None:
    """Bring the namespace from `have` to `want` finished imports (create, then status)."""
    create_finished(kube, NAMESPACE, [f"done-{index:05d}" for index in range(have, want)])


def new_import(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"url": "https://replicate.delivery/pbxt/new/out.mp4", "userId": "bench",
                 "type": "video"},
    }


class JobStamps:
    """The local time each import's first Job event arrived (a watch in a thread)."""

    def __init__(self, kube: Kube) -> None:
        self.seen: dict[str, float] = {}
        self.changed = threading.Condition()
        self.watcher = Watcher(kube, f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", self._stamp,
                               labelSelector="app.kubernetes.io/managed-by=mediaimport-operator")
        self.watcher.start()

    def _stamp(self, job: dict[str, Any], now: float) -> None:
        owner = job["metadata"]["labels"].get("mediaimport.dev/import-name", "")
        with self.changed:
            self.seen.setdefault(owner, now)
            self.changed.notify_all()

    def wait(self, name: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.changed:
            while name not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"no Job for {name} within {timeout:.0f} s")
                self.changed.wait(left)
            return self.seen[name]

    def stop(self) -> None:
        self.watcher.stopped.set()


def operator_env(plane: ControlPlane, postgres: PostgresServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIAIMPORT_"))}
    env.update({
        "KUBECONFIG": str(plane.kubeconfig),
        "MEDIAIMPORT_NAMESPACES": NAMESPACE,
        "MEDIAIMPORT_BUCKET": "bench",
        "MEDIAIMPORT_DATABASE_URL": postgres.url,
        "MEDIAIMPORT_HTTP_PORT": "0",
        "MEDIAIMPORT_HTTP_HOST": "127.0.0.1",
        # No node runs the Jobs here: no channel to hand them.
        "MEDIAIMPORT_STORAGE_ACCESS": "credentials",
        "MEDIAIMPORT_LEASE_NAMESPACE": NAMESPACE,
        "MEDIAIMPORT_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def gone(kube: Kube, timeout: float = 300) -> None:
    """Wait until the garbage collector took the deleted imports' Jobs and pods: the next
    size's operator would otherwise list and follow them (and count them in its RSS)."""
    selector = {"labelSelector": "app.kubernetes.io/managed-by=mediaimport-operator"}
    deadline = time.monotonic() + timeout
    while (kube.get(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", **selector)["items"]
           or kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods", **selector)["items"]):
        if time.monotonic() > deadline:
            raise SystemExit("the deleted imports' Jobs and pods are still there")
        time.sleep(1)


def burst(kube: Kube, jobs: JobStamps, names: list[str], creators: int = 32) -> list[float]:
    """Create the imports from `creators` threads at once; each one's create→Job latency."""
    path = f"{GROUP}/namespaces/{NAMESPACE}/mediaimports"
    created: dict[str, float] = {}
    barrier = threading.Barrier(creators)

    def connect(_: int) -> None:
        kube.get(path, limit="1")  # the TLS handshake before the clock starts
        barrier.wait(30)

    def create(name: str) -> None:
        kube.create(path, new_import(name))
        created[name] = time.monotonic()

    with ThreadPoolExecutor(creators) as pool:
        list(pool.map(connect, range(creators)))
        list(pool.map(create, names))
    return [jobs.wait(name, timeout=300) - created[name] for name in names]


def import_locks(log: Path) -> int:
    """The operator's per-import locks now (its /metrics; the port is in its log)."""
    port = next(json.loads(line)["port"] for line in log.read_text().splitlines()
                if line.startswith("{") and "health and metrics server listening" in line)
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return int(next(float(line.split()[-1]) for line in text.splitlines()
                    if line.startswith("mediaimport_operator_import_locks ")))


def measure(kube: Kube, env: dict[str, str], log: Path, size: int, probes: int,
            burst_size: int = 0) -> dict[str, Any]:
    """Start the operator over `size` finished imports; its readiness, latency and memory."""
    path = f"{GROUP}/namespaces/{NAMESPACE}/mediaimports"
    jobs = JobStamps(kube)
    with log.open("wb") as out:
        started = time.monotonic()
        operator = subprocess.Popen([sys.executable, "-m", "mediaimport_operator"], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
    try:
        first = f"first-{size}"
        kube.create(path, new_import(first))
        ready_s = jobs.wait(first, timeout=300) - started
        latencies = []
        for index in range(probes):
            name = f"probe-{size}-{index:02d}"
            kube.create(path, new_import(name))
            created = time.monotonic()
            latencies.append(jobs.wait(name, timeout=60) - created)
        time.sleep(2)  # whatever the start-up left to do, within the peak
        if operator.poll() is not None:
            raise SystemExit(f"the operator exited ({operator.returncode}); see {log}")
        rss = peak_rss_mib(operator.pid)
        bursting = [f"burst-{size}-{i:04d}" for i in range(burst_size)]
        burst_latencies = burst(kube, jobs, bursting) if bursting else []
        time.sleep(2)  # the last imports' status writes
        locks = import_locks(log)
    finally:
        jobs.stop()
        operator.terminate()
        try:
            operator.wait(30)
        except subprocess.TimeoutExpired:
            operator.kill()
    # The new imports go again, so that the next size holds only finished ones.
    for name in [first, *(f"probe-{size}-{i:02d}" for i in range(probes)), *bursting]:
        kube.delete(f"{path}/{name}")
    gone(kube)
    figures = {"rss_mib": round(rss, 1), "locks_after": locks, "ready_s": round(ready_s, 2),
               "create_to_job_p50_s": round(percentile(latencies, 0.5), 3),
               "create_to_job_max_s": round(max(latencies), 3)}
    if burst_latencies:
        figures["burst_p50_s"] = round(percentile(burst_latencies, 0.5), 3)
        figures["burst_p99_s"] = round(percentile(burst_latencies, 0.99), 3)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0,1000,5000",
                        help="comma-separated numbers of finished imports, ascending")
    parser.add_argument("--probes", type=int, default=20, help="new imports timed per size")
    parser.add_argument("--burst", type=int, default=0,
                        help="then this many new imports created at once from 32 threads")
    parser.add_argument("--concurrency", type=int, help="the operator's MEDIAIMPORT_CONCURRENCY")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    work = Path(tempfile.mkdtemp(prefix="mediaimport-bench-scale-"))
    for parent in [work, *work.parents]:  # Postgres runs as `postgres` under root
        if parent != Path("/") and os.geteuid() == 0:
            parent.chmod(parent.stat().st_mode | 0o005)
    plane = ControlPlane(work / "controlplane")
    plane.start()
    postgres = PostgresServer(work / "postgres")
    postgres.start()
    try:
        kube = plane.kube()
        install_crd(kube)
        kube.create("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        env = operator_env(plane, postgres)
        if args.concurrency:
            env["MEDIAIMPORT_CONCURRENCY"] = str(args.concurrency)
        figures: dict[str, Any] = {}
        have = 0
        for size in sizes:
            began = time.monotonic()
            fill(kube, have, size)
            have = size
            print(f"{size} finished imports in place ({time.monotonic() - began:.0f} s)",
                  file=sys.stderr)
            result = measure(kube, env, work / f"operator-{size}.log", size, args.probes,
                             args.burst)
            for key, value in result.items():
                figures[f"{key}_{size}"] = value
        if 0 in sizes and 5000 in sizes:
            figures["rss_growth_5000"] = round(figures["rss_mib_5000"] / figures["rss_mib_0"], 3)
        targets = {"rss_mib_5000": 150, "ready_s_5000": 30, "create_to_job_p50_s_5000": 0.3,
                   "rss_growth_5000": 1.10, "locks_after_5000": 0}
        print(f"{'metric':28} {'value':>10}  target")
        for key, value in figures.items():
            target = targets.get(key)
            verdict = "" if target is None else ("ok" if value <= target else "MISSED")
            print(f"{key:28} {value!s:>10}  {'' if target is None else f'<= {target} {verdict}'}")
        print(json.dumps(figures))
        return 0
    finally:
        postgres.stop()
        plane.stop()
        print(f"(work dir {work})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
