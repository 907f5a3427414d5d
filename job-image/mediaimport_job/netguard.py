"""The address guard against server-side request forgery.

The job fetches URLs chosen by users, from inside a cluster. Without a guard a
URL (or a redirect, or a DNS answer) could point at the cloud metadata service,
the Kubernetes API or any pod. The guard has two halves:

* ``AddressPolicy`` classifies IP addresses with an explicit table of special
  ranges (IANA's special-purpose registries) plus ``ipaddress``'s own flags as a
  backstop, after unwrapping IPv6 forms that embed an IPv4 address
  (IPv4-mapped, 6to4, NAT64), so ``::ffff:127.0.0.1`` is refused like
  ``127.0.0.1`` while a NAT64 address of a public site stays reachable.
* ``GuardedPoolManager`` is a urllib3 pool manager whose connections resolve the
  host once, refuse it when ANY resolved address is blocked, and connect to the
  checked addresses themselves, so a second DNS answer (rebinding) never gets a
  say. TLS still verifies the certificate for, and sends SNI with, the host
  name; the Host header is the host name. urllib3 reads no proxy environment
  variables, so ``HTTP_PROXY`` cannot route around the guard; an explicit
  download proxy (``tunnel.TunnelProxy``) is asked to CONNECT to the checked
  address, never to a name it would resolve itself.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import NameResolutionError, NewConnectionError

from .tunnel import TunnelProxy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Each blocked range with the name used in error messages. Written out rather
# than left to ``ipaddress.is_global`` alone, whose tables changed between
# Python releases and which calls multicast (224.0.0.0/4) "global".
_BLOCKED_V4: tuple[tuple[_V4, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified/this-network"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "shared address space (CGNAT)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local (cloud metadata)"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved/broadcast"),
)
_BLOCKED_V6: tuple[tuple[_V6, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("::/96"), "IPv4-compatible (deprecated)"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001::/23"), "IETF protocol assignments (incl. Teredo)"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("5f00::/16"), "segment routing"),
    (_V6("fc00::/7"), "unique local (private)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated)"),
    (_V6("ff00::/8"), "multicast"),
)
_NAT64 = _V6("64:ff9b::/96")


class BlockedAddressError(Exception):
    """A host resolved to an address the policy refuses."""


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is a translation form.

    IPv4-mapped (``::ffff:a.b.c.d``) is how dual-stack sockets show IPv4 peers;
    6to4 (``2002:AABB:CCDD::/48``) and NAT64 (``64:ff9b::a.b.c.d``) are routed to
    the embedded IPv4 address by gateways. Teredo is blocked outright instead.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` must not be contacted, or None when it is a public address."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = blocked_reason(inner)
        return None if reason is None else f"{reason}, embedded in {address}"
    if isinstance(address, ipaddress.IPv4Address):
        for network4, name in _BLOCKED_V4:
            if address in network4:
                return name
    else:
        for network6, name in _BLOCKED_V6:
            if address in network6:
                return name
    # Backstop for ranges the table does not name (and future IANA entries
    # that a newer Python knows about).
    if not address.is_global or address.is_multicast or address.is_reserved:
        return "not globally routable"
    return None


_NUMERIC_HOST = frozenset("0123456789abcdefxABCDEFX.")


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names without any DNS lookup, or None for a host name.

    Besides IPv4 and IPv6 literals (brackets and zone index allowed), the legacy
    IPv4 spellings that ``getaddrinfo`` also turns into addresses count:
    ``127.1``, ``2130706433``, ``0x7f000001``, ``0177.0.0.1``, and each of these with a
    trailing dot (``127.0.0.1.``), which browsers read as the address. The API checks these
    before it accepts a URL; the job checks every resolved address anyway.
    """
    text = host.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    if text[:1].isdigit():
        # "127.0.0.1." is that address written as a fully qualified name: browsers read it
        # so; getaddrinfo would send it to DNS instead.
        text = text.removesuffix(".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text[:1].isdigit() and set(text) <= _NUMERIC_HOST:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


_LOOPBACKS = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))


def fixed_addresses(host: str) -> tuple[IPAddress, ...]:
    """The addresses a URL's host stands for without any DNS lookup, if it has fixed ones.

    A literal (``literal_address``), or for ``localhost`` and names under it both
    loopback addresses: RFC 6761 reserves them for loopback, and a pod's
    /etc/hosts maps ``localhost`` to 127.0.0.1 and ::1. Empty for other names.
    """
    literal = literal_address(host)
    if literal is not None:
        return (literal,)
    name = host.strip().rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return _LOOPBACKS
    return ()


