"""The node's network: a network namespace of its own, joined to this machine by a veth pair.

The kubelet, containerd, kube-proxy and every pod live in the namespace ``mediaimport-node``;
this machine keeps one end of the veth (``mediaimport0``). All addresses come from one
documentation range of RFC 5737, 198.51.100.0/24. (Sandboxed machines do use documentation
ranges for their own plumbing — one such machine reaches its package registries at an address
in 203.0.113.0/24 — so the stack keeps to a single /24 and checks it against this machine's
addresses, routes and resolvers before it takes it.)

    198.51.100.1/30     this machine's end (HOST_IP): the API server, S3, Postgres and
                        test origins listen here, so pods reach them
    198.51.100.2/30     the node's end (NODE_IP): the kubelet (10250) and NodePorts
    198.51.100.128/25   pods (POD_CIDR), on the bridge ``cni0`` inside the namespace
    198.51.100.64/26    Services (SERVICE_CIDR); ``kubernetes`` is 198.51.100.65

This machine routes POD_CIDR and SERVICE_CIDR to NODE_IP, so a pod or a ClusterIP can be
reached from here directly. The namespace has no default route: a packet for anywhere
but this machine's end and the cluster has nowhere to go. `up` refuses to start when any of
these ranges overlaps an address or route this machine already has.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

NETNS = "mediaimport-node"
NETNS_PATH = Path("/run/netns") / NETNS
HOST_IF = "mediaimport0"
NODE_IF = "eth0"
LINK_CIDR = "198.51.100.0/30"
HOST_IP = "198.51.100.1"
NODE_IP = "198.51.100.2"
POD_CIDR = "198.51.100.128/25"
SERVICE_CIDR = "198.51.100.64/26"
# The first address of SERVICE_CIDR: the `kubernetes` Service's ClusterIP.
SERVICE_IP = "198.51.100.65"
_RANGES = (LINK_CIDR, POD_CIDR, SERVICE_CIDR)


class NetworkError(RuntimeError):
    """The node's network could not be made (the message says why)."""


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


def exists() -> bool:
    return NETNS_PATH.exists() or _host_link_exists()


def _host_link_exists() -> bool:
    return Path(f"/sys/class/net/{HOST_IF}").exists()


def collisions() -> list[str]:
    """Addresses and routes of this machine (not ours) that overlap the node's ranges."""
    ours = [ipaddress.ip_network(r) for r in _RANGES]
    found = []
    for entry in json.loads(_ip("-j", "-4", "addr", "show") or "[]"):
        if entry.get("ifname") == HOST_IF:
            continue
        for info in entry.get("addr_info", []):
            net = ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)
            if any(net.overlaps(r) for r in ours):
                found.append(f"address {info['local']}/{info['prefixlen']} on {entry['ifname']}")
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("dev") == HOST_IF or route.get("type") in (
            "local", "broadcast",
        ):
            continue
        net = ipaddress.ip_network(dst, strict=False)
        if any(net.overlaps(r) for r in ours):
            found.append(f"route {dst} dev {route.get('dev', '?')}")
    # A resolver reached through the default route is invisible to the checks above, and
    # routing its address into the namespace would cut this machine off from DNS.
    for server in _nameservers():
        if any(server in r for r in ours):
            found.append(f"nameserver {server} (/etc/resolv.conf)")
    return found


def _nameservers() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return []
    servers = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                servers.append(ipaddress.ip_address(fields[1].split("%")[0]))
            except ValueError:
                continue
    return servers


def create() -> None:
    """Make the namespace, the veth pair, the addresses and this machine's two routes."""
    clashes = collisions()
    if clashes:
        raise NetworkError(
            "the local node's address ranges "
            f"({', '.join(_RANGES)}) overlap this machine's network: {'; '.join(clashes)}"
        )
    _ip("netns", "add", NETNS)
    _ip("link", "add", HOST_IF, "type", "veth", "peer", "name", NODE_IF, "netns", NETNS)
    _ip("addr", "add", f"{HOST_IP}/30", "dev", HOST_IF)
    _ip("link", "set", HOST_IF, "up")
    _ip("addr", "add", f"{NODE_IP}/30", "dev", NODE_IF, netns=NETNS)
    _ip("link", "set", NODE_IF, "up", netns=NETNS)
    _ip("link", "set", "lo", "up", netns=NETNS)
    for cidr in (POD_CIDR, SERVICE_CIDR):
        _ip("route", "add", cidr, "via", NODE_IP, "dev", HOST_IF)
    # Inside the namespace only (these are per-namespace): forward between the pods'
    # bridge and the veth, and let bridged pod traffic pass kube-proxy's iptables rules
    # (a pod reaching a Service whose endpoint is a pod on the same bridge).
    for key in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
        in_netns(["sh", "-c", f"echo 1 > /proc/sys/{key}"], check=True)


def delete() -> None:
    """Remove the namespace (with everything in it: bridge, iptables rules) and the veth."""
    if _host_link_exists():
        _ip("link", "delete", HOST_IF, check=False)  # the routes go with it
    if NETNS_PATH.exists():
        _ip("netns", "delete", NETNS, check=False)


def in_netns_argv(argv: list[str]) -> list[str]:
    """argv run inside the node's network namespace only (the mounts stay this machine's:
    `ip netns exec` would remount /sys and hide the cgroup hierarchies from the kubelet)."""
    return ["nsenter", f"--net={NETNS_PATH}", "--", *argv]


def in_netns(argv: list[str], *, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(in_netns_argv(argv), capture_output=True, text=True, check=check,
                          timeout=60)


def netns_inode() -> int | None:
    try:
        return NETNS_PATH.stat().st_ino
    except OSError:
        return None
