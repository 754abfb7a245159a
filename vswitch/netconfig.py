"""The network keys of the configuration (issue 9): a bridge's subnet,
gateway and masquerade, a port's published ports, and the rules that tie
ports' addresses to their bridge's subnet.

config.py calls in here from its parse_* and check_global functions, so a
config file, the database and an API request are checked by the same code.
Everything here is pure; address allocation (assign_addresses) is a pure
function of the new and the previous configuration too, which is what
keeps an allocated address the same across restarts and reloads.

Rules, for a bridge with a subnet:
  - its gateway (default: the subnet's first host) belongs to the bridge's
    own internal port, named after the bridge; no port may take that name;
  - a port has at most one IPv4 address, inside the subnet, never the
    gateway's, never another port's (a bare address gets the subnet's
    prefix length);
  - a `tap` port in a namespace without an IPv4 address is given the next
    free one (assign_addresses);
  - published ports need the port to have an address there.
Across bridges: subnets do not overlap, and a host port is published once
per protocol.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Collection, Mapping

from . import ipam
from .ipam import AddressError

if TYPE_CHECKING:
    from .config import BridgeConfig, PortConfig, SwitchConfig

Path = tuple[str, ...]
PUBLISH_RE = re.compile(r"^(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?$")
PROTOCOLS = ("tcp", "udp")


def _error(path: Path, message: str) -> Exception:
    from .config import ConfigError
    return ConfigError(path, message)


# --- values ---------------------------------------------------------------------

def parse_bridge_network(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """subnet, gateway, masquerade of a bridge's data (absent keys: None)."""
    from .config import check_bool
    out: dict[str, Any] = {"subnet": None, "gateway": None, "masquerade": None}
    subnet = data.get("subnet")
    net: ipaddress.IPv4Network | None = None
    if subnet is not None:
        try:
            net = ipam.parse_subnet(subnet)
        except AddressError as e:
            raise _error(path + ("subnet",), str(e)) from None
        out["subnet"] = str(net)
    gateway = data.get("gateway")
    if gateway is not None:
        if net is None:
            raise _error(path + ("gateway",), "a gateway needs a subnet")
        try:
            out["gateway"] = str(ipam.parse_address(gateway, net, "gateway"))
        except AddressError as e:
            raise _error(path + ("gateway",), str(e)) from None
    if data.get("masquerade") is not None:
        out["masquerade"] = check_bool(data["masquerade"], path + ("masquerade",),
                                       "masquerade")
    return out


@dataclass(frozen=True)
class Published:
    host_port: int
    port: int
    proto: str

    def __str__(self) -> str:
        return f"{self.host_port}:{self.port}/{self.proto}"

    @classmethod
    def parse(cls, text: str) -> "Published":
        m = PUBLISH_RE.match(text)
        assert m, text
        return cls(int(m.group(1)), int(m.group(2)), m.group(3) or "tcp")


def parse_publish(value: Any, path: Path) -> tuple[str, ...]:
    """["8080:80/tcp", "5353:53/udp"] or "8080:80,5353:53/udp" ->
    normalised "HOSTPORT:PORT/PROTO" strings (tcp when left out)."""
    items: list[Any]
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise _error(path, "publish must be a list like [\"8080:80/tcp\"]")
    out: list[str] = []
    seen: dict[tuple[int, str], str] = {}
    for item in items:
        text = item.strip().lower() if isinstance(item, str) else item
        m = PUBLISH_RE.match(text) if isinstance(text, str) else None
        if not m:
            raise _error(path, f"{item!r} is not HOSTPORT:PORT[/tcp|/udp] (like 8080:80/tcp)")
        for num in (m.group(1), m.group(2)):
            if not 1 <= int(num) <= 65535:
                raise _error(path, f"{item}: port {int(num)} is out of range 1..65535")
        pub = Published.parse(text)
        key = (pub.host_port, pub.proto)
        if key in seen:
            raise _error(path, f"host port {pub.host_port}/{pub.proto} is listed twice "
                               f"({seen[key]} and {pub})")
        seen[key] = str(pub)
        out.append(str(pub))
    return tuple(out)


