"""Networks (issue 9): what the Switch calls at its transaction points to
give a bridge with a subnet its gateway, its ports their addresses and
default routes, and the host its NAT rules.

The Switch stays the one place that orders a transaction (validate, apply
with undo, persist); this module holds the network half of each step:

  prepare()        validation and address allocation of a new configuration
  local_port()     the bridge's own internal port (named after the bridge,
                   holding the gateway): derived from `subnet`, never stored
                   as a port, so it cannot disagree with the subnet
  bridge_up/down   what is known of a bridge's subnet and gateway while it
                   runs
  sync_port()      a port's default route in its namespace (route_localnet
                   for the bridge's own port)
  apply()          the nftables table, in one nft transaction (a no-op when
                   the rules did not change), and IPv4/IPv6 forwarding
  stop()           the table removed at a clean stop
"""
from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Collection

from . import nft, routes
from .config import BridgeConfig, ConfigError, PortConfig, SwitchConfig
from .errors import VswitchError, invalid
from .ipam import Address
from .ipam import Network as IPNetwork
from .netconfig import VERSIONS, assign_addresses, port_address

if TYPE_CHECKING:
    from .switch import PortRuntime

log = logging.getLogger(__name__)
NETWORK_KEYS = ("subnet", "gateway", "masquerade", "subnet6", "gateway6")


@dataclass(frozen=True)
class BridgeNet:
    subnet: IPNetwork
    gateway: Address


def networks_of(br: BridgeConfig) -> dict[int, BridgeNet]:
    """The bridge's subnet and gateway of each family it has."""
    out = {}
    for version in VERSIONS:
        net, gw = br.network(version), br.gateway_of(version)
        if net is not None and gw is not None:
            out[version] = BridgeNet(net, gw)
    return out