def parse_network(text: str) -> IPNetwork:
    """A CIDR (or a bare address, meaning /32 or /128) for ``--allow-network``."""
    return ipaddress.ip_network(text.strip(), strict=False)


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the job may connect to: public ones plus ``allowed`` networks."""

    allowed: tuple[IPNetwork, ...] = ()

    def check(self, address: IPAddress) -> None:
        """Raise ``BlockedAddressError`` unless the job may connect to ``address``."""
        candidates: list[IPAddress] = [address]
        inner = embedded_ipv4(address)
        if inner is not None:
            candidates.append(inner)
        for candidate in candidates:
            if any(candidate in network for network in self.allowed):
                return
        reason = blocked_reason(address)
        if reason is not None:
            raise BlockedAddressError(f"address {address} is refused ({reason})")

    def resolve(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` once and check every address; returns them in resolver order.

        Every address is checked, not just the first: a host that answers with
        one public and one private address could otherwise be steered to the
        private one by a connection failure.
        """
        if host.endswith(".") and literal_address(host) is not None:
            host = host.removesuffix(".")  # an address, not a name to look up
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except UnicodeError as exc:
            raise socket.gaierror(f"invalid host name {host!r}") from exc
        addresses: list[str] = []
        for info in infos:
            raw = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone index
            if raw not in addresses:
                addresses.append(raw)
        if not addresses:
            raise socket.gaierror(f"{host} has no addresses")
        for raw in addresses:
            self.check(ipaddress.ip_address(raw))
        return addresses


def connect_checked(
    addresses: Sequence[str],
    port: int,
    timeout: float | None,
    socket_options: Iterable[tuple[int, int, int | bytes]] | None,
    proxy: TunnelProxy | None = None,
) -> socket.socket:
    """Connect to the first reachable address of an already-checked list (through
    ``proxy``'s tunnel to that address, when one is given)."""
    last_error: OSError | None = None
    for raw in addresses:
        if proxy is not None:
            try:
                return proxy.connect(raw, port, timeout, socket_options)
            except OSError as exc:
                last_error = exc
                continue
        family = socket.AF_INET6 if ":" in raw else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            for level, option, value in socket_options or ():
                sock.setsockopt(level, option, value)
            sock.settimeout(timeout)
            sock.connect((raw, port))
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        return sock
    assert last_error is not None
    raise last_error


class _GuardedConnectionMixin:
    """Replaces urllib3's resolve-and-connect with resolve, check, connect-to-checked."""

    policy: ClassVar[AddressPolicy]
    # Not ``proxy``: urllib3's connections have an attribute of that name (its own proxies).
    tunnel: ClassVar[TunnelProxy | None]
    # Provided by urllib3's HTTPConnection.
    _dns_host: str
    host: str
    port: int
    timeout: float | None
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        try:
            addresses = self.policy.resolve(self._dns_host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        try:
            return connect_checked(
                addresses, self.port, self.timeout, self.socket_options, self.tunnel
            )
        except TimeoutError as exc:
            raise NewConnectionError(
                self,  # type: ignore[arg-type]
                f"connection to {self.host} timed out (connect timeout={self.timeout})",
            ) from exc
        except OSError as exc:
            raise NewConnectionError(
                self,  # type: ignore[arg-type]
                f"failed to connect to {self.host}: {exc}",
            ) from exc


class GuardedPoolManager(PoolManager):
    """A urllib3 PoolManager whose every new connection goes through ``policy`` (and
    through ``proxy``'s tunnel to the checked address, when there is one).

    ``BlockedAddressError`` propagates out of ``urlopen`` unwrapped (urllib3
    only wraps OSError subclasses), so callers can tell it from network errors.
    """

    def __init__(
        self, policy: AddressPolicy, proxy: TunnelProxy | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        guard = {"policy": policy, "tunnel": proxy}
        http_connection = type(
            "GuardedHTTPConnection", (_GuardedConnectionMixin, HTTPConnection), guard
        )
        https_connection = type(
            "GuardedHTTPSConnection", (_GuardedConnectionMixin, HTTPSConnection), guard
        )
        http_pool = type(
            "GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_connection}
        )
        https_pool = type(
            "GuardedHTTPSConnectionPool",
            (HTTPSConnectionPool,),
            {"ConnectionCls": https_connection},
        )
        self.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}


__all__ = [
    "AddressPolicy",
    "BlockedAddressError",
    "GuardedPoolManager",
    "blocked_reason",
    "embedded_ipv4",
    "literal_address",
    "parse_network",
]
