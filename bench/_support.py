"""Parts of the job benchmark: test media, a paced origin, a paced S3 link, an RSS sampler.

The origin and the link run as separate processes (``python bench/_support.py origin|proxy``)
so that their threads never compete for the GIL with whatever is being measured. Each prints
its listening port as the first line of stdout and serves until killed.

Rates are in bytes per second with MB = 10**6 bytes (so "25 MB/s" is 25_000_000 B/s);
memory is reported in MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MB = 1_000_000
MIB = 1 << 20
CHUNK = 256 * 1024

# --------------------------------------------------------------------------- pacing


class TokenBucket:
    """A link of ``rate`` bytes/s shared by every caller (thread-safe).

    ``take(n)`` returns when a link of that rate would have finished carrying ``n`` more
    bytes after everything taken before (store-and-forward): N bytes take N/rate seconds
    however they are split across connections. ``burst`` bytes may go out at once after idle.
    """

    def __init__(self, rate: float, burst: int = CHUNK) -> None:
        self.rate = float(rate)
        self._slack = burst / self.rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now - self._slack)
            self._next = start + n / self.rate
            due = self._next
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


# --------------------------------------------------------------------------- origin

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class Recorder:
    """Appends one JSON line per transfer (monotonic times: Linux shares them across processes)."""

    TICK = 0.1

    def __init__(self, path: Path | None) -> None:
        self._file = path.open("a", buffering=1) if path else None
        self._lock = threading.Lock()
        # Cumulative bytes and open transfers per kind, written every TICK s while they change:
        # the time series behind "is the upload keeping up with the download?".
        self._counts: dict[str, int] = {}
        self._active: dict[str, int] = {}
        if self._file is not None:
            threading.Thread(target=self._ticker, daemon=True).start()

    def count(self, kind: str, nbytes: int) -> None:
        with self._lock:
            self._counts[kind] = self._counts.get(kind, 0) + nbytes

    def active(self, kind: str, delta: int) -> None:
        with self._lock:
            self._active[kind] = self._active.get(kind, 0) + delta

    def _ticker(self) -> None:
        assert self._file is not None
        last = None
        while True:
            time.sleep(self.TICK)
            with self._lock:
                state = (dict(self._counts), dict(self._active))
                if state != last:
                    line = json.dumps(
                        {"kind": "tick", "t": time.monotonic(), "bytes": state[0],
                         "active": state[1]}
                    )  # fmt: skip
                    self._file.write(line + "\n")
                last = state

    def record(self, kind: str, nbytes: int, first: float | None, last: float | None) -> None:
        if self._file is None or not nbytes or first is None:
            return
        line = json.dumps({"kind": kind, "bytes": nbytes, "first": first, "last": last})
        with self._lock:
            self._file.write(line + "\n")


class _Origin(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    files: dict[str, Path]
    bucket: TokenBucket | None
    recorder: Recorder


class _OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Origin

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        name = self.path.split("?", 1)[0].lstrip("/")
        path = self.server.files.get(name)
        if path is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        status = 200
        header = self.headers.get("Range")
        if header:
            match = _RANGE.match(header.strip())
            if match and (match[1] or match[2]):
                if match[1]:
                    start = int(match[1])
                    end = min(int(match[2]), size - 1) if match[2] else size - 1
                else:  # suffix range: the last N bytes
                    start = max(0, size - int(match[2]))
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        bucket = self.server.bucket
        out = self.connection.fileno()
        first = time.monotonic()
        recorder = self.server.recorder
        recorder.active("download", 1)
        try:
            with path.open("rb") as f:
                sent = self._send(f.fileno(), out, start, length, bucket, recorder)
        finally:
            recorder.active("download", -1)
        recorder.record("download", sent, first, time.monotonic())

    @staticmethod
    def _send(
        src: int, out: int, offset: int, remaining: int, bucket: TokenBucket | None,
        recorder: Recorder,
    ) -> int:  # fmt: skip
        total = 0
        while remaining > 0:
            n = min(CHUNK if bucket else 8 * MIB, remaining)
            if bucket:
                bucket.take(n)
            while n > 0:
                try:
                    sent = os.sendfile(out, src, offset, n)
                except (BrokenPipeError, ConnectionResetError):
                    return total
                if sent == 0:
                    return total
                recorder.count("download", sent)
                total += sent
                offset += sent
                remaining -= sent
                n -= sent
        return total


def serve_origin(host: str, files: dict[str, Path], rate: float, log: Path | None) -> None:
    server = _Origin((host, 0), _OriginHandler)
    server.files = files
    server.bucket = TokenBucket(rate) if rate > 0 else None
    server.recorder = Recorder(log)
    print(server.server_address[1], flush=True)
    server.serve_forever(poll_interval=0.5)


# --------------------------------------------------------------------------- S3 link


class _Exchange:
    """Per connection: when the client last sent bytes that the server has not answered yet.

    The gap between a request's last byte and the response's first byte is the S3 server's
    own time (e.g. CompleteMultipartUpload assembling the parts); long ones are logged as
    ``s3-wait`` so a slow local server is not mistaken for a slow job.
    """

    WORTH_LOGGING = 0.2  # seconds

    def __init__(self) -> None:
        self.request_sent: float | None = None


def _pump(
    src: socket.socket,
    dst: socket.socket,
    bucket: TokenBucket,
    recorder: Recorder,
    kind: str,
    exchange: _Exchange | None = None,
) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total, first, last = 0, None, None
    try:
        while True:
            n = src.recv_into(buf)
            if not n:
                break
            now = time.monotonic()
            if first is None:
                first = now
            if exchange is not None:
                if kind == "s3-up":
                    exchange.request_sent = None  # set once this chunk is forwarded
                elif exchange.request_sent is not None:
                    wait = now - exchange.request_sent
                    if wait >= _Exchange.WORTH_LOGGING:
                        recorder.record("s3-wait", 1, exchange.request_sent, now)
                    exchange.request_sent = None
            bucket.take(n)
            dst.sendall(view[:n])
            recorder.count(kind, n)
            total += n
            last = time.monotonic()
            if exchange is not None and kind == "s3-up":
                exchange.request_sent = last
    except OSError:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
    else:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    finally:
        recorder.record(kind, total, first, last)


def _relay(
    client: socket.socket,
    upstream: tuple[str, int],
    up: TokenBucket,
    down: TokenBucket,
    recorder: Recorder,
) -> None:
    try:
        server = socket.create_connection(upstream, timeout=10)
    except OSError:
        client.close()
        return
    server.settimeout(None)
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    exchange = _Exchange()
    back = threading.Thread(
        target=_pump, args=(server, client, down, recorder, "s3-down", exchange), daemon=True
    )
    back.start()
    _pump(client, server, up, recorder, "s3-up", exchange)
    back.join()
    client.close()
    server.close()


def serve_proxy(host: str, upstream: tuple[str, int], rate: float, log: Path | None) -> None:
    """A TCP relay whose two directions are each a link of ``rate`` shared by all connections."""
    up, down = TokenBucket(rate), TokenBucket(rate)
    recorder = Recorder(log)
    listener = socket.create_server((host, 0), backlog=64)
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(
            target=_relay, args=(client, upstream, up, down, recorder), daemon=True
        ).start()


@dataclass
class Helper:
    """A helper process (origin or proxy) and the port it listens on."""

    process: subprocess.Popen[str]
    host: str
    port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_helper(args: list[str], host: str) -> Helper:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.isdigit():
        process.kill()
        raise RuntimeError(f"helper {args[0]} did not start (said {line!r})")
    return Helper(process, host, int(line))


def _log_args(log: Path | None) -> list[str]:
    return ["--log", str(log)] if log else []


def start_origin(host: str, files: dict[str, Path], rate: float, log: Path | None = None) -> Helper:
    spec = [f"{name}={path}" for name, path in files.items()]
    return start_helper(
        ["origin", "--host", host, "--rate", str(rate), *_log_args(log), *spec], host
    )


def start_proxy(
    host: str, upstream: tuple[str, int], rate: float, log: Path | None = None
) -> Helper:
    target = f"{upstream[0]}:{upstream[1]}"
    return start_helper(
        ["proxy", "--host", host, "--rate", str(rate), *_log_args(log), target], host
    )


@dataclass
class Transfer:
    kind: str
    bytes: int
    first: float
    last: float


def read_transfers(path: Path, since: float, until: float) -> list[Transfer]:
    """The transfers a helper logged that overlap [since, until]."""
    found: list[Transfer] = []
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if item["kind"] == "tick" or item["first"] is None or item["last"] is None:
            continue
        if item["last"] >= since and item["first"] <= until:
            found.append(Transfer(item["kind"], item["bytes"], item["first"], item["last"]))
    return found


def read_counter(path: Path, kind: str, since: float, until: float) -> list[tuple[float, int]]:
    """(time, bytes of ``kind`` since ``since``) from a helper's ticks in [since, until]."""
    points: list[tuple[float, int]] = []
    base = None
    if not path.exists():
        return points
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if item["kind"] != "tick":
            continue
        value = int(item["bytes"].get(kind, 0))
        if item["t"] < since:
            base = value
            continue
        if item["t"] > until:
            break
        if base is None:
            base = 0
        points.append((item["t"], value - base))
    return points


