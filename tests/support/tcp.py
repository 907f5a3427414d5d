"""Byte-level helpers for the test proxies on loopback."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

HEAD_END = b"\r\n\r\n"


def read_head(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """An HTTP message head (with its blank line) and whatever arrived after it; None
    when the peer closed first."""
    data = b""
    while HEAD_END not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(HEAD_END)
    return head + HEAD_END, rest


def pipe(one: socket.socket, other: socket.socket, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes (or ``stop`` is set)."""
    with selectors.DefaultSelector() as selector:
        selector.register(one, selectors.EVENT_READ, other)
        selector.register(other, selectors.EVENT_READ, one)
        while not stop.is_set():
            for key, _ in selector.select(timeout=0.5):
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    key.data.sendall(data)
                except OSError:
                    return


@dataclass(frozen=True)
class Request:
    """The head of an HTTP request as it arrived, and the bytes that came after it."""

    head: bytes
    rest: bytes

    @property
    def line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def method(self) -> str:
        return self.line.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return [*self.line.split(" "), ""][1]

    def headers(self, name: str) -> list[str]:
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        prefix = name.lower() + ":"
        return [line.split(":", 1)[1].strip() for line in lines if line.lower().startswith(prefix)]


class LoopbackServer:
    """A TCP server on loopback with a thread per connection; subclasses answer each
    connection's first request in ``request``.

    Use as a context manager; leaving it closes the listener, sets ``stopping`` (which
    a handler holding a connection waits on) and joins the threads.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.stopping = threading.Event()
        self.lock = threading.Lock()  # for what subclasses record
        self._listener = socket.create_server((host, 0))
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def request(self, client: socket.socket, request: Request) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for thread in self._threads:
            thread.join(10)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._spawn(self._handle, client)

    def _handle(self, client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            received = read_head(client)
            if received is not None:
                self.request(client, Request(*received))
