"""A forward proxy on loopback that only tunnels (CONNECT), and records every target it
was asked for, as the download proxy of the job's tests."""

from __future__ import annotations

import base64
import socket

from support.tcp import LoopbackServer, Request, pipe


class ConnectProxy(LoopbackServer):
    """Tunnels ``CONNECT host:port`` anywhere (a proxy does not judge targets: the job's
    guard must). With ``credentials`` ("user:password") it answers 407 without them."""

    def __init__(self, credentials: str | None = None) -> None:
        super().__init__()
        self.credentials = credentials
        self.targets: list[str] = []

    @property
    def url(self) -> str:
        host, port = self.address
        auth = f"{self.credentials}@" if self.credentials else ""
        return f"http://{auth}{host}:{port}"

    def request(self, client: socket.socket, request: Request) -> None:
        target = request.target
        with self.lock:
            self.targets.append(target)
        if request.method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if self.credentials:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if request.headers("Proxy-Authorization") != [expected]:
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
