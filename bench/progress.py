"""Benchmark: import progress through the channel, as a watch of MediaImports sees it.

    python bench/progress.py                 # one slow import, then 200 imports at once, twice
    python bench/progress.py --count 50      # a smaller burst
    python bench/progress.py --skip-burst    # the slow import only

Sets up a private cluster (control plane and the real node, which runs the job image's pods),
Postgres, S3 and an origin that paces what it serves, all where the node's pods reach them,
and the operator as a process serving its channel there (brokered: the pods hold no S3
credential).

Measures
* the slow import: a 20 MB video served at 2 MB/s (~10 s). A watch of the MediaImport
  records every status.progress it sees, stamped when the event arrives.
  - progress_updates: distinct percents seen (target >= 5);
  - progress_lag_p50_s / _max_s: the pod's report (progress.updatedAt, the pod's clock —
    the same machine's) -> the event carrying it arriving in the watch (target p50 <= 1.5 s;
    the operator writes an import's progress at most every 2 s, at once when the step
    changes).
* the burst, twice in one run, side by side: `--count` imports (default 200) POSTed from 32
  threads at once, each of a 600 kB video paced at 200 kB/s (~3 s of download, so each pod
  reports a few times), first without progress reports (`MEDIAIMPORT_PROGRESS_INTERVAL=0`
  in the pods) and then with them (once a second), each in a namespace of its own with a
  fresh operator watching only it:
  - operator_cpu_s_per_import_progress / _quiet: the operator's user+system CPU over the
    run, per import;
  - create_to_job_p99_s_progress / _quiet and their ratio (target <= 1.2: progress never
    delays Job creation).

Prints a table, then one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "devstack"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from mediaimport_dev import nodenet  # noqa: E402
from mediaimport_dev.cluster import Cluster, node_images  # noqa: E402
from mediaimport_dev.crd import install_crd  # noqa: E402
from mediaimport_dev.images import PAUSE_IMAGE, job_image  # noqa: E402
from mediaimport_dev.kube import Kube  # noqa: E402
from mediaimport_dev.postgres import PostgresServer  # noqa: E402
from mediaimport_dev.s3server import S3Server  # noqa: E402
from operator_throughput import (  # noqa: E402
    GROUP,
    Watcher,
    channel_env,
    cpu_seconds,
    create_in_parallel,
    follow_imports,
    percentile,
)
from support.origin import Origin, serve  # noqa: E402

SLOW_BYTES, SLOW_RATE = 20_000_000, 2_000_000
BURST_BYTES, BURST_RATE = 600_000, 200_000
NAMESPACE = "bench"


def make_video(path: Path, size: int) -> Path:
    """A valid H.264 MP4 of about ``size`` bytes (its bitrate chosen for 8 s)."""
    if path.exists():
        return path
    rate = size  # bits per second: size * 8 bits over 8 s
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=1280x720:rate=30", "-vf", "noise=alls=30:allf=t", "-t", "8",
         "-c:v", "libx264", "-preset",
         "ultrafast", "-b:v", str(rate), "-maxrate", str(rate), "-bufsize", str(rate),
         "-movflags", "+faststart", str(path)],
        check=True, timeout=300,
    )
    return path


def start_operator(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The operator, once it leads and has listed the imports (its /readyz)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**env, "MEDIAIMPORT_HTTP_HOST": "127.0.0.1", "MEDIAIMPORT_HTTP_PORT": str(port)}
    with log.open("ab") as out:
        operator = subprocess.Popen([sys.executable, "-m", "mediaimport_operator"], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        if operator.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the operator did not start; see {log}")
        with contextlib.suppress(requests.RequestException):
            ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if ready.ok and ready.json().get("role") == "leader":
                return operator
        time.sleep(0.2)


def stop_operator(operator: subprocess.Popen[bytes]) -> None:
    operator.terminate()
    try:
        operator.wait(20)
    except subprocess.TimeoutExpired:
        operator.kill()


def manifest(name: str, url: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "mediaimport.dev/v1alpha1", "kind": "MediaImport",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"url": url, "userId": "bench", "type": "video"}}


def slow_import(kube: Kube, origin: Origin, video: Path) -> dict[str, Any]:
    """One import of a slow origin; what a watch sees of its progress."""
    name = f"slow-{uuid.uuid4().hex[:6]}"
    stored = origin.add(video, "slow.mp4")
    seen: list[tuple[float, dict[str, Any]]] = []
    done = threading.Event()
    phase: list[str] = []

    def on_mi(obj: dict[str, Any], _now: float) -> None:
        if obj["metadata"]["name"] != name:
            return
        status = obj.get("status") or {}
        arrived = time.time()
        if status.get("progress"):
            seen.append((arrived, status["progress"]))
        if status.get("phase") in ("Ready", "Failed"):
            phase.append(status["phase"])
            done.set()

    watcher = Watcher(kube, f"{GROUP}/namespaces/{NAMESPACE}/mediaimports", on_mi)
    watcher.start()
    kube.create(f"{GROUP}/namespaces/{NAMESPACE}/mediaimports",
                manifest(name, origin.url(f"/paced/{stored}?rate={SLOW_RATE}")))
    if not done.wait(180):
        raise SystemExit("the slow import did not finish within 180 s")
    watcher.stopped.set()
    percents = {p["percent"] for _, p in seen if p.get("percent") is not None}
    lags: dict[str, float] = {}
    for arrived, progress in seen:
        stamp = progress.get("updatedAt")
        if stamp and stamp not in lags:
            reported = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            lags[stamp] = arrived - reported
    values = sorted(lags.values())
    return {
        "slow_phase": phase[0],
        "progress_updates": len(percents),
        "progress_lag_p50_s": round(percentile(values, 0.5), 3) if values else None,
        "progress_lag_max_s": round(max(values), 3) if values else None,
    }


def namespace_with_s3(kube: Kube, name: str, s3: S3Server) -> str:
    kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    kube.create(f"/api/v1/namespaces/{name}/secrets",
                {"metadata": {"name": "mediaimport-s3"}, "stringData": s3.env()})
    return name


def burst(cluster: Cluster, env: dict[str, str], log: Path, origin: Origin, video: Path,
          count: int, *, namespace: str, progress: bool) -> dict[str, float]:
    """``count`` imports at once in a namespace of their own, with a fresh operator that
    watches only it (the previous run's finished pods stay, idle, elsewhere); its CPU and
    create->Job latency."""
    env = {**env, "MEDIAIMPORT_NAMESPACES": namespace}
    extra = json.loads(env.get("MEDIAIMPORT_JOB_EXTRA_ENV") or "{}")
    extra["MEDIAIMPORT_PROGRESS_INTERVAL"] = "1" if progress else "0"
    env["MEDIAIMPORT_JOB_EXTRA_ENV"] = json.dumps(extra)
    operator = start_operator(env, log)
    spawned = multiprocessing.get_context("spawn")
    started, stop, results = spawned.Event(), spawned.Event(), spawned.Queue()
    follower = spawned.Process(target=follow_imports, daemon=True, args=(
        str(cluster.plane.kubeconfig), namespace, count, started, stop, results))
    follower.start()
    try:
        if not started.wait(60):
            raise SystemExit("the watching process did not start")
        stored = origin.add(video, "burst.mp4")
        url = origin.url(f"/paced/{stored}?rate={BURST_RATE}")
        names = [f"burst-{i:03d}-{uuid.uuid4().hex[:4]}" for i in range(count)]
        cpu_before = cpu_seconds(operator.pid)
        created, start = create_in_parallel(
            cluster.plane, [manifest(n, url, namespace) for n in names], 32)
        stamped = None
        deadline = start + 900
        while stamped is None:
            if time.monotonic() > deadline:
                stop.set()
            with contextlib.suppress(queue.Empty):
                stamped = json.loads(results.get(timeout=0.5))
        cpu = cpu_seconds(operator.pid) - cpu_before
    finally:
        stop.set()
        follower.join(10)
        stop_operator(operator)
    job_seen, ready = stamped["job"], stamped["ready"]
    latencies = [job_seen[n] - created[n] for n in names if n in job_seen]
    return {"ready": len(ready), "cpu_s_per_import": cpu / count,
            "create_to_job_p99_s": percentile(latencies, 0.99) if latencies else float("nan")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--skip-burst", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mediaimport-bench-progress-"))
    for parent in [work, *work.parents]:  # Postgres runs as `postgres` under root
        if parent != Path("/") and os.geteuid() == 0:
            parent.chmod(parent.stat().st_mode | 0o005)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mediaimport/bench"
    cache.mkdir(parents=True, exist_ok=True)
    slow_video = make_video(cache / "progress-20mb.mp4", SLOW_BYTES)
    burst_video = make_video(cache / "progress-600kb.mp4", BURST_BYTES)
    images = node_images()
    cluster = Cluster(work / "cluster", pause_image=PAUSE_IMAGE, images=images)
    cluster.start()
    postgres = PostgresServer(work / "postgres")
    postgres.start()
    s3 = S3Server(work / "s3", host=nodenet.HOST_IP)
    s3.start()
    s3.create_bucket("bench")
    figures: dict[str, Any] = {}
    try:
        kube = cluster.plane.kube()
        install_crd(kube)
        namespace_with_s3(kube, NAMESPACE, s3)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIAIMPORT_"))}
        env.update({
            "KUBECONFIG": str(cluster.plane.kubeconfig),
            "MEDIAIMPORT_NAMESPACES": NAMESPACE,
            "MEDIAIMPORT_BUCKET": "bench",
            "MEDIAIMPORT_DATABASE_URL": postgres.url,
            "MEDIAIMPORT_ALLOWED_NETWORKS": f"{nodenet.HOST_IP}/32",
            "MEDIAIMPORT_JOB_IMAGE": job_image(images),
            "MEDIAIMPORT_JOB_IMAGE_PULL_POLICY": "Never",
            "MEDIAIMPORT_CPU_REQUEST": "50m",  # room on the node's 2 CPUs for the burst
            "MEDIAIMPORT_HTTP_PORT": "0",
            "MEDIAIMPORT_LEASE_NAMESPACE": NAMESPACE,
            "MEDIAIMPORT_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "MEDIAIMPORT_CONCURRENCY": "32",
            "PYTHONUNBUFFERED": "1",
            **channel_env(work),
        })
        with serve(nodenet.HOST_IP) as origin:
            operator = start_operator(env, work / "operator-slow.log")
            try:
                figures.update(slow_import(kube, origin, slow_video))
            finally:
                stop_operator(operator)
            if not args.skip_burst:
                # Quiet first: whatever the first run leaves behind weighs on progress.
                for progress in (False, True):
                    label = "progress" if progress else "quiet"
                    run = burst(cluster, env, work / f"operator-{label}.log", origin,
                                burst_video, args.count, progress=progress,
                                namespace=namespace_with_s3(kube, f"burst-{label}", s3))
                    figures[f"ready_{label}"] = run["ready"]
                    figures[f"operator_cpu_s_per_import_{label}"] = round(
                        run["cpu_s_per_import"], 4)
                    figures[f"create_to_job_p99_s_{label}"] = round(
                        run["create_to_job_p99_s"], 3)
                figures["create_to_job_p99_ratio"] = round(
                    figures["create_to_job_p99_s_progress"] / figures["create_to_job_p99_s_quiet"],
                    2)
        figures["count"] = args.count
        targets = {"progress_updates": (">=", 5), "progress_lag_p50_s": ("<=", 1.5),
                   "create_to_job_p99_ratio": ("<=", 1.2)}
        print(f"{'metric':36} {'value':>10}  target")
        for key, value in figures.items():
            target = targets.get(key)
            verdict = ""
            if target is not None:
                sign, bound = target
                met = value is not None and (value >= bound if sign == ">=" else value <= bound)
                verdict = f"{sign} {bound} {'ok' if met else 'MISSED'}"
            print(f"{key:36} {value!s:>10}  {verdict}")
        print(json.dumps(figures))
        return 0
    finally:
        s3.stop()
        postgres.stop()
        cluster.stop()
        print(f"(work dir {work})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
