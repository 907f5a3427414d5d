"""Benchmark: the HTTP API's own work, with no operator running.

    python bench/api_throughput.py
    python bench/api_throughput.py --requests 500 --streams 200     # a quicker look

Sets up a private control plane (with the CRD), Postgres and S3, and starts one
`mediaimport-api` process on loopback; no operator and no node agent run, so only the
API's work is measured (with what it waits for: the Kubernetes API server and Postgres).
The API talks to Kubernetes as it does in a cluster: as its ServiceAccount, bound to the
Role docs/api.md lists.
The load comes from this process: requests encoded before the clock starts, sent over
`--concurrency` keep-alive connections on uvloop and parsed with httptools, so the load
generator takes little of the two cores it shares with what it measures.

Measures
* import-from-url: `--requests` (2,000) POSTs at concurrency `--concurrency` (32), each
  creating a MediaImport and its row (targets ≥ 200 req/s, p99 ≤ 100 ms);
* the webhook receiver: as many signed `succeeded` deliveries, each with one output
  (one MediaImport and row each), at the same concurrency (same targets);
* `--streams` (1,000) SSE streams of one import open on the API process: its RSS with
  them open (target ≤ 200 MiB), then `--changes` (5) status changes written to the
  MediaImport (as the operator would) and the time from each write to its arrival on
  every stream (p99 target ≤ 1 s).
* [info] CPU seconds during each load phase of the API process, kube-apiserver, etcd,
  kube-controller-manager, kube-scheduler, Postgres (all its processes), this load
  generator, the whole machine, and the rest of the machine ("others": other work on a
  shared machine); and the load average before the benchmark started.

Prints a table, then one JSON object as the last line of stdout with the keys
import_rps, import_p99_ms, webhook_rps, webhook_p99_ms, sse_streams, sse_rss_mib,
sse_fanout_p99_s (and a few more for context).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import httptools
import psutil
import requests
import uvloop
import yaml

REPO = Path(__file__).resolve().parent.parent
for folder in ("devstack", "api", "operator", "job-image"):
    sys.path.insert(0, str(REPO / folder))

from mediaimport_api.auth import hash_token, new_token  # noqa: E402
from mediaimport_api.signatures import sign_headers  # noqa: E402
from mediaimport_dev.controlplane import ControlPlane  # noqa: E402
from mediaimport_dev.crd import install_crd  # noqa: E402
from mediaimport_dev.ports import free_port  # noqa: E402
from mediaimport_dev.postgres import PostgresServer  # noqa: E402
from mediaimport_dev.processes import spawn, stop_group, wait_started  # noqa: E402
from mediaimport_dev.s3server import S3Server  # noqa: E402

NAMESPACE = "bench"
USER = "bench-user"
SECRET = "whsec_" + base64.b64encode(b"the api benchmark's webhook key!").decode()
MIB = 1 << 20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def figure(value: float, digits: int) -> float | None:
    """``value`` rounded; None for a phase that did not run (JSON has no NaN)."""
    return None if math.isnan(value) else round(value, digits)


def cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """CPU seconds of ``pid`` (with ``tree``, and of everything under it: Postgres'
    backends are children of its postmaster, finished ones counted in its children times)."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *(root.children(recursive=True) if tree else [])]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


