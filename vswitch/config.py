"""What the user asked for: bridges, ports and their settings.

Plain dataclasses, built only through the ``parse_*`` functions below, which
check every value and report a problem as ConfigError with the path of the
offending key (("bridge", "br0", "port", "h1", "ip")).  The TOML loader
turns that path into FILE:LINE; the control server into a sentence.  The
same functions read the JSON database, so a file, a database and an API
call can never disagree about what is valid.

Configuration is separate from state: nothing here says whether a port is up
or what the FDB holds (see switch.py).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:   # imported lazily below: flowexport.settings imports this module
    from .flowexport.settings import FlowExport
    from .mirror import MirrorConfig

Path = tuple[str, ...]

IFNAME_MAX = 15
IFNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
NETNS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
NETNS_PATH_RE = re.compile(r"^[/A-Za-z0-9_.:@+=,-]+$")
NETNS_PATH_MAX = 1024
EXTERNAL_ID_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")
EXTERNAL_ID_VALUE_MAX = 1024
EXTERNAL_IDS_MAX = 64
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")

PORT_TYPES = ("tap", "internal", "system", "bond", "vxlan")
BOND_MODES = ("active-backup", "balance-slb", "balance-tcp")
LACP_MODES = ("active", "passive", "off")
LACP_TIMES = ("fast", "slow")
LACP_PRIORITY_RANGE = (1, 65535)
BOND_DETECT_MODES = ("carrier", "miimon")
BOND_DELAY_RANGE = (0, 3_600_000)          # milliseconds
MIIMON_INTERVAL_RANGE = (10, 3_600_000)
REBALANCE_RANGE = (0, 3_600_000)           # 0 turns rebalancing off
MAX_BOND_MEMBERS = 16
VLAN_MODES = ("access", "trunk", "native-tagged", "native-untagged")
MAC_AGING_RANGE = (1, 1_000_000)
MAC_TABLE_SIZE_RANGE = (1, 4_194_304)
# A TAP's largest MTU is 65535 less its 14-byte Ethernet header (the
# kernel's tun max_mtu); every port with an mtu setting is a TAP (or a
# tunnel, whose inner MTU vxlan.py bounds further).
MTU_RANGE = (68, 65521)
DEFAULT_MAC_AGING = 300
DEFAULT_MAC_TABLE_SIZE = 8192


class ConfigError(Exception):
    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message

    def where(self) -> str:
        """Human form of the path: 'bridge br0 port h1: ip'."""
        parts = list(self.path)
        words = []
        while len(parts) >= 2 and parts[0] in ("bridge", "port"):
            words.append(f"{parts[0]} {parts[1]}")
            parts = parts[2:]
        head = " ".join(words)
        tail = ".".join(parts)
        return ": ".join(p for p in (head, tail) if p)

    def __str__(self) -> str:
        w = self.where()
        return f"{w}: {self.message}" if w else self.message


# --- value checks -------------------------------------------------------------

def check_name(value: Any, path: Path, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"{what} must be a string")
    if not value:
        raise ConfigError(path, f"{what} must not be empty")
    if len(value) > IFNAME_MAX:
        raise ConfigError(path, f"{what} {value!r} is longer than {IFNAME_MAX} characters")
    if not IFNAME_RE.match(value):
        raise ConfigError(path, f"{what} {value!r} may hold only letters, digits, '_', '.', '-'")
    return value


def check_netns(value: Any, path: Path) -> str:
    """A namespace is a name under /run/netns (what `ip netns` makes) or an
    absolute path to a namespace file: a bind mount such as Docker's
    /var/run/docker/netns/ID, or /proc/PID/ns/net as containerd hands to CNI."""
    if isinstance(value, str) and value.startswith("/"):
        parts = value.split("/")[1:]
        if (len(value) > NETNS_PATH_MAX or not all(parts) or ".." in parts or "." in parts
                or not NETNS_PATH_RE.match(value)):
            raise ConfigError(path, f"namespace path {value!r} is not valid (an absolute, "
                                    "normalised path of at most "
                                    f"{NETNS_PATH_MAX} printable characters)")
        return value
    if not isinstance(value, str) or not NETNS_RE.match(value):
        raise ConfigError(path, f"namespace name {value!r} is not valid "
                                "(letters, digits, '_', '.', '-', at most 64; or an "
                                "absolute path)")
    return value


def check_external_ids(value: Any, path: Path) -> tuple[tuple[str, str], ...]:
    """Open vSwitch's external_ids: a map of strings for the use of whoever
    manages the record (the Docker driver, the CNI plugin); the switch
    never interprets it."""
    if not isinstance(value, Mapping):
        raise ConfigError(path, "external_ids must be a table of strings")
    if len(value) > EXTERNAL_IDS_MAX:
        raise ConfigError(path, f"external_ids holds at most {EXTERNAL_IDS_MAX} keys")
    out = []
    for k, v in value.items():
        if not isinstance(k, str) or not EXTERNAL_ID_KEY_RE.match(k):
            raise ConfigError(path, f"external_ids key {k!r} is not valid (letters, digits, "
                                    "'_', '.', ':', '-', at most 64)")
        if not isinstance(v, str) or len(v) > EXTERNAL_ID_VALUE_MAX or not v.isprintable():
            raise ConfigError(path + (k,), f"external_ids value must be a printable string "
                                           f"of at most {EXTERNAL_ID_VALUE_MAX} characters")
        out.append((k, v))
    return tuple(sorted(out))


def check_int(value: Any, path: Path, what: str, lo: int, hi: int) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"{what} must be an integer")
    if not lo <= value <= hi:
        raise ConfigError(path, f"{what} {value} is out of range {lo}..{hi}")
    return value


def check_bool(value: Any, path: Path, what: str) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(path, f"{what} must be true or false")
    return value


def check_mac(value: Any, path: Path) -> str:
    if not isinstance(value, str) or not MAC_RE.match(value):
        raise ConfigError(path, f"{value!r} is not a MAC address (like 02:00:00:00:00:01)")
    mac = value.lower()
    if int(mac[:2], 16) & 1:
        raise ConfigError(path, f"{mac} is a group (multicast) address, not a station's")
    if mac == "00:00:00:00:00:00":
        raise ConfigError(path, "00:00:00:00:00:00 is not a usable MAC address")
    return mac


def check_cidr(value: Any, path: Path) -> str:
    """An interface address with its prefix length, usable by a station:
    the kernel would refuse (or quietly ignore) the unspecified address,
    and a multicast or loopback address on a switch port is a mistake."""
    if not isinstance(value, str) or "/" not in value:
        raise ConfigError(path, f"{value!r} is not an address with a prefix length "
                                "(like 10.0.0.1/24)")
    try:
        iface = ipaddress.ip_interface(value.strip())
    except ValueError:
        raise ConfigError(path, f"{value!r} is not an address with a prefix length "
                                "(like 10.0.0.1/24)") from None
    addr = iface.ip
    for bad, what in ((addr.is_unspecified, "the unspecified address"),
                      (addr.is_multicast, "a multicast address"),
                      (addr.is_loopback, "a loopback address")):
        if bad:
            raise ConfigError(path, f"{value} is {what}, not a port's address")
    return str(iface)


def parse_addresses(value: Any, path: Path) -> tuple[str, ...]:
    """One address, a comma-separated string of them, or a list."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()] if "," in value else [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(path, "ip must be an address/prefix or a list of them")
    ips = tuple(check_cidr(v, path) for v in value)
    seen: dict[str, str] = {}
    for cidr in ips:
        host = cidr.split("/")[0]
        if host in seen:
            raise ConfigError(path, f"address {host} is listed twice ({seen[host]}, {cidr})")
        seen[host] = cidr
    return ips