class Network:
    def __init__(self) -> None:
        # bridge -> IP version -> its subnet and gateway in force
        self.bridges: dict[str, dict[int, BridgeNet]] = {}
        # port -> IP version -> its namespace's default route, in words
        self.routes: dict[str, dict[int, str]] = {}
        self.applied: str | None = None           # the last batch nft took
        self.error: str | None = None             # why the table may be stale
        # Whether the table may be ours to change.  A daemon whose bridges
        # never had a subnet never runs nft at all: two daemons may share a
        # namespace (tests do), and only one of them may own the table.
        self.owns_table = False

    # --- configuration ---------------------------------------------------------
    @staticmethod
    def prepare(new: SwitchConfig, previous: SwitchConfig | None,
                extra: Collection[tuple[str, int]] = ()) -> SwitchConfig:
        """Allocate the addresses `new` leaves open and check it as a whole;
        a problem is one EINVAL sentence and nothing has changed."""
        try:
            return assign_addresses(new, previous, extra)
        except ConfigError as e:
            raise invalid(str(e)) from None

    @staticmethod
    def local_port(br: BridgeConfig) -> PortConfig | None:
        """The bridge's own port (Open vSwitch's LOCAL port, docker0's
        address): an internal TAP named after the bridge with the gateway."""
        nets = networks_of(br)
        if not nets:
            return None
        return PortConfig(name=br.name, type="internal",
                          ip=tuple(f"{n.gateway}/{n.subnet.prefixlen}" for n in nets.values()))

    @staticmethod
    def is_local_port(cfg: SwitchConfig, port: str) -> BridgeConfig | None:
        br = cfg.bridges.get(port)
        return br if br is not None and br.has_network else None

    @staticmethod
    def local_port_refusal(br: BridgeConfig, what: str) -> VswitchError:
        gws = " and ".join(str(n.gateway) for n in networks_of(br).values())
        keys = " ".join(f"{k}=" for k in ("subnet", "subnet6") if getattr(br, k))
        return invalid(f"port {br.name} is bridge {br.name}'s own port (it holds the gateway "
                       f"{gws}); it cannot be {what}: it goes when the subnet "
                       f"does (vswitchctl set bridge {br.name} {keys})")

    # --- runtime -----------------------------------------------------------------
    def bridge_up(self, br: BridgeConfig) -> None:
        nets = networks_of(br)
        if not nets:
            self.bridges.pop(br.name, None)
        else:
            self.bridges[br.name] = nets

    def bridge_down(self, name: str) -> None:
        self.bridges.pop(name, None)

    def forget_port(self, name: str) -> None:
        self.routes.pop(name, None)

    def sync_port(self, bridge: str, prt: "PortRuntime") -> None:
        """Make the port's namespace's default route what the network says:
        via the gateway when the port has an address of the subnet, unless
        the namespace has a default route of its own (kept, never fought);
        ours removed when the port no longer has a place in the subnet."""
        cfg, att = prt.cfg, prt.attachment
        if cfg.name == bridge and cfg.type == "internal" and bridge in self.bridges:
            if att is not None:
                # The bridge's own port.  127.0.0.1:HOSTPORT is DNATed to the
                # namespaces through this interface only; nft's
                # raw_prerouting rule keeps the reverse direction (a
                # namespace reaching the host's loopback) shut.
                try:
                    routes.set_route_localnet(att.device)
                except VswitchError as e:
                    log.warning("bridge %s: 127.0.0.1 will not reach published ports: %s",
                                bridge, e.message)
            return
        if cfg.type != "tap" or not cfg.netns or att is None or att.netns is None:
            self.routes.pop(cfg.name, None)
            return
        if bridge not in self.bridges and cfg.name not in self.routes:
            return     # no network, and no route of ours to take away: no netlink
        for version in VERSIONS:
            status = self._sync_route(bridge, prt, version)
            if status is None:
                self.routes.get(cfg.name, {}).pop(version, None)
            else:
                self.routes.setdefault(cfg.name, {})[version] = status

    def _sync_route(self, bridge: str, prt: "PortRuntime", version: int) -> str | None:
        """One family's default route; returns what it is, in words (None:
        the port has no network of that family)."""
        cfg, att = prt.cfg, prt.attachment
        assert att is not None and att.netns is not None
        net = self.bridges.get(bridge, {}).get(version)
        addr = port_address(cfg, version)
        want = net is not None and addr is not None and addr in net.subnet
        try:
            current = routes.default_routes(att.netns, version)
            ours = [r for r in current
                    if r.proto == routes.RTPROT_VSWITCH and r.device == att.device]
            others = [r for r in current if r not in ours]
            gw = str(net.gateway) if want and net is not None else None
            for r in ours:
                if r.gateway != gw:
                    routes.del_default_route(att.netns, r, version)
            if gw is None:
                return None
            if any(r.gateway == gw for r in ours):
                return f"via {gw}"
            if others:
                o = others[0]
                return (f"the namespace's own, via {o.gateway or '-'} dev {o.device or '-'} "
                        f"(kept; not via {gw})")
            routes.add_default_route(att.netns, att.device, gw, version)
            return f"via {gw}"
        except VswitchError as e:
            log.warning("port %s: IPv%d default route: %s", cfg.name, version, e.message)
            return f"not set: {e.message}"

    # --- the host's firewall --------------------------------------------------------
    def start(self, cfg: SwitchConfig, previous: SwitchConfig | None) -> None:
        """At daemon start the table is rebuilt from the configuration (a
        crash leaves nothing stale for long): replaced when cfg needs it,
        removed when only the stored configuration did."""
        self.owns_table = previous is not None and nft.needed(previous)
        self.apply(cfg, strict=False)

    def apply(self, cfg: SwitchConfig, strict: bool = True) -> None:
        """Make the nftables table what cfg says, in one transaction, and
        turn forwarding on for the families that have a subnet.  strict:
        raise on failure (a request is refused); otherwise (start-up, undo)
        log it and keep the error for net/show."""
        doc = nft.batch(cfg)
        text = json.dumps(doc, sort_keys=True)
        needed = nft.needed(cfg)
        try:
            # forwarding first: nft is the last step, so a refusal leaves
            # everything as it was (forwarding is never turned off again)
            self._forwarding(cfg)
            if text != self.applied:
                if needed or self.owns_table:   # else nothing of ours to remove
                    nft.run(doc)
                self.applied = text
                self.error = None
                self.owns_table = needed
        except VswitchError as e:
            if strict:     # refused: nft applied nothing, the table is as it was
                raise
            if text != self.applied:
                self.applied = None
                self.owns_table = self.owns_table or needed
                self.error = e.message
            log.error("nftables table %s %s or forwarding: %s", nft.FAMILY, nft.TABLE,
                      e.message)

    @staticmethod
    def _forwarding(cfg: SwitchConfig) -> None:
        """Global, as Docker does: the forwarding flag of the interface a
        packet arrives on decides, and replies and published ports arrive
        on whatever interface faces the outside.  Never turned off again."""
        if any(b.subnet for b in cfg.bridges.values()) and not routes.ip_forward(4):
            routes.enable_forwarding(4)
            log.info("turned on IPv4 forwarding (net.ipv4.ip_forward=1)")
        if any(b.subnet6 for b in cfg.bridges.values()) and not routes.ip_forward(6):
            routes.enable_forwarding(6)
            log.info("turned on IPv6 forwarding (net.ipv6.conf.all.forwarding=1)")

    def stop(self) -> None:
        """A clean stop leaves nothing of ours in the ruleset."""
        if not self.owns_table:
            return
        try:
            nft.run(nft.removal())
        except VswitchError as e:
            log.error("removing table %s %s: %s", nft.FAMILY, nft.TABLE, e.message)
        self.applied = None
        self.owns_table = False

    # --- net/show -------------------------------------------------------------------
    def describe(self, br: BridgeConfig, ports: list[dict[str, Any]]) -> dict[str, Any]:
        nets = networks_of(br)
        v4, v6 = nets.get(4), nets.get(6)
        out: dict[str, Any] = {
            "bridge": br.name,
            "subnet": br.subnet,
            "gateway": str(v4.gateway) if v4 else None,
            "subnet6": br.subnet6,
            "gateway6": str(v6.gateway) if v6 else None,
            "gateway_port": br.name if nets else None,
            "masquerade": br.masquerading,
            "ip_forward": routes.ip_forward(4),
            "ip6_forward": routes.ip_forward(6),
            "nftables": (f"table {nft.FAMILY} {nft.TABLE}" if v4 and self.error is None
                         else None),
            "ports": ports,
        }
        if v4 and self.error:
            out["nftables_error"] = self.error
        return out