# --------------------------------------------------------------------------- media

MEDIA_VERSION = "v1"


def cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(xdg) / "mediaimport" / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _ffmpeg(args: list[str]) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def media_100mb() -> Path:
    """~100 MB of 1080p30 H.264 + AAC (about 39 s at ~21 Mbit/s), moov at the start."""
    target = cache_dir() / f"bench-1080p-100mb-{MEDIA_VERSION}.mp4"
    if target.exists():
        return target
    print(f"generating {target} (once; about a minute on 2 cores) ...", file=sys.stderr)
    tmp = target.with_suffix(".part.mp4")
    _ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "39",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "20M",
            "-maxrate",
            "20M",
            "-bufsize",
            "40M",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-movflags",
            "+faststart",
            str(tmp),
        ]
    )
    tmp.rename(target)
    return target


def media_1gb() -> Path:
    """~1 GB: the 100 MB file concatenated 10 times (stream copy), moov at the start."""
    target = cache_dir() / f"bench-1080p-1gb-{MEDIA_VERSION}.mp4"
    if target.exists():
        return target
    source = media_100mb()
    print(f"generating {target} (once; stream copy) ...", file=sys.stderr)
    tmp = target.with_suffix(".part.mp4")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=cache_dir(), delete=False) as f:
        f.write("".join(f"file '{source}'\n" for _ in range(10)))
        listing = Path(f.name)
    try:
        _ffmpeg(
            [
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                str(listing),
                "-c",
                "copy",
                "-movflags",
                "+faststart",
                str(tmp),
            ]
        )
    finally:
        listing.unlink()
    tmp.rename(target)
    return target


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, cached next to it (the files are immutable once generated)."""
    side = path.with_suffix(path.suffix + ".sha256")
    if side.exists() and side.stat().st_mtime >= path.stat().st_mtime:
        return side.read_text().strip()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    side.write_text(digest.hexdigest())
    return digest.hexdigest()


# --------------------------------------------------------------------------- measuring


@dataclass
class TreeRSS:
    """Samples the summed RSS of a process and all its descendants every ``interval`` s."""

    pid: int
    interval: float = 0.02
    peak_bytes: int = 0
    samples: int = 0
    peak_parts: list[tuple[str, int]] = field(default_factory=list)  # (name, rss) at the peak
    peak_at: float = 0.0  # monotonic time of the peak
    _root_cmdline: list[str] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / MIB

    def peak_breakdown(self) -> str:
        return " + ".join(f"{name} {rss / MIB:.0f}" for name, rss in self.peak_parts)

    def _clone_of(self, proc: psutil.Process, root: psutil.Process) -> bool:
        """A child between fork and exec (e.g. subprocess starting ffmpeg) shares its parent's
        pages; counting its RSS would count them twice, which no cgroup does."""
        if self._root_cmdline is None:
            self._root_cmdline = root.cmdline()
        return proc.ppid() == root.pid and proc.cmdline() == self._root_cmdline

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            parts = []
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    if proc is not root and self._clone_of(proc, root):
                        continue
                    parts.append((proc.name(), proc.memory_info().rss))
            total = sum(rss for _, rss in parts)
            self.samples += 1
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_parts, self.peak_at = total, parts, time.monotonic()
            self._stop.wait(self.interval)


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- entry points


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="role", required=True)
    origin = sub.add_parser("origin", help="serve files over HTTP at a paced rate")
    origin.add_argument("--host", default="127.0.0.2")
    origin.add_argument("--rate", type=float, default=25 * MB, help="B/s; 0 = unpaced")
    origin.add_argument("--log", type=Path, help="append one JSON line per response")
    origin.add_argument("files", nargs="+", help="NAME=PATH")
    proxy = sub.add_parser("proxy", help="relay TCP at a paced rate each way")
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--rate", type=float, default=25 * MB)
    proxy.add_argument("--log", type=Path, help="append one JSON line per connection direction")
    proxy.add_argument("upstream", help="HOST:PORT")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if args.role == "origin":
        files = {}
        for spec in args.files:
            name, _, path = spec.partition("=")
            files[name] = Path(path)
        serve_origin(args.host, files, args.rate, args.log)
    else:
        host, _, port = args.upstream.rpartition(":")
        serve_proxy(args.host, (host, int(port)), args.rate, args.log)


if __name__ == "__main__":
    main()