def check_vlan(value: Any, path: Path, what: str = "VLAN") -> int:
    return check_int(value, path, what, 1, 4094)


def list_items(value: Any, path: Path, message: str) -> list[Any]:
    """A list's items, or those of a comma-separated string ("10,20");
    anything else is ConfigError(path, message)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(path, message)


def parse_trunks(value: Any, path: Path) -> tuple[int, ...]:
    """Accepts [10, 20], "10,20,30-40" or [] (all VLANs)."""
    items = list_items(value, path,
                       "trunks must be a list of VLANs or a string like '10,20,30-40'")
    vids: set[int] = set()
    for item in items:
        if isinstance(item, str) and "," in item:
            vids.update(parse_trunks(item, path))
        elif isinstance(item, str) and "-" in item.strip("-"):
            lo_s, hi_s = item.split("-", 1)
            lo = check_trunk_vid(lo_s, path)
            hi = check_trunk_vid(hi_s, path)
            if lo > hi:
                raise ConfigError(path, f"trunk range {item!r} runs backwards")
            vids.update(range(lo, hi + 1))
        else:
            vids.add(check_trunk_vid(item, path))
    return tuple(sorted(vids))


def check_trunk_vid(value: Any, path: Path) -> int:
    # 0 is allowed in trunks: it stands for untagged frames (Open vSwitch).
    return check_int(value, path, "trunk VLAN", 0, 4094)


def format_trunks(vids: tuple[int, ...]) -> str:
    out, i = [], 0
    while i < len(vids):
        j = i
        while j + 1 < len(vids) and vids[j + 1] == vids[j] + 1:
            j += 1
        out.append(str(vids[i]) if i == j else f"{vids[i]}-{vids[j]}")
        i = j + 1
    return ",".join(out)


def merge_external_ids(current: Mapping[str, str], key: str, value: Any,
                       path: Path) -> dict[str, str]:
    """`external_ids=TABLE` replaces the map (empty clears it);
    `external_ids:KEY=VALUE` sets one key (an empty value removes it)."""
    if key == "external_ids":
        if value in ("", None):
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(path, "external_ids must be a table of strings "
                                    "(or use external_ids:KEY=VALUE)")
        return dict(value)
    sub = key.split(":", 1)[1]
    out = dict(current)
    if value in ("", None):
        out.pop(sub, None)
    else:
        out[sub] = value
    return out


# --- the model -------------------------------------------------------------------

@dataclass(frozen=True)
class PortConfig:
    name: str
    type: str = "tap"
    netns: str | None = None
    ifname: str | None = None
    ip: tuple[str, ...] = ()
    mac: str | None = None
    mtu: int | None = None
    offload: bool | None = None      # None: on (TSO and checksum offload)
    tag: int | None = None
    trunks: tuple[int, ...] = ()
    vlan_mode: str | None = None
    # bonds (type = "bond"): members are existing interfaces of the daemon's
    # namespace, attached like system ports
    interfaces: tuple[str, ...] = ()
    bond_mode: str | None = None
    bond_updelay: int | None = None
    bond_downdelay: int | None = None
    bond_primary: str | None = None
    bond_detect_mode: str | None = None
    bond_miimon_interval: int | None = None
    bond_rebalance_interval: int | None = None
    external_ids: tuple[tuple[str, str], ...] = ()
    # LACP on a bond (Open vSwitch's Port lacp and other_config:lacp-*)
    lacp: str | None = None
    lacp_time: str | None = None
    lacp_fallback_ab: bool | None = None
    lacp_system_id: str | None = None
    lacp_system_priority: int | None = None
    # published ports (netconfig.py): "HOSTPORT:PORT/PROTO"
    publish: tuple[str, ...] = ()
    # VXLAN tunnels (type = "vxlan"; vxlan.py): Open vSwitch's option names
    remote_ip: tuple[str, ...] = ()
    local_ip: str | None = None
    key: int | None = None
    dst_port: int | None = None
    csum: bool | None = None
    df_default: bool | None = None
    ttl: int | None = None
    udp_gso: bool | None = None

    def bond_setting(self, key: str) -> Any:
        """A bond key's value, or its default (Open vSwitch's).  The LACP
        system id and priority have defaults that depend on the switch and
        the bond (see vswitch/bond.py); None here."""
        value = getattr(self, key)
        if value is not None:
            return value
        return {"bond_mode": "active-backup", "bond_updelay": 0, "bond_downdelay": 0,
                "bond_detect_mode": "carrier", "bond_miimon_interval": 200,
                "bond_rebalance_interval": 10_000, "lacp": "off", "lacp_time": "slow",
                "lacp_fallback_ab": False}.get(key)

    @property
    def effective_vlan_mode(self) -> str:
        if self.vlan_mode:
            return self.vlan_mode
        return "access" if self.tag is not None else "trunk"

    @property
    def device_name(self) -> str:
        """The interface name inside its namespace (or the daemon's)."""
        if self.type == "tap" and self.netns:
            return self.ifname or "eth0"
        return self.ifname or self.name

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for key in ("netns", "ifname", "mac", "mtu", "offload", "tag", "vlan_mode") + BOND_KEYS \
                + VXLAN_SCALARS:
            v = getattr(self, key)
            if v is not None:
                out[key] = v
        if self.remote_ip:
            out["remote_ip"] = list(self.remote_ip)
        if self.ip:
            out["ip"] = list(self.ip)
        if self.trunks:
            # as ranges ("0-4094"), not a list of up to 4095 numbers
            out["trunks"] = format_trunks(self.trunks)
        if self.interfaces:
            out["interfaces"] = list(self.interfaces)
        if self.external_ids:
            out["external_ids"] = dict(self.external_ids)
        if self.publish:
            out["publish"] = list(self.publish)
        return out


@dataclass(frozen=True)
class StaticMac:
    port: str
    vlan: int
    mac: str

    def to_json(self) -> dict[str, Any]:
        return {"port": self.port, "vlan": self.vlan, "mac": self.mac}


@dataclass(frozen=True)
class BridgeConfig:
    name: str
    mac_aging: int = DEFAULT_MAC_AGING
    mac_table_size: int = DEFAULT_MAC_TABLE_SIZE
    ports: Mapping[str, PortConfig] = field(default_factory=dict)
    static_macs: tuple[StaticMac, ...] = ()
    mirrors: tuple[MirrorConfig, ...] = ()     # vswitch/mirror.py
    flow_export: "FlowExport | None" = None   # netflow/ipfix/sflow keys; None: none set
    # networks (netconfig.py): None means "not set" (no subnet; the
    # subnet's first host as gateway; masquerade on)
    subnet: str | None = None
    gateway: str | None = None
    masquerade: bool | None = None
    subnet6: str | None = None        # IPv6: addresses and routes, no NAT
    gateway6: str | None = None
    external_ids: tuple[tuple[str, str], ...] = ()

    @property
    def gateway_address(self) -> ipaddress.IPv4Address:
        """The gateway (the bridge's own port's address); needs a subnet."""
        assert self.subnet
        if self.gateway:
            return ipaddress.IPv4Address(self.gateway)
        return ipaddress.IPv4Network(self.subnet).network_address + 1

    @property
    def has_network(self) -> bool:
        """A subnet of either family: the bridge has its own port."""
        return bool(self.subnet or self.subnet6)

    def network(self, version: int) -> "ipaddress.IPv4Network | ipaddress.IPv6Network | None":
        text = self.subnet if version == 4 else self.subnet6
        return ipaddress.ip_network(text) if text else None

    def gateway_of(self, version: int) -> "ipaddress.IPv4Address | ipaddress.IPv6Address | None":
        """The gateway of that family (default: the subnet's first host)."""
        net = self.network(version)
        if net is None:
            return None
        given = self.gateway if version == 4 else self.gateway6
        return ipaddress.ip_address(given) if given else net.network_address + 1

    @property
    def masquerading(self) -> bool:
        return bool(self.subnet) and self.masquerade is not False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mac_aging": self.mac_aging,
                               "mac_table_size": self.mac_table_size,
                               "port": {n: p.to_json() for n, p in self.ports.items()}}
        if self.flow_export is not None:
            out.update(self.flow_export.to_json())
        if self.static_macs:
            out["fdb"] = [s.to_json() for s in self.static_macs]
        if self.mirrors:
            out["mirror"] = [m.to_json() for m in self.mirrors]
        for key in ("subnet", "gateway", "masquerade", "subnet6", "gateway6"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.external_ids:
            out["external_ids"] = dict(self.external_ids)
        return out


@dataclass(frozen=True)
class SwitchConfig:
    bridges: Mapping[str, BridgeConfig] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"bridge": {n: b.to_json() for n, b in self.bridges.items()}}

    def find_port(self, name: str) -> tuple[BridgeConfig, PortConfig] | None:
        for br in self.bridges.values():
            if name in br.ports:
                return br, br.ports[name]
        return None

    def with_bridge(self, br: BridgeConfig) -> "SwitchConfig":
        bridges = dict(self.bridges)
        bridges[br.name] = br
        return replace(self, bridges=bridges)

    def without_bridge(self, name: str) -> "SwitchConfig":
        bridges = {n: b for n, b in self.bridges.items() if n != name}
        return replace(self, bridges=bridges)