def with_subnet_prefix(ips: Any, subnet: str | None) -> Any:
    """On a subnet bridge a bare IPv4 address (--ip 10.1.0.5, as Docker
    takes it) means that address with the subnet's prefix length."""
    if not subnet:
        return ips
    plen = subnet.split("/")[1]

    def fix(v: Any) -> Any:
        if isinstance(v, str) and "/" not in v:
            try:
                ipaddress.IPv4Address(v.strip())
            except ValueError:
                return v
            return f"{v.strip()}/{plen}"
        return v
    if isinstance(ips, (list, tuple)):
        return [fix(v) for v in ips]
    return fix(ips)


# --- ports' addresses in their bridge's subnet ---------------------------------

def ipv4_of(port: "PortConfig") -> list[ipaddress.IPv4Interface]:
    out = []
    for cidr in port.ip:
        iface = ipaddress.ip_interface(cidr)
        if isinstance(iface, ipaddress.IPv4Interface):
            out.append(iface)
    return out


def port_address(port: "PortConfig") -> ipaddress.IPv4Address | None:
    """A port's IPv4 address (on a subnet bridge it has at most one)."""
    v4 = ipv4_of(port)
    return v4[0].ip if v4 else None


def gets_address(port: "PortConfig") -> bool:
    """Ports the switch addresses itself on a subnet bridge: TAPs in a
    namespace (the containers of Docker's picture).  An internal port or a
    TAP left in the daemon's namespace would put a second route to the
    subnet beside the gateway's, so those keep what they are given."""
    return port.type == "tap" and bool(port.netns)


def check_bridge(br: "BridgeConfig") -> None:
    """The per-bridge rules (see the module's comment)."""
    base = ("bridge", br.name)
    for port in br.ports.values():
        if port.publish and not br.subnet:
            raise _error(base + ("port", port.name, "publish"),
                         f"publishing ports needs a subnet on bridge {br.name} "
                         f"(vswitchctl set bridge {br.name} subnet=CIDR)")
        if port.publish and port.type in ("system", "bond"):
            raise _error(base + ("port", port.name, "publish"),
                         f"a {port.type} port has no address to publish")
    if not br.subnet:
        return
    net = ipaddress.IPv4Network(br.subnet)
    gateway = br.gateway_address
    if br.name in br.ports:
        raise _error(base + ("port", br.name), f"the name {br.name} belongs to the bridge's "
                     "own internal port (it holds the gateway); pick another port name")
    owner: dict[ipaddress.IPv4Address, str] = {}
    for port in br.ports.values():
        path = base + ("port", port.name, "ip")
        v4 = ipv4_of(port)
        if len(v4) > 1:
            raise _error(path, f"a port on subnet bridge {br.name} has one IPv4 address, "
                               f"not {len(v4)}")
        for iface in v4:
            try:
                addr = ipam.parse_address(str(iface), net, "ip")
            except AddressError as e:
                raise _error(path, str(e)) from None
            if addr == gateway:
                raise _error(path, f"{addr} is the gateway's address (bridge {br.name})")
            if addr in owner:
                raise _error(path, f"{addr} is already port {owner[addr]}'s address")
            owner[addr] = port.name
        if port.publish and not v4 and not gets_address(port):
            raise _error(base + ("port", port.name, "publish"),
                         f"port {port.name} has no address to publish (give it --ip)")


def check_global(cfg: "SwitchConfig") -> None:
    """Rules across bridges: subnets apart, host ports published once, no
    port named after a subnet bridge (that name is the bridge's local port)."""
    nets: list[tuple[ipaddress.IPv4Network, str]] = []
    for br in cfg.bridges.values():
        check_bridge(br)
        if br.subnet:
            net = ipaddress.IPv4Network(br.subnet)
            for other, name in nets:
                if net.overlaps(other):
                    raise _error(("bridge", br.name, "subnet"),
                                 f"subnet {net} overlaps bridge {name}'s {other}")
            nets.append((net, br.name))
    local = {b.name for b in cfg.bridges.values() if b.subnet}
    published: dict[tuple[int, str], str] = {}
    for br in cfg.bridges.values():
        for port in br.ports.values():
            path = ("bridge", br.name, "port", port.name)
            if port.name in local and port.name != br.name:
                raise _error(path, f"the name {port.name} belongs to bridge {port.name}'s "
                                   "own internal port; pick another port name")
            for text in port.publish:
                pub = Published.parse(text)
                key = (pub.host_port, pub.proto)
                if key in published:
                    raise _error(path + ("publish",), f"host port {pub.host_port}/{pub.proto} "
                                 f"is already published by port {published[key]}")
                published[key] = port.name


