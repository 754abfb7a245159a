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
  apply()          the nftables table and IPv4 forwarding, in one nft
                   transaction; a no-op when the rules did not change
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
from .netconfig import assign_addresses, port_address

if TYPE_CHECKING:
    from .switch import PortRuntime

log = logging.getLogger(__name__)
NETWORK_KEYS = ("subnet", "gateway", "masquerade")


@dataclass(frozen=True)
class BridgeNet:
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address


def network_of(br: BridgeConfig) -> BridgeNet | None:
    if not br.subnet:
        return None
    return BridgeNet(ipaddress.IPv4Network(br.subnet), br.gateway_address)


class Network:
    def __init__(self) -> None:
        self.bridges: dict[str, BridgeNet] = {}   # subnet and gateway in force
        self.routes: dict[str, str] = {}          # port -> its default route, in words
        self.applied: str | None = None           # the last batch nft took
        self.error: str | None = None             # why the table may be stale

    # --- configuration ---------------------------------------------------------
    @staticmethod
    def prepare(new: SwitchConfig, previous: SwitchConfig | None,
                extra: Collection[str] = ()) -> SwitchConfig:
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
        net = network_of(br)
        if net is None:
            return None
        return PortConfig(name=br.name, type="internal",
                          ip=(f"{net.gateway}/{net.subnet.prefixlen}",))

    @staticmethod
    def is_local_port(cfg: SwitchConfig, port: str) -> BridgeConfig | None:
        br = cfg.bridges.get(port)
        return br if br is not None and br.subnet else None

    @staticmethod
    def local_port_refusal(br: BridgeConfig, what: str) -> VswitchError:
        return invalid(f"port {br.name} is bridge {br.name}'s own port (it holds the gateway "
                       f"{br.gateway_address}); it cannot be {what}: it goes when the subnet "
                       f"does (vswitchctl set bridge {br.name} subnet=)")

    # --- runtime -----------------------------------------------------------------
    def bridge_up(self, br: BridgeConfig) -> None:
        net = network_of(br)
        if net is None:
            self.bridges.pop(br.name, None)
        else:
            self.bridges[br.name] = net

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
        net = self.bridges.get(bridge)
        addr = port_address(cfg)
        want = net is not None and addr is not None and addr in net.subnet
        try:
            current = routes.default_routes(att.netns)
            ours = [r for r in current
                    if r.proto == routes.RTPROT_VSWITCH and r.device == att.device]
            others = [r for r in current if r not in ours]
            gw = str(net.gateway) if want and net is not None else None
            for r in ours:
                if r.gateway != gw:
                    routes.del_default_route(att.netns, r)
            if gw is None:
                self.routes.pop(cfg.name, None)
                return
            if any(r.gateway == gw for r in ours):
                self.routes[cfg.name] = f"via {gw}"
            elif others:
                o = others[0]
                self.routes[cfg.name] = (f"the namespace's own, via {o.gateway or '-'} dev "
                                         f"{o.device or '-'} (kept; not via {gw})")
            else:
                routes.add_default_route(att.netns, att.device, gw)
                self.routes[cfg.name] = f"via {gw}"
        except VswitchError as e:
            self.routes[cfg.name] = f"not set: {e.message}"
            log.warning("port %s: default route: %s", cfg.name, e.message)

    # --- the host's firewall --------------------------------------------------------
    def apply(self, cfg: SwitchConfig, strict: bool = True) -> None:
        """Make the nftables table what cfg says, in one transaction, and
        turn IPv4 forwarding on when a bridge has a subnet.  strict: raise
        on failure (a request is refused); otherwise (start-up, undo) log it
        and keep the error for net/show."""
        doc = nft.batch(cfg)
        text = json.dumps(doc, sort_keys=True)
        if text == self.applied:
            return
        try:
            if nft.needed(cfg) or nft.available():
                nft.run(doc)
            if nft.needed(cfg) and not routes.ip_forward():
                # Global, as Docker does: the forwarding flag of the interface
                # a packet arrives on decides, and replies and published ports
                # arrive on whatever interface faces the outside.
                routes.enable_ip_forward()
                log.info("turned on IPv4 forwarding (net.ipv4.ip_forward=1)")
        except VswitchError as e:
            self.applied = None
            if strict:     # refused: nft applied nothing, the table is as it was
                raise
            self.error = e.message
            log.error("nftables table %s %s: %s", nft.FAMILY, nft.TABLE, e.message)
            return
        self.applied = text
        self.error = None

    def stop(self) -> None:
        """A clean stop leaves nothing of ours in the ruleset."""
        if self.applied is None and not nft.available():
            return
        try:
            nft.run(nft.removal())
        except VswitchError as e:
            log.error("removing table %s %s: %s", nft.FAMILY, nft.TABLE, e.message)
        self.applied = None

    # --- net/show -------------------------------------------------------------------
    def describe(self, br: BridgeConfig, ports: list[dict[str, Any]]) -> dict[str, Any]:
        net = network_of(br)
        out: dict[str, Any] = {
            "bridge": br.name,
            "subnet": br.subnet,
            "gateway": str(net.gateway) if net else None,
            "gateway_port": br.name if net else None,
            "masquerade": br.masquerading,
            "ip_forward": routes.ip_forward(),
            "nftables": (f"table {nft.FAMILY} {nft.TABLE}" if net and self.error is None
                         else None),
            "ports": ports,
        }
        if net and self.error:
            out["nftables_error"] = self.error
        return out
