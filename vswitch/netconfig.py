"""The network keys of the configuration (issue 9): a bridge's subnet,
gateway and masquerade (and subnet6, gateway6 for IPv6), a port's
published ports, and the rules that tie ports' addresses to their
bridge's subnets.

config.py calls in here from its parse_* and check_global functions, so a
config file, the database and an API request are checked by the same code.
Everything here is pure; address allocation (assign_addresses) is a pure
function of the new and the previous configuration too, which is what
keeps an allocated address the same across restarts and reloads.

Rules, for a bridge with a subnet (of either family; subnet is IPv4,
subnet6 IPv6):
  - its gateway (default: the subnet's first host) belongs to the bridge's
    own internal port, named after the bridge; no port may take that name;
  - a port has at most one address of that family, inside the subnet,
    never the gateway's, never another port's (a bare address gets the
    subnet's prefix length);
  - a `tap` port in a namespace without an address of that family is
    given the next free one (assign_addresses);
  - published ports need the port to have an IPv4 address there (NAT is
    IPv4's: an IPv6 subnet is routed, its addresses reachable as they are).
Across bridges: subnets do not overlap, and a host port is published once
per protocol.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Collection, Mapping

from . import ipam
from .ipam import Address, AddressError, Network

if TYPE_CHECKING:
    from .config import BridgeConfig, PortConfig, SwitchConfig

Path = tuple[str, ...]
PUBLISH_RE = re.compile(r"^(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?$")
PROTOCOLS = ("tcp", "udp")
VERSIONS = (4, 6)
# the configuration keys of each family
SUBNET_KEY = {4: "subnet", 6: "subnet6"}
GATEWAY_KEY = {4: "gateway", 6: "gateway6"}


def _error(path: Path, message: str) -> Exception:
    from .config import ConfigError
    return ConfigError(path, message)


# --- values ---------------------------------------------------------------------

def parse_bridge_network(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """subnet, gateway, masquerade, subnet6, gateway6 of a bridge's data
    (absent keys: None)."""
    from .config import check_bool
    out: dict[str, Any] = {"masquerade": None}
    for version in VERSIONS:
        skey, gkey = SUBNET_KEY[version], GATEWAY_KEY[version]
        out[skey] = out[gkey] = None
        net: Network | None = None
        if data.get(skey) is not None:
            try:
                net = ipam.parse_subnet(data[skey], version)
            except AddressError as e:
                raise _error(path + (skey,), str(e)) from None
            out[skey] = str(net)
        if data.get(gkey) is not None:
            if net is None:
                raise _error(path + (gkey,), f"a {gkey} needs a {skey}")
            try:
                out[gkey] = str(ipam.parse_address(data[gkey], net, gkey))
            except AddressError as e:
                raise _error(path + (gkey,), str(e)) from None
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
    from .config import list_items
    items = list_items(value, path, "publish must be a list like [\"8080:80/tcp\"]")
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


def with_subnet_prefix(ips: Any, subnet: str | None, subnet6: str | None = None) -> Any:
    """On a subnet bridge a bare address (--ip 10.1.0.5, as Docker takes
    it) means that address with its family's subnet's prefix length."""
    plens = {4: subnet.split("/")[1] if subnet else None,
             6: subnet6.split("/")[1] if subnet6 else None}

    def fix(v: Any) -> Any:
        if isinstance(v, str) and "/" not in v:
            try:
                addr = ipaddress.ip_address(v.strip())
            except ValueError:
                return v
            plen = plens[addr.version]
            return f"{v.strip()}/{plen}" if plen else v
        return v
    if isinstance(ips, (list, tuple)):
        return [fix(v) for v in ips]
    return fix(ips)


# --- ports' addresses in their bridge's subnets --------------------------------

def addresses_of(port: "PortConfig", version: int
                 ) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    return [i for i in (ipaddress.ip_interface(c) for c in port.ip) if i.version == version]


def port_address(port: "PortConfig", version: int = 4) -> Address | None:
    """A port's address of that family (on a subnet bridge it has at most
    one)."""
    found = addresses_of(port, version)
    return found[0].ip if found else None


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
                         f"publishing ports needs an IPv4 subnet on bridge {br.name} "
                         f"(vswitchctl set bridge {br.name} subnet=CIDR)")
        if port.publish and port.type in ("system", "bond"):
            raise _error(base + ("port", port.name, "publish"),
                         f"a {port.type} port has no address to publish")
    if not br.has_network:
        return
    if br.name in br.ports:
        raise _error(base + ("port", br.name), f"the name {br.name} belongs to the bridge's "
                     "own internal port (it holds the gateway); pick another port name")
    for version in VERSIONS:
        net, gateway = br.network(version), br.gateway_of(version)
        if net is None:
            continue
        owner: dict[Address, str] = {}
        for port in br.ports.values():
            path = base + ("port", port.name, "ip")
            found = addresses_of(port, version)
            if len(found) > 1:
                raise _error(path, f"a port on bridge {br.name} (subnet {net}) has one "
                                   f"IPv{version} address, not {len(found)}")
            for iface in found:
                try:
                    addr = ipam.parse_address(str(iface), net, "ip")
                except AddressError as e:
                    raise _error(path, str(e)) from None
                if addr == gateway:
                    raise _error(path, f"{addr} is the gateway's address (bridge {br.name})")
                if addr in owner:
                    raise _error(path, f"{addr} is already port {owner[addr]}'s address")
                owner[addr] = port.name
    for port in br.ports.values():
        if port.publish and not addresses_of(port, 4) and not gets_address(port):
            raise _error(base + ("port", port.name, "publish"),
                         f"port {port.name} has no address to publish (give it --ip)")


def check_global(cfg: "SwitchConfig") -> None:
    """Rules across bridges: subnets apart, host ports published once, no
    port named after a subnet bridge (that name is the bridge's local port)."""
    nets: list[tuple[Network, str]] = []
    for br in cfg.bridges.values():
        check_bridge(br)
        for version in VERSIONS:
            net = br.network(version)
            if net is None:
                continue
            for other, name in nets:
                if net.overlaps(other):
                    raise _error(("bridge", br.name, SUBNET_KEY[version]),
                                 f"subnet {net} overlaps bridge {name}'s {other}")
            nets.append((net, br.name))
    local = {b.name for b in cfg.bridges.values() if b.has_network}
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
                     extra: Collection[tuple[str, int]] = ()) -> "SwitchConfig":
    """Give every port that gets_address() (and every (port, version) in
    extra) without an address of a subnet's family one of that subnet.

    An address the same port held in `previous` (the running or stored
    configuration) is kept when it is still free: so a restart with
    --config, or a reload of a file that names no addresses, hands out the
    same addresses as before.  Then the lowest free address for the rest,
    in the order the ports are configured.  Raises ConfigError (subnet
    full) naming the port that found no room."""
    from .config import check_global as config_check_global
    bridges = dict(cfg.bridges)
    for name in cfg.bridges:
        for version in VERSIONS:
            br = bridges[name]
            net, gateway = br.network(version), br.gateway_of(version)
            if net is None or gateway is None:
                continue
            need = [p for p in br.ports.values() if port_address(p, version) is None
                    and (gets_address(p) or (p.name, version) in extra)]
            if not need:
                continue
            taken: set[Address] = {gateway} | {
                a for p in br.ports.values() if (a := port_address(p, version)) is not None}
            chosen: dict[str, Address] = {}
            old_br = previous.bridges.get(name) if previous else None
            for p in need:
                old = old_br.ports.get(p.name) if old_br else None
                addr = port_address(old, version) if old else None
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
                ports[p.name] = replace(p, ip=_with_address(p.ip, chosen[p.name], net))
            bridges[name] = replace(br, ports=ports)
    out = replace(cfg, bridges=bridges)
    config_check_global(out)
    return out


