"""An S3 endpoint that stops answering some requests: a TCP proxy on loopback in front of
the real S3 server that holds the requests a predicate picks (it never forwards or answers
them) and passes every other request through untouched.

Each forwarded request gets ``Connection: close`` (outside what SigV4 signs), so every
request arrives on a connection of its own and is inspected by its request line.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from support.tcp import HEAD_END, LoopbackServer, pipe, read_head


def is_upload_part(request_line: str) -> bool:
    method, _, target = request_line.partition(" ")
    return method == "PUT" and "partNumber=" in target and "uploadId=" in target


class StallingS3(LoopbackServer):
    """``with StallingS3(s3.endpoint_url, is_upload_part) as proxy: proxy.endpoint_url``."""

    def __init__(self, upstream_url: str, stall: Callable[[str], bool]) -> None:
        super().__init__()
        host, _, port = upstream_url.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.stall = stall
        self.stalled: list[str] = []
        self.passed: list[str] = []
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def handle(self, client: socket.socket) -> None:
        received = read_head(client)
        if received is None:
            return
        head, rest = received
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if self.stall(request_line):
            with self._lock:
                self.stalled.append(request_line)
            self.stopping.wait()  # never answered while the test runs
            return
        with self._lock:
            self.passed.append(request_line)
        with socket.create_connection(self.upstream, timeout=30) as upstream:
            upstream.sendall(_close_after(head) + rest)
            pipe(client, upstream, self.stopping)


def _close_after(head: bytes) -> bytes:
    lines = [
        line for line in head[: -len(HEAD_END)].split(b"\r\n")
        if not line.lower().startswith(b"connection:")
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + HEAD_END
