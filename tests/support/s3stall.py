"""An S3 endpoint that stops answering some requests: a TCP proxy on loopback in front of
the real S3 server that holds the requests a predicate picks (it never forwards or answers
them) and passes every other request through untouched.

Each forwarded request gets ``Connection: close`` (outside what SigV4 signs), so every
request arrives on a connection of its own and is inspected by its request line.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from support.tcp import HEAD_END, LoopbackServer, Request, pipe


def is_upload_part(request_line: str) -> bool:
    method, _, target = request_line.partition(" ")
    return method == "PUT" and "partNumber=" in target and "uploadId=" in target


class StallingS3(LoopbackServer):
    """``with StallingS3(s3.endpoint_url, is_upload_part) as proxy: proxy.endpoint_url``."""

    def __init__(self, upstream_url: str, stall: Callable[[str], bool]) -> None:
        host, _, port = upstream_url.removeprefix("http://").partition(":")
        # Beside the S3 server: whoever reaches it (a pod on the node) reaches this too.
        super().__init__(host)
        self.upstream = (host, int(port))
        self.stall = stall
        self.stalled: list[str] = []
        self.passed: list[str] = []

    @property
    def endpoint_url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def request(self, client: socket.socket, request: Request) -> None:
        if self.stall(request.line):
            with self.lock:
                self.stalled.append(request.line)
            self.stopping.wait()  # never answered while the test runs
            return
        with self.lock:
            self.passed.append(request.line)
        with socket.create_connection(self.upstream, timeout=30) as upstream:
            upstream.sendall(_close_after(request.head) + request.rest)
            pipe(client, upstream, self.stopping)


def _close_after(head: bytes) -> bytes:
    lines = [
        line for line in head[: -len(HEAD_END)].split(b"\r\n")
        if not line.lower().startswith(b"connection:")
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + HEAD_END
