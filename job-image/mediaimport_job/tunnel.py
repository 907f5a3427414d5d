"""Downloads through an explicit HTTP proxy, without giving the proxy a say in where.

Only ``--download-proxy`` names a proxy (the ``*_PROXY`` variables never do: they
would route around the address guard). The guard resolves and checks the target
host as for a direct connection, and the proxy is asked to ``CONNECT`` to the
checked address itself, not to the host name: a proxy resolving the name again
could be steered to an internal address by DNS. Inside the tunnel everything is
as on a direct connection: TLS verifies the certificate for the host name, plain
HTTP sends its Host header.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

MAX_RESPONSE_HEAD = 16 * 1024
_HEAD_END = b"\r\n\r\n"


class ProxyError(OSError):
    """The proxy refused or failed the tunnel (an OSError: a connection failure)."""


@dataclass(frozen=True)
class TunnelProxy:
    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)  # Proxy-Authorization

    @classmethod
    def from_url(cls, url: str) -> TunnelProxy:
        """``http://[user:password@]host[:port]``; raises ValueError for anything else."""
        parts = urlsplit(url.strip())
        if parts.scheme.lower() != "http":
            raise ValueError("the download proxy must be an http:// URL")
        if not parts.hostname:
            raise ValueError("the download proxy URL has no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("the download proxy URL must be http://host:port only")
        port = parts.port or 80  # raises ValueError for a bad port
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        return cls(parts.hostname, port, authorization)

    @property
    def where(self) -> str:
        """host:port, for messages (never the credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def connect(
        self,
        address: str,
        port: int,
        timeout: float | None,
        socket_options: Iterable[tuple[int, int, int | bytes]] | None,
    ) -> socket.socket:
        """A socket tunnelled by the proxy to ``address`` (an IP address) and ``port``."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            for level, option, value in socket_options or ():
                sock.setsockopt(level, option, value)
            self._handshake(sock, address, port)
        except BaseException:
            sock.close()
            raise
        return sock

    def _handshake(self, sock: socket.socket, address: str, port: int) -> None:
        target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if self.authorization:
            lines.append(f"Proxy-Authorization: {self.authorization}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        status = _status(_read_head(sock, self.where))
        if status != 200:
            raise ProxyError(
                f"the download proxy {self.where} answered {status} to CONNECT {target}"
            )


def _read_head(sock: socket.socket, where: str) -> bytes:
    """The proxy's response head, read a byte at a time: what follows it belongs to the
    tunnel (and is not sent before we speak, but must not be swallowed if it were)."""
    head = bytearray()
    while not head.endswith(_HEAD_END):
        byte = sock.recv(1)
        if not byte:
            raise ProxyError(f"the download proxy {where} closed the connection")
        head += byte
        if len(head) > MAX_RESPONSE_HEAD:
            raise ProxyError(f"the download proxy {where} sent an oversized response")
    return bytes(head)


def _status(head: bytes) -> int:
    fields = head.split(b"\r\n", 1)[0].split()
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise ProxyError("the download proxy's answer is not HTTP")
    return int(fields[1])
