"""VXLAN tunnel ports: their settings and their life in the engine.

A port of type ``vxlan`` has Open vSwitch's option names:

    remote_ip   one address or several (head-end replication): required
    local_ip    the address to receive on and send from (default: any)
    key         the VNI, 0..16777215 (default 0)
    dst_port    the UDP port, both ways (default 4789)
    csum        compute the outer UDP checksum (default true, as the
                kernel's vxlan device does)
    df_default  set DF on the outer header (default false, as the kernel;
                frames too big for the tunnel are then dropped, not
                fragmented)
    ttl         of the outer header (default 64)
    udp_gso     send a 64 KB TCP segment from a TAP as one UDP_SEGMENT send
                per remote instead of one datagram per segment (default false;
                vswitch's own option: see the README for when it pays)
    mtu         the inner MTU (default: the underlay's minus 50)

The engine (csrc/tunnel.c) does the datapath; here: validating settings
(the same code for the CLI, the config file and the database), choosing
the inner MTU from the underlay, and attaching, changing and reporting a
tunnel interface.  The underlay is IPv4.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from .config import ConfigError, Path, check_bool, check_int
from .errors import VswitchError
from .links import _ipr, netlink_call

if TYPE_CHECKING:
    from .config import PortConfig, SwitchConfig
    from .datapath import Datapath

VXLAN_KEYS = ("remote_ip", "local_ip", "key", "dst_port", "csum", "df_default", "ttl",
              "udp_gso")
# Settings that `set port` changes on a running tunnel (the interface is
# replaced in place when anything but the remotes changes).
LIVE_KEYS = VXLAN_KEYS
DEFAULT_DST_PORT = 4789
OVERHEAD = 50          # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
MAX_REMOTES = 64
MAX_VNI = (1 << 24) - 1
MAX_INNER_MTU = 65000
NOT_FOR_VXLAN = ("netns", "ifname", "ip", "mac", "offload", "publish")


def _check_ipv4(value: Any, path: Path, what: str) -> str:
    try:
        addr = ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        raise ConfigError(path, f"{value!r} is not an IPv4 address (the underlay is IPv4)"
                          ) from None
    if addr.is_multicast:
        raise ConfigError(path, f"{addr} is a multicast group: only unicast {what} "
                                "addresses are supported (list the remotes for flooding)")
    if addr.is_unspecified or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise ConfigError(path, f"{addr} is not a usable address for {what}")
    return str(addr)


def parse_remotes(value: Any, path: Path) -> tuple[str, ...]:
    """'10.0.0.1,10.0.0.2' or a list: unique IPv4 unicast addresses."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(path, "remote_ip must be an address or a list of them")
    if not items:
        raise ConfigError(path, "a vxlan port needs at least one remote_ip")
    if len(items) > MAX_REMOTES:
        raise ConfigError(path, f"a vxlan port has at most {MAX_REMOTES} remotes")
    remotes = tuple(_check_ipv4(v, path, "remote_ip") for v in items)
    dup = {r for r in remotes if remotes.count(r) > 1}
    if dup:
        raise ConfigError(path, f"remote_ip {sorted(dup)[0]} is listed twice")
    return remotes


