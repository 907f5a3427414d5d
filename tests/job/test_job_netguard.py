"""The SSRF guard: address classification (pure) and resolution of hostile host spellings."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from mediaimport_job.netguard import AddressPolicy, BlockedAddressError, blocked_reason

BLOCKED = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT: not is_private, still internal
    "100.127.255.254",
    "169.254.169.254",  # cloud metadata
    "224.0.0.1",  # multicast: ipaddress calls it global
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.0.1",
    "198.18.0.1",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "fec0::1",
    "2001:db8::1",
    "2001::1",  # Teredo
    "2002:7f00:1::1",  # 6to4 wrapping 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 wrapping 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 wrapping 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 wrapping 169.254.169.254
    "64:ff9b:1::1",  # local-use NAT64
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8: how IPv6-only clusters reach IPv4 sites
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("address", BLOCKED)
def test_internal_addresses_are_blocked(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is not None
    with pytest.raises(BlockedAddressError):
        AddressPolicy().check(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None
    AddressPolicy().check(ipaddress.ip_address(address))


def test_reasons_name_the_range() -> None:
    assert "metadata" in (blocked_reason(ipaddress.ip_address("169.254.169.254")) or "")
    assert "CGNAT" in (blocked_reason(ipaddress.ip_address("100.64.0.1")) or "")
    assert "embedded" in (blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1")) or "")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "::ffff:127.0.0.1",
        "::1",
        "localhost",
        "0.0.0.0",
        "100.64.0.1",
        "169.254.169.254",
        "fe80::1",
        "224.0.0.1",
        "240.0.0.1",
        "fc00::1",
        "127.0.0.1.",
        "0x7f.1.",
    ],
)
def test_hostile_spellings_are_resolved_then_refused(host: str) -> None:
    """getaddrinfo turns decimal, hex, octal and short forms into 127.0.0.1: check after it."""
    with pytest.raises(BlockedAddressError):
        AddressPolicy().resolve(host, 80)


def test_allow_network_lets_exactly_that_network_in() -> None:
    policy = AddressPolicy((ipaddress.ip_network("127.0.0.2/32"),))
    assert policy.resolve("127.0.0.2", 80) == ["127.0.0.2"]
    # With a trailing dot it is the same address (getaddrinfo alone would look it up as a name).
    assert policy.resolve("127.0.0.2.", 80) == ["127.0.0.2"]
    policy.check(ipaddress.ip_address("::ffff:127.0.0.2"))  # the mapped form is the same host
    with pytest.raises(BlockedAddressError):
        policy.resolve("127.0.0.1", 80)


def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name answering with one public and one internal address is refused outright."""

    def fake_getaddrinfo(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(BlockedAddressError, match=r"10\.0\.0\.5"):
        AddressPolicy().resolve("mixed.example", 443)
