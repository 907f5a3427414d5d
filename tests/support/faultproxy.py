"""A TCP proxy on loopback in front of a real server, that can drop or hold what goes through.

It relays bytes (TLS passes through untouched, so the client still verifies the server's
certificate and presents its own). Three modes, switched at any time:

- ``heal()``: relay both ways (the start);
- ``drop()``: every request is answered by the connection closing. A connection that
  already carries traffic is closed when its client sends anything; a new one relays its
  first client flight (the TLS ClientHello) and the server's answer, and is closed on the
  next, so the client has finished its handshake and sent a request when the connection
  goes: what an API server restart or a load-balancer failover looks like to a client
  (aiohttp's ``ServerDisconnectedError``);
- ``hold()``: nothing moves either way on any connection, old or new, until ``heal()``
  (then what was held is relayed) or ``drop()`` (then the connections are closed): a
  server or network that stopped answering without closing anything.
"""

from __future__ import annotations

import enum
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

_POLL_S = 0.05


class Mode(enum.Enum):
    PASS = "pass"
    DROP = "drop"
    HOLD = "hold"


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.listener = socket.create_server((host, 0))
        self.listener.settimeout(_POLL_S)
        self.host = host
        self.port = int(self.listener.getsockname()[1])
        self.mode = Mode.PASS
        self.dropped = 0  # connections closed by drop()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    # -- control -------------------------------------------------------------------
    def heal(self) -> None:
        self._set(Mode.PASS)

    def drop(self) -> None:
        self._set(Mode.DROP)

    def hold(self) -> None:
        self._set(Mode.HOLD)

    def _set(self, mode: Mode) -> None:
        with self._changed:
            self.mode = mode
            self._changed.notify_all()

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._set(Mode.DROP)
        self._thread.join(5)
        self.listener.close()

    # -- relaying ------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        pair = _Pair(self, client, server)
        threading.Thread(target=pair.pump, args=(client, server, True), daemon=True).start()
        threading.Thread(target=pair.pump, args=(server, client, False), daemon=True).start()

    def wait_while(self, mode: Mode) -> Mode:
        with self._changed:
            while self.mode is mode and not self._stopping.is_set():
                self._changed.wait(_POLL_S)
            return self.mode


class _Pair:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client, self.server = client, server
        self.client_flights = 0
        self.closed = threading.Event()
        for sock in (client, server):
            sock.settimeout(_POLL_S)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            for sock in (self.client, self.server):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        proxy = self.proxy
        while not self.closed.is_set():
            if proxy.mode is Mode.HOLD and proxy.wait_while(Mode.HOLD) is Mode.DROP:
                self._drop()
                return
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                self.close()
                return
            if not data:
                self.close()
                return
            mode = proxy.wait_while(Mode.HOLD)
            if from_client:
                self.client_flights += 1
                if mode is Mode.DROP and self.client_flights > 1:
                    self._drop()
                    return
            try:
                target.sendall(data)
            except OSError:
                self.close()
                return

    def _drop(self) -> None:
        if not self.closed.is_set():
            self.proxy.dropped += 1
        self.close()


@contextmanager
def fault_proxy(upstream: tuple[str, int], host: str = "127.0.0.1") -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, host).start()
    try:
        yield proxy
    finally:
        proxy.stop()