def parse_vxlan_settings(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The vxlan keys of a port table (already free of unknown keys)."""
    for key in NOT_FOR_VXLAN:
        if key in data:
            raise ConfigError(path + (key,), f"a vxlan port has no device of its own; "
                                             f"{key} is not allowed")
    if "remote_ip" not in data:
        raise ConfigError(path + ("remote_ip",), "a vxlan port needs remote_ip")
    out: dict[str, Any] = {"remote_ip": parse_remotes(data["remote_ip"],
                                                      path + ("remote_ip",))}
    if data.get("local_ip") is not None:
        out["local_ip"] = _check_ipv4(data["local_ip"], path + ("local_ip",), "local_ip")
        if out["local_ip"] in out["remote_ip"]:
            raise ConfigError(path + ("remote_ip",), f"{out['local_ip']} is local_ip; "
                                                     "it cannot be a remote too")
    if data.get("key") is not None:
        if str(data["key"]).strip() == "flow":
            raise ConfigError(path + ("key",), "key=flow (a VNI chosen per flow) is not "
                                               "supported: give a number")
        out["key"] = check_int(data["key"], path + ("key",), "key (VNI)", 0, MAX_VNI)
    if data.get("dst_port") is not None:
        out["dst_port"] = check_int(data["dst_port"], path + ("dst_port",), "dst_port",
                                    1, 65535)
    for key in ("csum", "df_default", "udp_gso"):
        if data.get(key) is not None:
            out[key] = check_bool(data[key], path + (key,), key)
    if data.get("ttl") is not None:
        out["ttl"] = check_int(data["ttl"], path + ("ttl",), "ttl", 1, 255)
    if data.get("mtu") is not None:
        # the outer packet (inner MTU + 50) must fit an IPv4 datagram
        check_int(data["mtu"], path + ("mtu",), "mtu (the inner MTU)", 68, MAX_INNER_MTU)
    return out


def reject_vxlan_keys(data: Mapping[str, Any], path: Path, ptype: str) -> None:
    for key in VXLAN_KEYS:
        if key in data:
            raise ConfigError(path + (key,), f"{key} is for vxlan ports (type = \"vxlan\"), "
                                             f"not {ptype} ones")


def check_clashes(cfg: "SwitchConfig") -> None:
    """Two tunnels that share a UDP socket (local_ip, dst_port) and a VNI may
    not share a remote: a frame from it would belong to both."""
    seen: dict[tuple[str, int, int, str], str] = {}
    for br in cfg.bridges.values():
        for port in br.ports.values():
            if port.type != "vxlan":
                continue
            sock = (port.local_ip or "0.0.0.0", port.dst_port or DEFAULT_DST_PORT,
                    port.key or 0)
            for r in port.remote_ip:
                other = seen.get(sock + (r,))
                if other:
                    raise ConfigError(("bridge", br.name, "port", port.name, "remote_ip"),
                                      f"port {other!r} already receives VNI {sock[2]} from "
                                      f"{r} on UDP port {sock[1]}")
                seen[sock + (r,)] = port.name


# --- the underlay ---------------------------------------------------------------

@netlink_call
def underlay(local_ip: str | None, remotes: tuple[str, ...]) -> tuple[int | None, bool]:
    """(the smallest MTU of the devices the remotes are routed through, or of
    local_ip's device; None when no route is known yet), and whether local_ip
    is on an interface of the daemon's namespace (True when not set)."""
    with _ipr(None, "look up the underlay") as ipr:
        present = True
        mtus = []
        if local_ip:
            present = False
            for a in ipr.get_addr(family=2):
                if a.get_attr("IFA_ADDRESS") == local_ip or a.get_attr("IFA_LOCAL") == local_ip:
                    present = True
                    link = ipr.get_links(a["index"])[0]
                    mtus.append(link.get_attr("IFLA_MTU"))
        for r in remotes:
            try:
                routes = ipr.route("get", dst=r)
            except Exception:   # no route (yet): the MTU comes from elsewhere
                continue
            for rt in routes:
                oif = rt.get_attr("RTA_OIF")
                if oif:
                    mtus.append(ipr.get_links(oif)[0].get_attr("IFLA_MTU"))
        mtus = [m for m in mtus if m]
        return (min(mtus) if mtus else None), present


@dataclass
class TunnelState:
    mtu: int                  # inner MTU in force
    mtu_from: str             # "mtu" (configured), "underlay", or "default"
    local_ip_present: bool


def inner_mtu(cfg: "PortConfig") -> TunnelState:
    dev_mtu, present = underlay(cfg.local_ip, cfg.remote_ip)
    if cfg.mtu:
        return TunnelState(cfg.mtu, "mtu", present)
    if dev_mtu:
        return TunnelState(max(68, dev_mtu - OVERHEAD), "underlay", present)
    return TunnelState(1500 - OVERHEAD, "default", present)


def attach(dp: "Datapath", port_id: int, cfg: "PortConfig") -> tuple[int, TunnelState]:
    """Attach the tunnel interface of a vxlan port; (iface id, its state)."""
    st = inner_mtu(cfg)
    try:
        iface = dp.add_tunnel(port_id, cfg.key or 0, cfg.remote_ip, cfg.local_ip,
                              cfg.dst_port or DEFAULT_DST_PORT, st.mtu, ttl=cfg.ttl or 0,
                              csum=cfg.csum is not False, df=bool(cfg.df_default),
                              udp_gso=bool(cfg.udp_gso))
    except VswitchError as e:
        if e.code == "EEXIST":
            raise VswitchError("EEXIST", f"another vxlan port already receives VNI "
                                         f"{cfg.key or 0} from one of {', '.join(cfg.remote_ip)}"
                               ) from None
        raise
    return iface, st


def only_remotes_changed(old: "PortConfig", new: "PortConfig") -> bool:
    return all(getattr(old, k) == getattr(new, k) for k in VXLAN_KEYS + ("mtu",)
               if k != "remote_ip")


@netlink_call
def address_present(ip: str) -> bool:
    with _ipr(None, f"look up address {ip}") as ipr:
        return any(a.get_attr("IFA_LOCAL") == ip or a.get_attr("IFA_ADDRESS") == ip
                   for a in ipr.get_addr(family=2))


def state_note(cfg: "PortConfig") -> str | None:
    """What `show` should warn about a tunnel (looked at now: the address
    may have come or gone since the port was attached)."""
    if cfg.local_ip and not address_present(cfg.local_ip):
        return (f"local_ip {cfg.local_ip} is on no interface of the daemon's namespace: "
                "nothing arrives (and the route's source address is used) until it is")
    return None
