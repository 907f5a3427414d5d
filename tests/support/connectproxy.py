"""A forward proxy on loopback that only tunnels (CONNECT), and records every target it
was asked for, as the download proxy of the job's tests."""

from __future__ import annotations

import base64
import socket
import threading

from support.tcp import LoopbackServer, pipe, read_head


class ConnectProxy(LoopbackServer):
    """Tunnels ``CONNECT host:port`` anywhere (a proxy does not judge targets: the job's
    guard must). With ``credentials`` ("user:password") it answers 407 without them."""

    def __init__(self, credentials: str | None = None) -> None:
        super().__init__()
        self.credentials = credentials
        self.targets: list[str] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.address
        auth = f"{self.credentials}@" if self.credentials else ""
        return f"http://{auth}{host}:{port}"

    def handle(self, client: socket.socket) -> None:
        received = read_head(client)
        if received is None:
            return
        head, _ = received
        lines = head.decode("latin-1").split("\r\n")
        method, target, *_ = [*lines[0].split(" "), "", ""]
        with self._lock:
            self.targets.append(target)
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if self.credentials:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            given = [line.split(":", 1)[1].strip() for line in lines
                     if line.lower().startswith("proxy-authorization:")]
            if given != [expected]:
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                               b"Content-Length: 0\r\n\r\n")
                return
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pipe(client, upstream, self.stopping)