# --- parsing ---------------------------------------------------------------------

LACP_KEYS = ("lacp", "lacp_time", "lacp_fallback_ab", "lacp_system_id",
             "lacp_system_priority")
BOND_KEYS = ("bond_mode", "bond_updelay", "bond_downdelay", "bond_primary",
             "bond_detect_mode", "bond_miimon_interval", "bond_rebalance_interval") + LACP_KEYS
VXLAN_SCALARS = ("local_ip", "key", "dst_port", "csum", "df_default", "ttl", "udp_gso")
PORT_KEYS = ("type", "netns", "ifname", "ip", "mac", "mtu", "offload", "tag", "trunks",
             "vlan_mode", "interfaces", "publish", "external_ids") + BOND_KEYS \
    + ("remote_ip",) + VXLAN_SCALARS


def normalize_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """Open vSwitch spells some bond keys with dashes (bond-primary,
    bond-detect-mode, lacp-time); accept both spellings.  `external_ids:KEY` entries
    (ovs-vsctl's syntax) are folded into the external_ids table."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(k, str) and k.startswith("external_ids:"):
            ids = out.setdefault("external_ids", {})
            if isinstance(ids, Mapping):
                ids = dict(ids)
                ids[k.split(":", 1)[1]] = v
                out["external_ids"] = ids
            continue
        out[k.replace("-", "_") if k != "external_ids" else k] = v
    return out
BRIDGE_KEYS = ("mac_aging", "mac_table_size", "port", "fdb", "mirror", "subnet", "gateway",
               "masquerade", "subnet6", "gateway6", "external_ids")


def _table(value: Any, path: Path, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"{what} must be a table")
    return value


def _unknown_keys(data: Mapping[str, Any], allowed: tuple[str, ...], path: Path) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(path + (key,), f"unknown key {key!r} "
                                             f"(expected one of: {', '.join(allowed)})")


def parse_port(name: str, data: Mapping[str, Any], path: Path,
               subnet: str | None = None, subnet6: str | None = None) -> PortConfig:
    """subnet, subnet6: the bridge's, if it has them (a bare --ip gets the
    prefix length of its family's)."""
    from .netconfig import parse_publish, with_subnet_prefix
    check_name(name, path, "port name")
    data = normalize_keys(_table(data, path, "a port"))
    _unknown_keys(data, PORT_KEYS, path)
    ptype = data.get("type", "tap")
    if ptype not in PORT_TYPES:
        raise ConfigError(path + ("type",), f"type must be one of {', '.join(PORT_TYPES)}, "
                                            f"not {ptype!r}")
    netns = data.get("netns")
    if netns is not None:
        netns = check_netns(netns, path + ("netns",))
    ifname = data.get("ifname")
    if ifname is not None:
        ifname = check_name(ifname, path + ("ifname",), "interface name")
        if ifname == "lo":
            raise ConfigError(path + ("ifname",), "lo is the namespace's loopback "
                                                  "interface; choose another ifname")
    ips = parse_addresses(with_subnet_prefix(data.get("ip", ()), subnet, subnet6),
                          path + ("ip",))
    mac = data.get("mac")
    if mac is not None:
        mac = check_mac(mac, path + ("mac",))
    mtu = data.get("mtu")
    if mtu is not None:
        mtu = check_int(mtu, path + ("mtu",), "mtu", *MTU_RANGE)
    offload = data.get("offload")
    if offload is not None:
        offload = check_bool(offload, path + ("offload",), "offload")
    publish = parse_publish(data["publish"], path + ("publish",)) if "publish" in data else ()

    if ptype == "system":
        if name == "lo":
            raise ConfigError(path, "lo is the loopback interface; it cannot be a "
                                    "switch port")
        for key in ("netns", "ifname", "ip", "mac", "mtu"):
            if key in data:
                raise ConfigError(path + (key,), f"a system port attaches the existing "
                                  f"interface {name!r} as it is; {key} is not allowed")
    if ptype == "internal":
        for key in ("netns", "ifname"):
            if key in data:
                raise ConfigError(path + (key,), f"an internal port stays in the daemon's "
                                  f"namespace under its own name; {key} is not allowed")
    if ptype == "bond":
        for key in ("netns", "ifname", "ip", "mac", "mtu"):
            if key in data:
                raise ConfigError(path + (key,), f"a bond is made of existing interfaces; "
                                                 f"{key} is not allowed")
    else:
        for key in ("interfaces",) + BOND_KEYS:
            if key in data:
                raise ConfigError(path + (key,), f"{key} is for bonds (type = \"bond\")")
    bond = parse_bond_settings(data, path) if ptype == "bond" else {}
    from . import vxlan   # imports this module: here, not at the top
    if ptype == "vxlan":
        bond = vxlan.parse_vxlan_settings(data, path)
    else:
        vxlan.reject_vxlan_keys(data, path, ptype)
    if ptype == "tap" and ifname is not None and netns is None and ifname != name:
        raise ConfigError(path + ("ifname",), "ifname needs netns (without one the TAP "
                                              "keeps the port's name)")

    tag = data.get("tag")
    if tag is not None:
        tag = check_vlan(tag, path + ("tag",), "tag")
    trunks = parse_trunks(data["trunks"], path + ("trunks",)) if "trunks" in data else ()
    vlan_mode = data.get("vlan_mode")
    if vlan_mode is not None and vlan_mode not in VLAN_MODES:
        raise ConfigError(path + ("vlan_mode",), f"vlan_mode must be one of "
                          f"{', '.join(VLAN_MODES)}, not {vlan_mode!r}")
    mode = vlan_mode or ("access" if tag is not None else "trunk")
    if mode in ("access", "native-tagged", "native-untagged") and tag is None:
        raise ConfigError(path + ("vlan_mode",), f"vlan_mode {mode} needs a tag")
    if mode == "trunk" and tag is not None:
        raise ConfigError(path + ("tag",), "a trunk port has no tag "
                          "(use vlan_mode=native-tagged or native-untagged)")
    if mode == "access" and trunks:
        raise ConfigError(path + ("trunks",), "an access port carries only its tag; "
                          "trunks is not allowed (use a native vlan_mode)")
    ext = check_external_ids(data.get("external_ids", {}), path + ("external_ids",))
    return PortConfig(name=name, type=ptype, netns=netns, ifname=ifname, ip=ips, mac=mac,
                      mtu=mtu, offload=offload, tag=tag, trunks=trunks, vlan_mode=vlan_mode,
                      publish=publish, external_ids=ext, **bond)