def _with_address(ips: tuple[str, ...], addr: Address, net: Network) -> tuple[str, ...]:
    """IPv4 first, then IPv6, then the rest as they were."""
    new = f"{addr}/{net.prefixlen}"
    if addr.version == 4:
        return (new,) + ips
    v4 = tuple(c for c in ips if ipaddress.ip_interface(c).version == 4)
    return v4 + (new,) + tuple(c for c in ips if c not in v4)


def strip_subnet_addresses(br: "BridgeConfig", subnet: str, version: int
                           ) -> tuple["BridgeConfig", set[tuple[str, int]]]:
    """The bridge with every port's address inside `subnet` (the one being
    replaced) removed, and (port, version) for each of those ports: they
    are addressed again in the new subnet."""
    net = ipaddress.ip_network(subnet)
    ports = dict(br.ports)
    moved: set[tuple[str, int]] = set()
    for p in br.ports.values():
        keep = tuple(c for c in p.ip if ipaddress.ip_interface(c).ip not in net)
        if keep != p.ip:
            ports[p.name] = replace(p, ip=keep)
            moved.add((p.name, version))
    return replace(br, ports=ports), moved


def set_bridge_network(cfg: "SwitchConfig", br: "BridgeConfig",
                       settings: Mapping[str, Any]) -> "SwitchConfig":
    """`set bridge BR subnet=.. gateway=.. masquerade=.. subnet6=..
    gateway6=..` (an empty value clears) as a whole new configuration,
    addresses included.

    Clearing a subnet clears its gateway too (it belonged to the subnet)
    and leaves ports their addresses, as plain addresses.  Changing a
    subnet re-addresses every port that held an address of the old one:
    the same address when the new subnet still has it (a subnet made
    wider), else the next free one; a gateway of the old subnet that the
    new one does not hold goes back to the default."""
    path = ("bridge", br.name)
    data: dict[str, Any] = {k: getattr(br, k) for k in
                            ("subnet", "gateway", "masquerade", "subnet6", "gateway6")}
    for key, value in settings.items():
        data[key] = None if value in ("", None) else value
    for version in VERSIONS:
        skey, gkey = SUBNET_KEY[version], GATEWAY_KEY[version]
        if data[skey] is None and data[gkey] is not None:
            if gkey in settings:
                raise _error(path + (gkey,), f"a {gkey} needs a {skey}")
            data[gkey] = None
        if data[skey] != getattr(br, skey) and gkey not in settings and data[gkey] is not None:
            try:
                new_net = ipam.parse_subnet(data[skey], version)
                ipam.parse_address(data[gkey], new_net, gkey)
            except AddressError:
                data[gkey] = None
    new_br = replace(br, **parse_bridge_network(data, path))
    moved: set[tuple[str, int]] = set()
    for version in VERSIONS:
        old_subnet, new_subnet = br.network(version), new_br.network(version)
        if old_subnet is not None and new_subnet is not None and old_subnet != new_subnet:
            new_br, more = strip_subnet_addresses(new_br, str(old_subnet), version)
            moved |= more
    return assign_addresses(cfg.with_bridge(new_br), cfg, extra=moved)