# --- allocation -------------------------------------------------------------------

def assign_addresses(cfg: "SwitchConfig", previous: "SwitchConfig | None" = None,
                     extra: Collection[str] = ()) -> "SwitchConfig":
    """Give every port that gets_address() (and every port named in extra)
    without an IPv4 address one of its bridge's subnet.

    An address the same port held in `previous` (the running or stored
    configuration) is kept when it is still free: so a restart with
    --config, or a reload of a file that names no addresses, hands out the
    same addresses as before.  Then the lowest free address for the rest,
    in the order the ports are configured.  Raises ConfigError (subnet
    full) naming the port that found no room."""
    from .config import check_global as config_check_global
    bridges = dict(cfg.bridges)
    for name, br in cfg.bridges.items():
        if not br.subnet:
            continue
        net = ipaddress.IPv4Network(br.subnet)
        need = [p for p in br.ports.values()
                if port_address(p) is None and (gets_address(p) or p.name in extra)]
        if not need:
            continue
        taken = {br.gateway_address} | {a for p in br.ports.values()
                                        if (a := port_address(p)) is not None}
        chosen: dict[str, ipaddress.IPv4Address] = {}
        old_br = previous.bridges.get(name) if previous else None
        for p in need:
            old = old_br.ports.get(p.name) if old_br else None
            addr = port_address(old) if old else None
            if addr is not None and ipam.is_host(net, addr) and addr not in taken:
                chosen[p.name] = addr
                taken.add(addr)
        for p in need:
            if p.name in chosen:
                continue
            try:
                chosen[p.name] = ipam.allocate(net, taken)
            except AddressError as e:
                raise _error(("bridge", name, "port", p.name), str(e)) from None
            taken.add(chosen[p.name])
        ports = dict(br.ports)
        for p in need:
            ports[p.name] = replace(p, ip=(f"{chosen[p.name]}/{net.prefixlen}",) + p.ip)
        bridges[name] = replace(br, ports=ports)
    out = replace(cfg, bridges=bridges)
    config_check_global(out)
    return out


def strip_subnet_addresses(br: "BridgeConfig", subnet: str) -> tuple["BridgeConfig", set[str]]:
    """The bridge with every port's address inside `subnet` (the one being
    replaced) removed, and the names of those ports: they are addressed
    again in the new subnet (see Network.set_bridge)."""
    net = ipaddress.IPv4Network(subnet)
    ports = dict(br.ports)
    moved: set[str] = set()
    for p in br.ports.values():
        keep = tuple(c for c in p.ip if ipaddress.ip_interface(c).ip not in net)
        if keep != p.ip:
            ports[p.name] = replace(p, ip=keep)
            moved.add(p.name)
    return replace(br, ports=ports), moved


def set_bridge_network(cfg: "SwitchConfig", br: "BridgeConfig",
                       settings: Mapping[str, Any]) -> "SwitchConfig":
    """`set bridge BR subnet=.. gateway=.. masquerade=..` (an empty value
    clears) as a whole new configuration, addresses included.

    Clearing the subnet clears the gateway too (it belonged to the subnet)
    and leaves ports their addresses, as plain addresses.  Changing the
    subnet re-addresses every port that held an address of the old one:
    the same address when the new subnet still has it (a subnet made
    wider), else the next free one; a gateway of the old subnet that the
    new one does not hold goes back to the default."""
    path = ("bridge", br.name)
    data: dict[str, Any] = {"subnet": br.subnet, "gateway": br.gateway,
                            "masquerade": br.masquerade}
    for key, value in settings.items():
        data[key] = None if value in ("", None) else value
    if data["subnet"] is None and data["gateway"] is not None:
        if "gateway" in settings:
            raise _error(path + ("gateway",), "a gateway needs a subnet")
        data["gateway"] = None
    if (data["subnet"] != br.subnet and "gateway" not in settings
            and data["gateway"] is not None):
        try:
            new_net = ipam.parse_subnet(data["subnet"])
            ipam.parse_address(data["gateway"], new_net, "gateway")
        except AddressError:
            data["gateway"] = None
    net = parse_bridge_network(data, path)
    new_br = replace(br, **net)
    moved: set[str] = set()
    if br.subnet and new_br.subnet and new_br.subnet != br.subnet:
        new_br, moved = strip_subnet_addresses(new_br, br.subnet)
    return assign_addresses(cfg.with_bridge(new_br), cfg, extra=moved)