def parse_bond_settings(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    members_raw = data.get("interfaces")
    if not isinstance(members_raw, (list, tuple)) or not members_raw:
        raise ConfigError(path + ("interfaces",), "a bond needs a list of interfaces")
    if len(members_raw) > MAX_BOND_MEMBERS:
        raise ConfigError(path + ("interfaces",), f"a bond has at most {MAX_BOND_MEMBERS} "
                                                  "interfaces")
    members = tuple(check_name(m, path + ("interfaces",), "interface name")
                    for m in members_raw)
    if "lo" in members:
        raise ConfigError(path + ("interfaces",), "lo is the loopback interface; it cannot "
                                                  "be a bond member")
    dup = {m for m in members if members.count(m) > 1}
    if dup:
        raise ConfigError(path + ("interfaces",), f"interface {sorted(dup)[0]!r} is listed "
                                                  "twice")
    out: dict[str, Any] = {"interfaces": members}
    mode = data.get("bond_mode")
    if mode is not None and mode not in BOND_MODES:
        raise ConfigError(path + ("bond_mode",), f"bond_mode must be one of "
                          f"{', '.join(BOND_MODES)}, not {mode!r}")
    out["bond_mode"] = mode
    detect = data.get("bond_detect_mode")
    if detect is not None and detect not in BOND_DETECT_MODES:
        raise ConfigError(path + ("bond_detect_mode",), f"bond_detect_mode must be one of "
                          f"{', '.join(BOND_DETECT_MODES)}, not {detect!r}")
    out["bond_detect_mode"] = detect
    for key, rng in (("bond_updelay", BOND_DELAY_RANGE), ("bond_downdelay", BOND_DELAY_RANGE),
                     ("bond_miimon_interval", MIIMON_INTERVAL_RANGE),
                     ("bond_rebalance_interval", REBALANCE_RANGE)):
        if data.get(key) is not None:
            out[key] = check_int(data[key], path + (key,), f"{key} (ms)", *rng)
    primary = data.get("bond_primary")
    if primary is not None:
        if primary not in members:
            raise ConfigError(path + ("bond_primary",), f"bond_primary {primary!r} is not one "
                                                        "of the bond's interfaces")
        out["bond_primary"] = primary
    out.update(parse_lacp_settings(data, path))
    if out["bond_mode"] == "balance-tcp" and out.get("lacp") in (None, "off"):
        raise ConfigError(path + ("bond_mode",), "bond_mode balance-tcp needs LACP "
                          "(lacp=active or lacp=passive), as in Open vSwitch")
    return out


def parse_lacp_settings(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, allowed in (("lacp", LACP_MODES), ("lacp_time", LACP_TIMES)):
        value = data.get(key)
        if value is not None:
            if value not in allowed:
                raise ConfigError(path + (key,), f"{key.replace('_', '-')} must be one of "
                                  f"{', '.join(allowed)}, not {value!r}")
            out[key] = value
    if data.get("lacp_fallback_ab") is not None:
        out["lacp_fallback_ab"] = check_bool(data["lacp_fallback_ab"],
                                             path + ("lacp_fallback_ab",), "lacp-fallback-ab")
    if data.get("lacp_system_id") is not None:
        out["lacp_system_id"] = check_mac(data["lacp_system_id"], path + ("lacp_system_id",))
    if data.get("lacp_system_priority") is not None:
        out["lacp_system_priority"] = check_int(
            data["lacp_system_priority"], path + ("lacp_system_priority",),
            "lacp-system-priority", *LACP_PRIORITY_RANGE)
    return out


def parse_static_mac(data: Any, path: Path, ports: Mapping[str, PortConfig]) -> StaticMac:
    data = _table(data, path, "an fdb entry")
    _unknown_keys(data, ("port", "vlan", "mac"), path)
    for key in ("port", "mac"):
        if key not in data:
            raise ConfigError(path, f"an fdb entry needs {key}")
    port = data["port"]
    if port not in ports:
        raise ConfigError(path + ("port",), f"no port {port!r} on this bridge")
    vlan = check_int(data.get("vlan", 0), path + ("vlan",), "VLAN", 0, 4094)
    return StaticMac(port=port, vlan=vlan, mac=check_mac(data["mac"], path + ("mac",)))


def parse_bridge(name: str, data: Mapping[str, Any], path: Path) -> BridgeConfig:
    from . import netconfig
    from .flowexport.settings import FLOW_KEYS, parse_flow_export
    check_name(name, path, "bridge name")
    data = normalize_keys(_table(data, path, "a bridge"))
    _unknown_keys(data, BRIDGE_KEYS + FLOW_KEYS, path)
    network = netconfig.parse_bridge_network(data, path)
    aging = check_int(data.get("mac_aging", DEFAULT_MAC_AGING), path + ("mac_aging",),
                      "mac_aging", *MAC_AGING_RANGE)
    size = check_int(data.get("mac_table_size", DEFAULT_MAC_TABLE_SIZE),
                     path + ("mac_table_size",), "mac_table_size", *MAC_TABLE_SIZE_RANGE)
    ports_raw = _table(data.get("port", {}), path + ("port",), "port")
    ports = {pname: parse_port(pname, pdata, path + ("port", pname), network["subnet"],
                               network["subnet6"])
             for pname, pdata in ports_raw.items()}
    fdb_raw = data.get("fdb", [])
    if not isinstance(fdb_raw, list):
        raise ConfigError(path + ("fdb",), "fdb must be a list of {port, vlan, mac} tables")
    statics = tuple(parse_static_mac(e, path + ("fdb", str(i)), ports)
                    for i, e in enumerate(fdb_raw))
    seen: set[tuple[int, str]] = set()
    for i, s in enumerate(statics):
        if (s.vlan, s.mac) in seen:
            raise ConfigError(path + ("fdb", str(i)), f"{s.mac} in VLAN {s.vlan} is listed twice")
        seen.add((s.vlan, s.mac))
    if len(statics) > size:
        raise ConfigError(path + ("fdb",), f"{len(statics)} static entries do not fit "
                                           f"in mac_table_size {size}")
    from .mirror import parse_mirrors   # mirror.py builds on this module
    mirrors = parse_mirrors(data.get("mirror", []), path + ("mirror",), ports)
    ext = check_external_ids(data.get("external_ids", {}), path + ("external_ids",))
    flows = parse_flow_export(data, path)
    br = BridgeConfig(name=name, mac_aging=aging, mac_table_size=size, ports=ports,
                      static_macs=statics, mirrors=mirrors,
                      flow_export=flows if flows.to_json() else None,
                      external_ids=ext, **network)
    netconfig.check_bridge(br)
    return br


def parse_switch(data: Mapping[str, Any]) -> SwitchConfig:
    data = _table(data, (), "the configuration")
    _unknown_keys(data, ("bridge",), ())
    bridges_raw = _table(data.get("bridge", {}), ("bridge",), "bridge")
    bridges = {name: parse_bridge(name, bdata, ("bridge", name))
               for name, bdata in bridges_raw.items()}
    cfg = SwitchConfig(bridges=bridges)
    check_global(cfg)
    return cfg


def check_global(cfg: SwitchConfig) -> None:
    """Rules across bridges: names unique, no two ports on one device (and
    the network rules of netconfig.check_global)."""
    from . import netconfig
    owner: dict[str, str] = {}
    devices: dict[tuple[str | None, str], str] = {}
    for br in cfg.bridges.values():
        for port in br.ports.values():
            path = ("bridge", br.name, "port", port.name)
            if port.name in owner:
                raise ConfigError(path, f"port {port.name!r} is already on bridge "
                                        f"{owner[port.name]!r}")
            owner[port.name] = br.name
            used = port.interfaces if port.type == "bond" else (
                () if port.type == "vxlan" else (port.device_name,))
            for dev_name in used:
                dev = (port.netns if port.type == "tap" else None, dev_name)
                if dev in devices:
                    where = f"namespace {dev[0]!r}" if dev[0] else "the daemon's namespace"
                    raise ConfigError(path, f"interface {dev[1]!r} in {where} is already "
                                            f"used by port {devices[dev]!r}")
                devices[dev] = port.name
    netconfig.check_global(cfg)
    from .vxlan import check_clashes
    check_clashes(cfg)
