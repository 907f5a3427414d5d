"""A real threaded HTTP origin on loopback that serves files and misbehaves on request.

Behaviour is chosen by the path, so a test reads like the URL it fetches:

    /files/NAME                 the file, with Range support, ETag and Content-Length
    /files/NAME?type=T          ... served with Content-Type T (e.g. HTML as video/mp4)
    /norange/NAME               the file; ignores Range (always 200)
    /drop/NAME?after=N&times=K  the first K requests send N bytes then cut the connection
                                (Range honoured, so the client can resume)
    /drop-norange/NAME?...      the same, but Range is ignored (the client restarts)
    /short/NAME?extra=N         Content-Length N bytes larger than the body, then close
    /chunked/NAME               chunked transfer encoding, no Content-Length
    /close/NAME                 no Content-Length, body ends when the connection closes
    /flaky/NAME?code=C&fail=K   status C for the first K requests, then the file
    /status/C?retry_after=S     always status C (with Retry-After: S when given)
    /redirect?to=URL&code=C     one redirect (default 302) to URL
    /chain/N/NAME               N redirects, then /files/NAME
    /loop                       redirects to itself forever
    /drip?delay=S&size=N        announces N bytes, sends one every S seconds
    /endless                    an endless close-delimited body of zeros
    /stall/NAME?after=N         sends N bytes of the file, then nothing until the server stops

``hits(path)`` counts requests per path (without the query string); ``ranges(path)``
lists the Range header of each (None when absent).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_MIME = {
    ".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
    ".mp3": "audio/mpeg", ".wav": "audio/wav", ".ogg": "audio/ogg", ".m4a": "audio/mp4",
    ".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif",
    ".html": "text/html",
}  # fmt: skip


class Origin:
    """The server; ``files`` maps names to local paths (``add`` registers one)."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.files: dict[str, Path] = {}
        self.counts: Counter[str] = Counter()
        self.range_headers: dict[str, list[str | None]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        origin = self

        class Handler(_Handler):
            server_origin = origin

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, path: Path, name: str | None = None) -> str:
        self.files[name or path.name] = path
        return name or path.name

    def hits(self, path: str) -> int:
        with self.lock:
            return self.counts[path]

    def ranges(self, path: str) -> list[str | None]:
        with self.lock:
            return list(self.range_headers.get(path, []))

    def start(self) -> Origin:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_origin: Origin

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- helpers ---------------------------------------------------------------------

    @property
    def origin(self) -> Origin:
        return self.server_origin

    def _count(self, path: str) -> int:
        with self.origin.lock:
            self.origin.counts[path] += 1
            self.origin.range_headers.setdefault(path, []).append(self.headers.get("Range"))
            return self.origin.counts[path]

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _file(self, name: str) -> bytes | None:
        path = self.origin.files.get(name)
        return path.read_bytes() if path else None

    def _not_found(self) -> None:
        self._send(404, {"Content-Type": "text/plain"}, b"not found\n")

    def _serve(
        self, data: bytes, content_type: str, *, ranges: bool = True, cut_after: int | None = None
    ) -> None:
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        start = 0
        status = 200
        headers = {"Content-Type": content_type, "ETag": etag}
        requested = _RANGE.match(self.headers.get("Range", ""))
        if_range = self.headers.get("If-Range")
        if ranges:
            headers["Accept-Ranges"] = "bytes"
        if ranges and requested and (if_range is None or if_range == etag):
            start = int(requested.group(1))
            if start >= len(data):
                self._send(416, {"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        headers["Content-Length"] = str(len(body))
        if cut_after is not None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body[:cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self._send(status, headers, body)

    # -- routes ----------------------------------------------------------------------

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        count = self._count(parts.path)
        segments = parts.path.strip("/").split("/")
        route, rest = segments[0], unquote("/".join(segments[1:]))
        try:
            handler = getattr(self, "route_" + route.replace("-", "_"), None)
            if handler is None:
                self._not_found()
            else:
                handler(rest, query, count)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _mime(self, name: str, query: dict[str, str]) -> str:
        return query.get("type") or _MIME.get(Path(name).suffix, "application/octet-stream")

    def route_files(self, name: str, query: dict[str, str], _count: int) -> None:
        data = self._file(name)
        if data is None:
            self._not_found()
            return
        self._serve(data, self._mime(name, query))

    def route_norange(self, name: str, query: dict[str, str], _count: int) -> None:
        data = self._file(name)
        if data is None:
            self._not_found()
            return
        self._serve(data, self._mime(name, query), ranges=False)

    def _drop(self, name: str, query: dict[str, str], count: int, *, ranges: bool) -> None:
        data = self._file(name)
        if data is None:
            self._not_found()
            return
        cut = int(query.get("after", "1000")) if count <= int(query.get("times", "1")) else None
        self._serve(data, self._mime(name, query), ranges=ranges, cut_after=cut)

    def route_drop(self, name: str, query: dict[str, str], count: int) -> None:
        self._drop(name, query, count, ranges=True)

    def route_drop_norange(self, name: str, query: dict[str, str], count: int) -> None:
        self._drop(name, query, count, ranges=False)

    def route_short(self, name: str, query: dict[str, str], _count: int) -> None:
        data = self._file(name)
        if data is None:
            self._not_found()
            return
        announced = len(data) + int(query.get("extra", "1000"))
        headers = {"Content-Type": self._mime(name, query), "Content-Length": str(announced)}
        self._send(200, headers, data)
        self.close_connection = True

    def route_chunked(self, name: str, query: dict[str, str], _count: int) -> None:
        data = self._file(name)
        if data is None:
            self._not_found()
            return
        self._send(200, {"Content-Type": self._mime(name, query), "Transfer-Encoding": "chunked"})
        for offset in range(0, len(data), 50_000):
            piece = data[offset : offset + 50_000]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def route_close(self, name: str, query: dict[str, str], _count: int) -> None:
        data = self._file(name)
        if data is None:
            self._not_found()
            return
        self.send_response(200)
        self.send_header("Content-Type", self._mime(name, query))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def route_flaky(self, name: str, query: dict[str, str], count: int) -> None:
        if count <= int(query.get("fail", "1")):
            headers = {"Content-Type": "text/plain"}
            if "retry_after" in query:
                headers["Retry-After"] = query["retry_after"]
            self._send(int(query.get("code", "500")), headers, b"try again\n")
            return
        self.route_files(name, query, count)

    def route_status(self, code: str, query: dict[str, str], _count: int) -> None:
        headers = {"Content-Type": "text/html"}
        if "retry_after" in query:
            headers["Retry-After"] = query["retry_after"]
        self._send(int(code), headers, b"<html><body>error</body></html>\n")

    def route_redirect(self, _rest: str, query: dict[str, str], _count: int) -> None:
        self._send(int(query.get("code", "302")), {"Location": query["to"]})

    def route_chain(self, rest: str, _query: dict[str, str], _count: int) -> None:
        hops, _, name = rest.partition("/")
        remaining = int(hops)
        target = f"/chain/{remaining - 1}/{name}" if remaining > 0 else f"/files/{name}"
        self._send(302 if remaining % 2 else 307, {"Location": target})

    def route_loop(self, _rest: str, _query: dict[str, str], _count: int) -> None:
        self._send(302, {"Location": "/loop"})

    def route_drip(self, _rest: str, query: dict[str, str], _count: int) -> None:
        delay = float(query.get("delay", "0.05"))
        size = int(query.get("size", "1000000"))
        self._send(200, {"Content-Type": "video/mp4", "Content-Length": str(size)})
        for _ in range(size):
            if self.origin.stopping.wait(delay):
                break
            self.wfile.write(b"\0")
            self.wfile.flush()
        self.close_connection = True

    def route_paced(self, name: str, query: dict[str, str], _count: int) -> None:
        """A file sent at ``rate`` bytes/s (default 2 MB/s): an import that takes a while,
        with a Content-Length (``?length=0`` leaves it out)."""
        data = self._file(name)
        if data is None:
            self._not_found()
            return
        rate = float(query.get("rate", "2000000"))
        self.send_response(200)
        self.send_header("Content-Type", self._mime(name, query))
        if query.get("length") == "0":
            self.send_header("Connection", "close")  # the end of the body is the close
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        step = max(1, int(rate / 20))  # 20 writes a second
        started = time.monotonic()
        for offset in range(0, len(data), step):
            self.wfile.write(data[offset:offset + step])
            self.wfile.flush()
            ahead = started + (offset + step) / rate - time.monotonic()
            if ahead > 0 and self.origin.stopping.wait(ahead):
                break
        self.close_connection = True

    def route_stall(self, name: str, query: dict[str, str], _count: int) -> None:
        data = self._file(name)
        if data is None:
            self._not_found()
            return
        after = int(query.get("after", "1000"))
        headers = {"Content-Type": self._mime(name, query), "Content-Length": str(len(data))}
        self._send(200, headers)
        self.wfile.write(data[:after])
        self.wfile.flush()
        self.origin.stopping.wait()
        self.close_connection = True

    def route_endless(self, _rest: str, _query: dict[str, str], _count: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"\0" * 65536
        while not self.origin.stopping.is_set():
            self.wfile.write(chunk)
        self.close_connection = True


@contextmanager
def serve(host: str = "127.0.0.2") -> Iterator[Origin]:
    """Run an origin for the duration of a ``with``/fixture."""
    origin = Origin(host).start()
    try:
        yield origin
    finally:
        origin.stop()