class CpuMeter:
    """CPU seconds of each component (and of this load generator) between start() and
    stop(), and the machine's CPU seconds in the same time: what the rest of the machine
    took is their difference ("others"); "steal" is CPU time the hypervisor gave to other
    guests while this machine wanted it."""

    def __init__(self, pids: dict[str, int], trees: frozenset[str] = frozenset()) -> None:
        self.pids = pids
        self.trees = trees
        self.before: dict[str, float] = {}
        self.machine_before = (0.0, 0.0)

    @staticmethod
    def _machine() -> tuple[float, float]:
        """(CPU seconds this machine used, seconds the hypervisor gave its CPUs to others)."""
        times = psutil.cpu_times()
        used = times.user + times.system + times.nice + times.irq + times.softirq
        return float(used), float(getattr(times, "steal", 0.0))

    def start(self) -> None:
        self.before = {name: cpu_seconds(pid, tree=name in self.trees)
                       for name, pid in self.pids.items()}
        self.machine_before = self._machine()

    def stop(self) -> dict[str, float]:
        used = {name: round(cpu_seconds(pid, tree=name in self.trees) - self.before[name], 2)
                for name, pid in self.pids.items()}
        machine, steal = self._machine()
        used["machine"] = round(machine - self.machine_before[0], 2)
        used["others"] = round(used["machine"] - sum(
            value for name, value in used.items() if name != "machine"), 2)
        used["steal"] = round(steal - self.machine_before[1], 2)
        return used


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the load, one request at a time.

    The requests are encoded before the clock starts and written whole; answers are
    parsed by httptools (uvicorn's own parser). About 0.02 ms of CPU per request on
    this machine, against 0.2 ms for aiohttp's client: the load generator shares the
    two cores with what it measures.
    """

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:  # httptools' callback
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError("the API closed the connection"))

    async def exchange(self, request: bytes) -> int:
        """Send ``request``; the answer's status once the whole answer arrived."""
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.answer


def http_request(api: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """A POST as bytes on the wire (HTTP/1.1, keep-alive)."""
    host = urlsplit(api).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def load(api: str, requests: list[bytes], concurrency: int, expect: int
               ) -> tuple[float, list[float], int]:
    """(requests per second, latencies in s, answers other than ``expect``) of sending
    ``requests`` over ``concurrency`` connections, each sending its next request when
    the last one is answered; more than half other answers end the benchmark."""
    parts = urlsplit(api)
    loop = asyncio.get_running_loop()
    connections = [
        (await loop.create_connection(_Connection, parts.hostname or "", parts.port or 80))[1]
        for _ in range(concurrency)
    ]
    latencies: list[float] = []
    failures: list[int] = []
    pending = iter(requests)

    async def worker(connection: _Connection) -> None:
        for request in pending:
            started = time.perf_counter()
            status = await connection.exchange(request)
            latencies.append(time.perf_counter() - started)
            if status != expect:
                failures.append(status)

    begun = time.perf_counter()
    try:
        await asyncio.gather(*(worker(connection) for connection in connections))
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
    elapsed = time.perf_counter() - begun
    if len(failures) > len(requests) // 2:
        raise SystemExit(f"{len(failures)} requests failed, e.g. HTTP {failures[:5]}")
    return len(requests) / elapsed, latencies, len(failures)


def import_requests(api: str, token: str, origin: str, count: int, first: int = 0
                    ) -> list[bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    return [
        http_request(api, "/api/v1/media/import-from-url", headers, json.dumps({
            "url": f"{origin}/clip-{index}.mp4", "type": "video",
            "metadata": {"prompt": "a benchmark", "n": index},
        }).encode())
        for index in range(first, first + count)
    ]


def delivery_requests(api: str, webhook_url: str, origin: str, count: int) -> list[bytes]:
    """Signed `succeeded` deliveries, one output each (signed now: the receiver accepts
    timestamps up to 5 minutes old)."""
    run = uuid.uuid4().hex[:8]
    target = urlsplit(webhook_url)
    path = f"{target.path}?{target.query}"
    requests_: list[bytes] = []
    for index in range(count):
        prediction = {
            "id": f"bench{run}{index:05d}", "status": "succeeded", "model": "bench/model",
            "input": {"prompt": "a benchmark"}, "output": [f"{origin}/out-{index}.mp4"],
            "logs": "step\n" * 200, "error": None,
        }
        body = json.dumps(prediction).encode()
        requests_.append(
            http_request(api, path, sign_headers(SECRET, f"msg_{run}_{index}", body), body))
    return requests_


async def sse_fanout(api: str, token: str, name: str, streams: int, changes: int,
                     change: Callable[[int], None], api_pid: int
                     ) -> tuple[int, float, list[float]]:
    """(streams open, API RSS MiB with them open, delivery delays in s of every change)."""
    arrivals: list[dict[str, float]] = [{} for _ in range(streams)]
    opened = asyncio.Semaphore(0)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def listen(index: int) -> None:
            url = f"{api}/api/v1/imports/{name}/events"
            async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as answer:
                if answer.status != 200:
                    raise SystemExit(f"stream {index}: HTTP {answer.status}")
                first = True
                async for raw in answer.content:
                    line = raw.decode().strip()
                    if not line.startswith("data:"):
                        continue
                    if first:
                        opened.release()
                        first = False
                    message = json.loads(line[5:])
                    for condition in message["conditions"]:
                        arrivals[index].setdefault(condition["message"], time.monotonic())
                    if message["status"] in ("finished", "failed"):
                        return

        tasks = [asyncio.create_task(listen(i)) for i in range(streams)]
        for _ in range(streams):
            await asyncio.wait_for(opened.acquire(), 120)
        await asyncio.sleep(2)  # let the process settle with everything open
        rss = psutil.Process(api_pid).memory_info().rss / MIB
        delays: list[float] = []
        for step in range(1, changes + 1):
            written = time.monotonic()
            await asyncio.to_thread(change, step)
            deadline = time.monotonic() + 30
            marker = step_message(step)
            while sum(marker in seen for seen in arrivals) < streams:
                if time.monotonic() > deadline:
                    raise SystemExit(f"change {step} did not reach every stream within 30 s")
                await asyncio.sleep(0.01)
            delays += [seen[marker] - written for seen in arrivals]
        await asyncio.to_thread(change, 0)  # Ready: every stream ends
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return streams, rss, delays


def step_message(step: int) -> str:
    return f"Benchmark step {step}."


def status_of_step(step: int) -> dict[str, Any]:
    """A status change as the operator writes one (step 0: Ready, every stream ends)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    condition = {"type": "Succeeded", "status": "True" if step == 0 else "Unknown",
                 "reason": "Imported" if step == 0 else "JobCreated",
                 "message": step_message(step), "lastTransitionTime": now}
    return {"phase": "Ready" if step == 0 else "Importing", "conditions": [condition]}


def documented_rules() -> list[dict[str, Any]]:
    """The API's Role rules as docs/api.md lists them (the RBAC test runs with the same)."""
    text = (REPO / "docs" / "api.md").read_text()
    block = text[text.index("<!-- api-rbac-rules:"):]
    found = re.search(r"```yaml\n(.*?)```", block, re.DOTALL)
    assert found is not None, "docs/api.md lost its RBAC block"
    rules: list[dict[str, Any]] = yaml.safe_load(found.group(1))["rules"]
    return rules


def service_account_kubeconfig(plane: ControlPlane, kube: Any, path: Path) -> Path:
    """A kubeconfig for the API as it runs in a cluster: its own ServiceAccount's token,
    bound to its Role (the API server checks that token and the Role's rules on every
    request, instead of an administrator's client certificate)."""
    name = "mediaimport-api"
    namespaced = f"/api/v1/namespaces/{NAMESPACE}"
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}"
    kube.create(f"{namespaced}/serviceaccounts", {"metadata": {"name": name}})
    kube.create(f"{rbac}/roles", {"metadata": {"name": name}, "rules": documented_rules()})
    kube.create(f"{rbac}/rolebindings", {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}],
    })
    issued = kube.create(f"{namespaced}/serviceaccounts/{name}/token",
                         {"spec": {"expirationSeconds": 3600}})
    admin = yaml.safe_load(plane.kubeconfig.read_text())
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "bench", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": name, "user": {"token": issued["status"]["token"]}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": name}}],
        "current-context": "bench",
    }))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--phases", default="import,webhook,sse",
                        help="which loads to run (comma-separated: import, webhook, sse)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # 1,000 streams are 1,000 sockets on each side; the API inherits the limit.
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    # The machine's load before this benchmark adds its own (reported with the figures).
    load_before = [round(value, 2) for value in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="mediaimport-bench-api-"))
    for parent in [work, *work.parents]:  # Postgres runs as `postgres` under root
        if parent != Path("/") and os.geteuid() == 0:
            parent.chmod(parent.stat().st_mode | 0o005)
    plane = ControlPlane(work / "controlplane")
    plane.start()
    postgres = PostgresServer(work / "postgres")
    postgres.start()
    s3 = S3Server(work / "s3")
    s3.start()
    s3.create_bucket("bench")
    kube = plane.kube()
    install_crd(kube)
    kube.create("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    api_kubeconfig = service_account_kubeconfig(plane, kube, work / "api.kubeconfig")
    token = new_token()
    tokens = work / "tokens"
    tokens.write_text(f"{hash_token(token)} {USER}\n")
    port, admin_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    api = f"http://127.0.0.1:{port}"
    # /readyz and /metrics on a port of their own, as the chart installs the API.
    admin = f"http://127.0.0.1:{admin_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIAIMPORT_"))}
    env.update({
        **s3.env(),
        "KUBECONFIG": str(api_kubeconfig),
        "MEDIAIMPORT_API_NAMESPACE": NAMESPACE,
        "MEDIAIMPORT_API_TOKENS_FILE": str(tokens),
        "MEDIAIMPORT_API_WEBHOOK_SECRET": SECRET,
        "MEDIAIMPORT_API_CONTEXT_SIGNING_KEY": uuid.uuid4().hex * 2,
        "MEDIAIMPORT_API_DATABASE_URL": postgres.url,
        "MEDIAIMPORT_API_BUCKET": "bench",
        "MEDIAIMPORT_API_HOST": "127.0.0.1",
        "MEDIAIMPORT_API_PORT": str(port),
        "MEDIAIMPORT_API_ADMIN_PORT": str(admin_port),
        "MEDIAIMPORT_API_LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(str(REPO / f) for f in
                                      ("api", "operator", "job-image", "devstack")),
    })
    log = work / "api.log"
    process: subprocess.Popen[bytes] | None = None
    # Sources on a public-looking host name: never fetched (no operator), never resolved.
    origin = "https://media.bench.example"
    try:
        process = spawn([sys.executable, "-m", "mediaimport_api"], log, env=env)
        wait_started(process, log, lambda: _ready(admin), what="the API", timeout=60,
                     interval=0.2)
        pids = {"api": process.pid,
                **{name: plane.components[name].pid for name in (
                    "kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler")},
                # This process: the load generator (the API is its child, not counted here).
                "postgres": postgres.pid or 0, "load": os.getpid()}
        meter = CpuMeter(pids, trees=frozenset({"postgres"}))

        import_rps = webhook_rps = rss = rss_idle = float("nan")
        import_lat: list[float] = []
        webhook_lat: list[float] = []
        delays: list[float] = []
        import_other = webhook_other = streams = 0
        import_cpu: dict[str, float] = {}
        webhook_cpu: dict[str, float] = {}
        if "import" in args.phases:
            # Warm-up: connections, the pools, the first statements.
            uvloop.run(load(api, import_requests(api, token, origin, 64, first=-64),
                            args.concurrency, 202))
            batch = import_requests(api, token, origin, args.requests)
            meter.start()
            import_rps, import_lat, import_other = uvloop.run(
                load(api, batch, args.concurrency, 202))
            import_cpu = meter.stop()

        if "webhook" in args.phases:
            issued = requests.post(f"{api}/api/v1/webhooks/replicate/urls",
                                   headers={"Authorization": f"Bearer {token}"}, timeout=10)
            webhook_url = issued.json()["url"]
            uvloop.run(load(api, delivery_requests(api, webhook_url, origin, 64),
                            args.concurrency, 200))
            batch = delivery_requests(api, webhook_url, origin, args.requests)
            meter.start()
            webhook_rps, webhook_lat, webhook_other = uvloop.run(
                load(api, batch, args.concurrency, 200))
            webhook_cpu = meter.stop()

        if "sse" in args.phases:
            # One import, and many streams of it; status written as the operator would.
            accepted = requests.post(f"{api}/api/v1/media/import-from-url",
                                     headers={"Authorization": f"Bearer {token}"},
                                     json={"url": f"{origin}/watched.mp4"}, timeout=10).json()
            name = accepted["metadata"]["import_job_id"]
            status_path = (f"/apis/mediaimport.dev/v1alpha1/namespaces/{NAMESPACE}/"
                           f"mediaimports/{name}/status")

            def change(step: int) -> None:
                kube.merge_patch(status_path, {"status": status_of_step(step)})

            rss_idle = psutil.Process(process.pid).memory_info().rss / MIB
            streams, rss, delays = asyncio.run(
                sse_fanout(api, token, name, args.streams, args.changes, change, process.pid))
    finally:
        if process is not None:
            stop_group(process.pid)
        s3.stop()
        postgres.stop()
        plane.stop()

    result = {
        "import_rps": figure(import_rps, 1),
        "import_p99_ms": figure(percentile(import_lat, 99) * 1000, 1),
        "webhook_rps": figure(webhook_rps, 1),
        "webhook_p99_ms": figure(percentile(webhook_lat, 99) * 1000, 1),
        "sse_streams": streams,
        "sse_rss_mib": figure(rss, 1),
        "sse_fanout_p99_s": figure(percentile(delays, 99), 3),
        "import_p50_ms": figure(percentile(import_lat, 50) * 1000, 1),
        "webhook_p50_ms": figure(percentile(webhook_lat, 50) * 1000, 1),
        "sse_fanout_p50_s": figure(percentile(delays, 50), 3),
        "api_rss_idle_mib": figure(rss_idle, 1),
        # Answers other than 202/200: 503 when Kubernetes or Postgres was too slow (a
        # webhook delivery answered 503 after 0.9 s is retried by Replicate).
        "import_other_answers": import_other,
        "webhook_other_answers": webhook_other,
        "cpu_s_import": import_cpu,
        "cpu_s_webhook": webhook_cpu,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "cpus": psutil.cpu_count(),
        "load_before": load_before,
    }
    print(f"{'import-from-url':18} {result['import_rps']} req/s  p50 "
          f"{result['import_p50_ms']} ms  p99 {result['import_p99_ms']} ms  cpu {import_cpu}")
    print(f"{'webhook':18} {result['webhook_rps']} req/s  p50 "
          f"{result['webhook_p50_ms']} ms  p99 {result['webhook_p99_ms']} ms  cpu {webhook_cpu}")
    print(f"{'sse':18} {streams} streams  RSS {result['sse_rss_mib']} MiB (idle "
          f"{result['api_rss_idle_mib']})  fan-out p50 {result['sse_fanout_p50_s']} s  p99 "
          f"{result['sse_fanout_p99_s']} s")
    print(json.dumps(result))
    return 0


def _ready(admin: str) -> bool:
    """The API answers /readyz on its admin port (``admin``, its URL)."""
    try:
        return requests.get(f"{admin}/readyz", timeout=2).ok
    except requests.RequestException:
        return False


if __name__ == "__main__":
    sys.exit(main())
