"""Default routes in ports' namespaces, and the sysctls a network needs.

A port on a subnet bridge gets `default via GATEWAY dev eth0` in its
namespace, unless the namespace already has a default route that is not
ours: then that one stays (we never fight a user's routing) and `show`
says so.  Our routes carry a protocol number of their own (RTPROT_VSWITCH)
so that they can be told apart from anybody else's after a restart or a
gateway change, without remembering anything.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .errors import VswitchError
from .links import _ipr, netlink_call

# Shown as "proto 118" by `ip route`; unused by the protocols listed in
# iproute2's rt_protos (0-4, 8-18, 42, 99, 186-192).
RTPROT_VSWITCH = 118
MAIN_TABLE = 254


@dataclass(frozen=True)
class DefaultRoute:
    gateway: str | None
    device: str | None
    proto: int
    metric: int


FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
ANY = {4: "0.0.0.0/0", 6: "::/0"}


@netlink_call
def default_routes(netns: str | None, version: int = 4) -> list[DefaultRoute]:
    with _ipr(netns, "list default routes") as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        out = []
        for msg in ipr.get_routes(family=FAMILY[version], table=MAIN_TABLE):
            if msg["type"] != 1:     # RTN_UNICAST; IPv6 lists unreachable defaults too
                continue
            if msg["dst_len"] != 0 or msg.get_attr("RTA_DST"):
                continue
            out.append(DefaultRoute(msg.get_attr("RTA_GATEWAY"),
                                    names.get(msg.get_attr("RTA_OIF")), msg["proto"],
                                    msg.get_attr("RTA_PRIORITY") or 0))
        return out


@netlink_call
def add_default_route(netns: str, device: str, gateway: str, version: int = 4) -> None:
    with _ipr(netns, f"add a default route via {gateway} in namespace {netns}") as ipr:
        idx = ipr.link_lookup(ifname=device)
        if not idx:
            raise VswitchError("ENODEV", f"no interface {device} in namespace {netns}")
        ipr.route("add", dst=ANY[version], gateway=gateway, oif=idx[0], proto=RTPROT_VSWITCH,
                  table=MAIN_TABLE, family=FAMILY[version])


@netlink_call
def del_default_route(netns: str, route: DefaultRoute, version: int = 4) -> None:
    with _ipr(netns, f"remove the default route via {route.gateway} in {netns}") as ipr:
        idx = ipr.link_lookup(ifname=route.device) if route.device else []
        if not idx:
            return   # gone with its device
        try:
            ipr.route("del", dst=ANY[version], gateway=route.gateway, oif=idx[0],
                      proto=route.proto, table=MAIN_TABLE, priority=route.metric,
                      family=FAMILY[version])
        except Exception as e:  # already gone (the kernel removes it with the address)
            if getattr(e, "code", None) != 3:   # ESRCH
                raise


# --- sysctls ------------------------------------------------------------------------
# /proc/sys/net belongs to the network namespace of the process that opens
# it: the daemon's.

SYSCTL = Path("/proc/sys/net/ipv4")
FORWARDING = {4: SYSCTL / "ip_forward", 6: Path("/proc/sys/net/ipv6/conf/all/forwarding")}


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        raise VswitchError.from_errno(e.errno or 5, f"write {path}") from None


def ip_forward(version: int = 4) -> bool:
    try:
        return FORWARDING[version].read_text().strip() == "1"
    except OSError:
        return False


def enable_forwarding(version: int) -> None:
    _write(FORWARDING[version], "1")


def set_route_localnet(device: str) -> None:
    if not os.path.exists(SYSCTL / "conf" / device):
        raise VswitchError("ENODEV", f"no interface {device} in the daemon's namespace")
    _write(SYSCTL / "conf" / device / "route_localnet", "1")
