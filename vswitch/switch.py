"""The switch: configuration applied to the engine and the kernel.

Every change is a transaction with the same three steps:
  1. build the new configuration and validate it as a whole,
  2. apply it (devices, engine), undoing what was done if a step fails,
  3. persist it atomically; if that fails too, undo the change.
Only then is the caller answered.  So a request either happens completely,
on disk included, or changes nothing.

Configuration (SwitchConfig) is what the user asked for; the runtime maps
(BridgeRuntime, PortRuntime) hold the engine ids and what was observed
(a port that could not be attached keeps its configuration and shows why).
"""
from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .config import (BridgeConfig, ConfigError, PortConfig, StaticMac, SwitchConfig,
                     check_external_ids, check_global, check_int, check_mac,
                     merge_external_ids, parse_bridge, parse_port,
                     LACP_KEYS, MAC_AGING_RANGE, MAC_TABLE_SIZE_RANGE)
from . import links, vxlan
from .bond import Bond
from .bond_commands import BondCommands
from .mirror import MirrorCommands
from .datapath import UPCALL_SLOW_PROTO, Datapath, IfaceStats
from .errors import VswitchError, exists, invalid, not_found
from .flowexport.manager import FlowExports, PortView
from .flowexport.settings import FLOW_KEYS, changed_flow_export
from .netns import NamespaceRegistry
from .network import NETWORK_KEYS, Network
from .managed import keep_managed
from .ports import Attachment, PortFactory
from .runtime_state import RuntimeState
from .store import DamagedFile, read_json, write_json
from .upcall import UpcallChannel

log = logging.getLogger(__name__)
DB_VERSION = 1


@dataclass
class PortRuntime:
    cfg: PortConfig
    port_id: int
    bridge: str = ""
    ifaces: list[int] = field(default_factory=list)
    attachment: Attachment | None = None
    error: str | None = None
    bond: Bond | None = None
    member_index: dict[str, int] = field(default_factory=dict)  # bond member -> ifindex
    member_atts: dict[str, Attachment] = field(default_factory=dict)
    tunnel: vxlan.TunnelState | None = None                      # vxlan ports


@dataclass
class BridgeRuntime:
    br_id: int
    ports: dict[str, PortRuntime] = field(default_factory=dict)
    name: str = ""
    mirror_slots: dict[str, int] = field(default_factory=dict)   # mirror name -> engine slot


class DamagedDatabase(VswitchError):
    """The database file exists but cannot be used as it is."""

    def __init__(self, message: str) -> None:
        super().__init__("EINVAL", message)


def _cfg_error(e: ConfigError) -> VswitchError:
    return invalid(str(e))


class Switch(BondCommands, MirrorCommands):
    def __init__(self, dp: Datapath, db_path: Path, namespaces: NamespaceRegistry,
                 loop: asyncio.AbstractEventLoop | None = None,
                 system_id: str | None = None) -> None:
        self.dp = dp
        self.db_path = db_path
        self.namespaces = namespaces
        self.loop = loop      # timers (bond delays, rebalancing); None in unit tests
        self.system_id = system_id or self.read_system_id(db_path)
        self.factory = PortFactory(namespaces, self.system_id)
        self.config = SwitchConfig()
        self.bridges: dict[str, BridgeRuntime] = {}
        # subnets, gateways, default routes, the nftables table (network.py)
        self.network = Network()
        # Runtime state worth keeping across restarts (the active bond
        # members), apart from the configuration.
        self.runtime = RuntimeState(db_path.with_name(db_path.stem + ".state.json"))
        # Frames from the engine for the control plane (capture, LACP,
        # sFlow samples): handlers register here; the daemon attaches it to
        # its event loop.
        self.upcalls = UpcallChannel(dp)
        self.upcalls.register(UPCALL_SLOW_PROTO, self.on_slow_protocol)
        self.flows = FlowExports(dp, loop, self.upcalls)   # NetFlow, IPFIX, sFlow

    # --- persistence ---------------------------------------------------------
    @staticmethod
    def read_db(db_path: Path) -> SwitchConfig | None:
        """The stored configuration, None if there is none yet;
        DamagedDatabase when the file is there but unusable."""
        try:
            data = read_json(db_path)
        except DamagedFile as e:
            raise DamagedDatabase(f"{e}: damaged database") from None
        if data is None:
            return None
        if not isinstance(data, dict) or data.get("version") != DB_VERSION:
            raise DamagedDatabase(f"{db_path}: not a vswitch database of version {DB_VERSION}")
        try:
            from .config import parse_switch
            return parse_switch(data.get("config", {}))
        except ConfigError as e:
            raise DamagedDatabase(f"{db_path}: invalid database: {e}") from None

    @staticmethod
    def read_system_id(db_path: Path) -> str:
        """This switch's identity, kept in its database (like Open vSwitch's
        system-id).  Devices created without a configured MAC get one derived
        from it, so their MACs survive restarts and neighbours' ARP caches stay
        right.  From a damaged database it is salvaged if its line survived."""
        try:
            data = read_json(db_path)
        except DamagedFile:
            raw = db_path.read_bytes()
            m = re.search(rb'"system_id"\s*:\s*"([0-9a-f]{8,64})"', raw)
            data = {"system_id": m.group(1).decode()} if m else None
        sid = data.get("system_id") if isinstance(data, dict) else None
        return sid if isinstance(sid, str) and sid else secrets.token_hex(16)

    def _persist(self, cfg: SwitchConfig) -> None:
        try:
            write_json(self.db_path, {"version": DB_VERSION, "system_id": self.system_id,
                                      "config": cfg.to_json()})
        except OSError as e:
            raise VswitchError.from_errno(e.errno or 5, f"write {self.db_path}") from None
        self.config = cfg
        self._prune_bond_state(cfg)

    def _commit(self, cfg: SwitchConfig, undo: Callable[[], None]) -> None:
        try:
            self.network.apply(cfg)   # the firewall, before anything is written
        except BaseException:
            undo()
            raise
        try:
            self._persist(cfg)
        except BaseException:
            undo()
            self.network.apply(self.config, strict=False)
            raise

    # --- start and stop ------------------------------------------------------------
    def start(self, cfg: SwitchConfig) -> None:
        """Bring up a whole configuration (daemon start).  A port that cannot
        be attached keeps its configuration and reports the error.  Ports
        left without an address on a subnet bridge get the one the database
        gave them before, if still free; the nftables table is rebuilt from
        scratch (whatever a crash left is replaced)."""
        try:
            previous = self.read_db(self.db_path)
        except VswitchError:
            previous = None
        cfg = self.network.prepare(cfg, previous)
        self._persist(cfg)
        for br in cfg.bridges.values():
            self._build_bridge(br, strict=False)
        # A table left by a crash is replaced, or removed when the stored
        # configuration had networks and this one has none.
        self.network.start(cfg, previous)
        self._prune_ofports(cfg)
        self.namespaces.release_all_except(self._netns_in_use(cfg))

    # --- runtime building blocks (no persistence; callers own the transaction) ---
    def _build_bridge(self, br: BridgeConfig, strict: bool) -> BridgeRuntime:
        rt = BridgeRuntime(self.dp.add_bridge(br.mac_table_size, br.mac_aging), name=br.name)
        self.bridges[br.name] = rt
        try:
            self._create_local_port(rt, br, strict)
            for port in br.ports.values():
                self._create_port(rt, port, strict)
            for s in br.static_macs:
                self._apply_static(br.name, s)
            self._sync_mirrors(br.name, br)
            self._apply_flows(br)
        except BaseException:
            self._remove_bridge(br.name)
            raise
        return rt

    def _remove_bridge(self, name: str) -> None:
        self.flows.forget(name)
        rt = self.bridges.pop(name)
        for prt in rt.ports.values():
            if prt.bond:
                prt.bond.stop()
            self.network.forget_port(prt.cfg.name)
        self.dp.del_bridge(rt.br_id)   # closes every fd of its ports
        for prt in rt.ports.values():
            self._release_devices(prt)
        self.network.bridge_down(name)

    def _create_local_port(self, rt: BridgeRuntime, br: BridgeConfig, strict: bool) -> None:
        """A subnet bridge's own port, holding the gateway (network.py)."""
        self.network.bridge_up(br)
        local = self.network.local_port(br)
        if local:
            self._create_port(rt, local, strict)

    def _change_network(self, rt: BridgeRuntime, old: BridgeConfig, new: BridgeConfig) -> None:
        """Live change of a bridge's subnet or gateway: its own port made
        anew, ports' addresses changed in place, default routes following.
        Undone by the same call with old and new swapped."""
        if Network.local_port(old) != Network.local_port(new):   # subnets or gateways
            if old.name in rt.ports and old.name not in old.ports:
                self._remove_port(rt, old.name)
            self.network.bridge_down(new.name)
            self._create_local_port(rt, new, strict=True)
        for name, pcfg in new.ports.items():
            prt = rt.ports.get(name)
            if prt is not None and name in old.ports and prt.cfg.ip != pcfg.ip:
                self._apply_live(rt, name, pcfg)
        for name in new.ports:
            if name in rt.ports:
                self.network.sync_port(new.name, rt.ports[name])

    def _create_port(self, rt: BridgeRuntime, cfg: PortConfig, strict: bool) -> PortRuntime:
        """Engine port and devices.  strict: a device that cannot be created
        is an error (and nothing is left behind); otherwise (start-up) the
        port keeps its configuration and shows why it is down."""
        prt = self._make_port(rt, cfg)
        try:
            self._attach(prt, strict)
        except VswitchError as e:
            if strict:
                self.dp.del_port(prt.port_id)
                raise
            prt.error = e.message
            log.warning("port %s: %s", cfg.name, e.message)
        except BaseException:
            self.dp.del_port(prt.port_id)
            raise
        rt.ports[cfg.name] = prt
        self._resync_mirrors_of(rt)     # mirrors naming it find its new engine id
        self.network.sync_port(rt.name, prt)
        return prt

    def _remove_port(self, rt: BridgeRuntime, name: str) -> PortRuntime:
        prt = rt.ports.pop(name)
        if prt.bond:
            prt.bond.stop()
        self.network.forget_port(name)
        self.dp.del_port(prt.port_id)   # closes the fd: a TAP disappears with it
        self._release_devices(prt)
        return prt

    def _create_port_from(self, bridge: str, br: BridgeConfig, name: str,
                          strict: bool) -> PortRuntime:
        """A port built from its whole configuration: its devices, and the
        static FDB entries that point at it (the engine forgets a port's
        entries with the port)."""
        rt = self.bridges[bridge]
        prt = self._create_port(rt, br.ports[name], strict)
        for s in br.static_macs:
            if s.port == name:
                self._apply_static(bridge, s)
        return prt

    def _detach_devices(self, prt: PortRuntime) -> None:
        """Close a plain port's device(s), keeping the engine port (and so
        its VLAN settings, static entries and whatever else is keyed by its
        id) for a new device."""
        for iface in prt.ifaces:
            self.dp.del_iface(iface)
        self._release_devices(prt)
        prt.ifaces, prt.attachment = [], None

    def _release_devices(self, prt: PortRuntime) -> None:
        """Devices the engine let go of: undo what the switch changed on
        interfaces it does not own (see PortFactory.release)."""
        atts = list(prt.member_atts.values())
        if prt.attachment is not None:
            atts.append(prt.attachment)
        for att in atts:
            self.factory.release(att)
            self._forget_brought_up(att.device)
        prt.member_atts.clear()

    def _reattach(self, prt: PortRuntime, strict: bool) -> None:
        """Build a plain port's device again (its namespace or interface went
        away), as configured.  strict: a failure is raised; otherwise it is
        shown on the port."""
        self._detach_devices(prt)
        try:
            self._attach(prt)
        except VswitchError as e:
            prt.error = e.message
            if strict:
                raise
            log.warning("port %s: %s", prt.cfg.name, e.message)
            return
        bridge = next((n for n, rt in self.bridges.items()
                       if rt.ports.get(prt.cfg.name) is prt), None)
        if bridge is not None:
            self.network.sync_port(bridge, prt)   # a new namespace: its default route

    def _apply_live(self, rt: BridgeRuntime, name: str, cfg: PortConfig) -> None:
        """Settings a port can change without being recreated: VLAN, bond
        settings, and the addresses of a TAP or internal port."""
        prt = rt.ports[name]
        old = prt.cfg
        if old.ip != cfg.ip and prt.attachment is not None:
            att = prt.attachment
            links.change_addresses(att.device, att.netns, old=old.ip, new=cfg.ip)
        if cfg.type == "vxlan" and old != cfg and prt.ifaces:
            self._retune_tunnel(rt, prt, cfg)
        self.dp.set_vlan(prt.port_id, cfg.effective_vlan_mode, cfg.tag, cfg.trunks)
        prt.cfg = cfg
        if prt.bond:
            prt.bond.reconfigure(cfg)
        if old.ip != cfg.ip:
            self.network.sync_port(rt.name, prt)

    def _retune_tunnel(self, rt: BridgeRuntime, prt: PortRuntime, cfg: PortConfig) -> None:
        """New remotes in place (learned MACs of remotes that stay are kept);
        any other tunnel setting replaces the interface on the same port."""
        old = prt.cfg
        if vxlan.only_remotes_changed(old, cfg):
            if old.remote_ip != cfg.remote_ip:
                self.dp.set_tunnel_remotes(prt.ifaces[0], cfg.remote_ip)
            return
        self.dp.del_iface(prt.ifaces[0])
        prt.ifaces = []
        try:
            iface, prt.tunnel = vxlan.attach(self.dp, prt.port_id, cfg)
        except BaseException:
            iface, prt.tunnel = vxlan.attach(self.dp, prt.port_id, old)   # as it was
            prt.ifaces = [iface]
            raise
        prt.ifaces = [iface]
        self.dp.fdb_flush(rt.br_id, prt.port_id)

    def stop(self) -> None:
        """Close every device and remove the namespaces we created.  System
        interfaces the switch brought up stay up (the record of it stays in
        the runtime state): a restart must not flap the links of a bond or
        of its neighbours; they go down when the configuration lets go of
        them."""
        for rt in self.bridges.values():
            for prt in rt.ports.values():
                if prt.bond:
                    prt.bond.stop()
        self.flows.stop()
        self.dp.close()
        self.bridges.clear()
        self.network.stop()
        self.namespaces.release_all_except(set())

    @staticmethod
    def _netns_in_use(cfg: SwitchConfig) -> set[str]:
        return {p.netns for b in cfg.bridges.values() for p in b.ports.values()
                if p.type == "tap" and p.netns}

    # --- bridges --------------------------------------------------------------------
    def add_bridge(self, name: str, settings: dict[str, Any], may_exist: bool) -> None:
        try:
            new = parse_bridge(name, settings, ("bridge", name))
        except ConfigError as e:
            raise _cfg_error(e) from None
        if name in self.config.bridges:
            if may_exist:
                return
            raise exists(f"bridge {name} already exists")
        new_cfg = self.network.prepare(self.config.with_bridge(new), self.config)
        self._build_bridge(new, strict=True)

        def undo() -> None:
            self._remove_bridge(name)
        self._commit(new_cfg, undo)

    def del_bridge(self, name: str, if_exists: bool) -> None:
        if name not in self.config.bridges:
            if if_exists:
                return
            raise not_found(f"no bridge named {name}")
        new = self.config.without_bridge(name)
        self.network.apply(new)
        try:
            self._persist(new)  # first: a failure here leaves everything running
        except BaseException:
            self.network.apply(self.config, strict=False)
            raise
        self._remove_bridge(name)
        self._prune_ofports(new)
        self.namespaces.release_all_except(self._netns_in_use(new))

    def set_bridge(self, name: str, settings: dict[str, Any]) -> None:
        br = self._bridge_cfg(name)
        if not settings:
            raise invalid("nothing to set")
        new = br
        network = {k: v for k, v in settings.items() if k in NETWORK_KEYS}
        flow_keys = {k: v for k, v in settings.items() if k in FLOW_KEYS}
        if flow_keys:
            try:
                new = replace(br, flow_export=changed_flow_export(br.flow_export, flow_keys,
                                                                  ("bridge", name)))
            except ConfigError as e:
                raise _cfg_error(e) from None
        for key, value in settings.items():
            path = ("bridge", name, key)
            try:
                if key in NETWORK_KEYS or key in FLOW_KEYS:
                    continue
                if key == "mac_aging":
                    new = replace(new, mac_aging=check_int(value, path, key, *MAC_AGING_RANGE))
                elif key == "mac_table_size":
                    size = check_int(value, path, key, *MAC_TABLE_SIZE_RANGE)
                    if size < len(new.static_macs):
                        raise ConfigError(path, f"{len(new.static_macs)} static entries "
                                                f"do not fit in {size}")
                    new = replace(new, mac_table_size=size)
                elif key == "external_ids" or key.startswith("external_ids:"):
                    ids = merge_external_ids(dict(new.external_ids), key, value, path)
                    new = replace(new, external_ids=check_external_ids(ids, path))
                else:
                    raise ConfigError(path, f"unknown bridge setting {key!r} "
                                            "(mac_aging, mac_table_size, "
                                            f"{', '.join(NETWORK_KEYS)}, netflow*, ipfix*, "
                                            "sflow*, external_ids)")
            except ConfigError as e:
                raise _cfg_error(e) from None
        new_cfg = self.config.with_bridge(new)
        if network:
            from .netconfig import set_bridge_network
            try:
                new_cfg = set_bridge_network(self.config, new, network)
            except ConfigError as e:
                raise _cfg_error(e) from None
            new = new_cfg.bridges[name]
        rt = self.bridges[name]
        self.dp.set_mac_aging(rt.br_id, new.mac_aging)
        try:
            self.dp.set_mac_table_size(rt.br_id, new.mac_table_size)
            self._change_network(rt, br, new)
            self._apply_flows(new)
        except BaseException:
            self._undo_set_bridge(rt, br, new)
            raise

        def undo() -> None:
            self._undo_set_bridge(rt, br, new)
        self._commit(new_cfg, undo)

    def _undo_set_bridge(self, rt: BridgeRuntime, old: BridgeConfig, new: BridgeConfig) -> None:
        self.dp.set_mac_aging(rt.br_id, old.mac_aging)
        self.dp.set_mac_table_size(rt.br_id, old.mac_table_size)
        self._change_network(rt, new, old)
        self._apply_flows(old)

    # --- flow export (vswitch/flowexport) and port numbers ------------------------------
    def _apply_flows(self, br: BridgeConfig) -> None:
        rt = self.bridges[br.name]

        def ports() -> list[PortView]:
            return [PortView(n, self.dp_ofport(br.name, n), prt.ifaces,
                             self.port_state(prt)[0] == "up")
                    for n, prt in sorted(self.bridges[br.name].ports.items())]
        self.flows.apply(br.name, rt.br_id, br.flow_export, ports)

    def dp_ofport(self, bridge: str, port: str) -> int:
        return self.runtime.ofport(bridge, port) or 0

    def _ofport(self, rt: BridgeRuntime, port: str) -> int:
        bridge = next(n for n, r in self.bridges.items() if r is rt)
        return self.runtime.assign_ofport(bridge, port)

    def _prune_ofports(self, cfg: SwitchConfig) -> None:
        # a subnet bridge's own port (network.py) is not in b.ports but has a number
        self.runtime.keep_ofports({b.name: set(b.ports) | ({b.name} if b.has_network else set())
                                   for b in cfg.bridges.values()})

    def flow_stats(self, bridge: str) -> dict[str, Any]:
        br = self._bridge_cfg(bridge)
        return {"bridge": bridge, "settings": br.flow_export.describe() if br.flow_export
                else {}, **self.flows.stats(bridge)}

    def _bridge_cfg(self, name: str) -> BridgeConfig:
        try:
            return self.config.bridges[name]
        except KeyError:
            raise not_found(f"no bridge named {name}") from None

    # --- ports ------------------------------------------------------------------------
    def _make_port(self, rt: BridgeRuntime, cfg: PortConfig) -> PortRuntime:
        port_id = self.dp.add_port(rt.br_id)
        prt = PortRuntime(cfg, port_id, rt.name)
        try:
            self.dp.set_ofport(port_id, self._ofport(rt, cfg.name))
            self.dp.set_vlan(port_id, cfg.effective_vlan_mode, cfg.tag, cfg.trunks)
            if cfg.type == "bond":
                self.dp.set_bond_mode(port_id, cfg.bond_setting("bond_mode"))
        except BaseException:
            self.dp.del_port(port_id)
            raise
        return prt

    def _attach(self, prt: PortRuntime, strict: bool = True) -> None:
        """Create the port's device(s).  strict: fail on any missing piece
        (an interactive request); otherwise (start-up) a bond keeps members
        whose interface is missing, as down."""
        if prt.cfg.type == "bond":
            self._attach_bond(prt, strict)
            return
        if prt.cfg.type == "vxlan":
            iface, prt.tunnel = vxlan.attach(self.dp, prt.port_id, prt.cfg)
            prt.ifaces = [iface]
            prt.error = None
            return
        att = self._note_brought_up(self.factory.create(prt.cfg))
        try:
            iface = self.dp.add_iface(prt.port_id, att.fd, att.kind, att.flags, att.mtu)
        except BaseException:
            self.factory.release(att)
            self._forget_brought_up(att.device)
            raise
        prt.ifaces = [iface]
        prt.attachment = att
        prt.error = None

    def add_port(self, bridge: str, name: str, settings: dict[str, Any],
                 may_exist: bool) -> None:
        br = self._bridge_cfg(bridge)
        try:
            cfg = parse_port(name, settings, ("bridge", bridge, "port", name), br.subnet,
                             br.subnet6)
        except ConfigError as e:
            raise _cfg_error(e) from None
        if self.network.is_local_port(self.config, name):
            if may_exist and bridge == name:
                return     # ovs-vsctl --may-exist add-port br0 br0: it is there
            raise exists(f"port {name} already exists: it is bridge {name}'s own port")
        found = self.config.find_port(name)
        if found:
            other_br, existing = found
            if other_br.name != bridge:
                raise exists(f"port {name} already exists on bridge {other_br.name}")
            if not may_exist:
                raise exists(f"port {name} already exists on bridge {bridge}")
            # ovs-vsctl --may-exist: the port is there, so nothing changes,
            # whatever else the command says -- except that a port whose
            # device vanished is built again as configured.
            self._revive(bridge, name)
            return
        new_br = replace(br, ports={**br.ports, name: cfg})
        new_cfg = self.config.with_bridge(new_br)
        try:
            check_global(new_cfg)
        except ConfigError as e:
            raise _cfg_error(e) from None
        new_cfg = self.network.prepare(new_cfg, self.config)   # its address, if any
        cfg = new_cfg.bridges[bridge].ports[name]
        rt = self.bridges[bridge]
        self._create_port(rt, cfg, strict=True)

        def undo() -> None:
            self._remove_port(rt, name)
            self._release_netns(cfg, self.config)
        self._commit(new_cfg, undo)

    def del_port(self, bridge: str | None, name: str, if_exists: bool) -> None:
        found = self.config.find_port(name)
        if bridge is not None:
            self._bridge_cfg(bridge)
        local = self.network.is_local_port(self.config, name)
        if local and bridge in (None, name):
            raise self.network.local_port_refusal(local, "deleted")
        if not found or (bridge is not None and found[0].name != bridge):
            if if_exists:
                return
            where = f" on bridge {bridge}" if bridge else ""
            raise not_found(f"no port named {name}{where}")
        br, cfg = found
        outputs_to = self._mirror_outputs(name)
        if outputs_to:
            b, m = outputs_to[0]
            raise VswitchError("EBUSY", f"port {name} is the output of mirror {m} on bridge "
                                        f"{b} (del-mirror {b} {m} first)")
        statics = tuple(s for s in br.static_macs if s.port != name)
        # as in Open vSwitch, a deleted port leaves the mirrors' selections
        new_br = replace(br, ports={n: p for n, p in br.ports.items() if n != name},
                         static_macs=statics,
                         mirrors=tuple(m.without_port(name) for m in br.mirrors))
        new_cfg = self.config.with_bridge(new_br)
        self.network.apply(new_cfg)    # its published ports go first
        try:
            self._persist(new_cfg)
        except BaseException:
            self.network.apply(self.config, strict=False)
            raise
        self._remove_port(self.bridges[br.name], name)
        self._prune_ofports(new_cfg)
        self._release_netns(cfg, new_cfg)

    def _revive(self, bridge: str, name: str) -> bool:
        """Re-adding a port whose device is gone (its namespace was deleted,
        say) builds the device again, as it is configured; the engine port
        stays, with everything attached to it.  True if it did."""
        prt = self.bridges[bridge].ports[name]
        if prt.bond or not self.device_broken(prt):
            return False
        self._reattach(prt, strict=True)
        log.info("port %s: device built again", name)
        return True

    def device_broken(self, prt: PortRuntime) -> bool:
        """A plain port whose device could not be made or has vanished."""
        return prt.bond is None and (prt.error is not None or not prt.ifaces
                                     or any(self.dp.iface_failed(i) for i in prt.ifaces))

    LIVE_PORT_KEYS = ("ip", "tag", "trunks", "vlan_mode", "bond_mode", "bond_updelay",
                      "bond_downdelay", "bond_primary", "bond_detect_mode",
                      "bond_miimon_interval", "bond_rebalance_interval", "publish",
                      "external_ids") + vxlan.LIVE_KEYS + LACP_KEYS

    def set_port(self, name: str, settings: dict[str, Any]) -> None:
        """Change addresses, VLAN or bond settings live.  An empty value
        clears a key (tag=, trunks= meaning all VLANs, vlan_mode= meaning
        the default, ip= no address)."""
        found = self.config.find_port(name)
        local = self.network.is_local_port(self.config, name)
        if local:
            raise self.network.local_port_refusal(local, "changed")
        if not found:
            raise not_found(f"no port named {name}")
        br, cfg = found
        if not settings:
            raise invalid("nothing to set")
        merged = cfg.to_json()
        settings = {k.replace("-", "_") if not k.startswith("external_ids:") else k: v
                    for k, v in settings.items()}
        for key, value in settings.items():
            if key == "external_ids" or key.startswith("external_ids:"):
                try:
                    merged["external_ids"] = merge_external_ids(
                        merged.get("external_ids", {}), key, value,
                        ("bridge", br.name, "port", name, key))
                except ConfigError as e:
                    raise _cfg_error(e) from None
                continue
            if (key.startswith("bond_") or key in LACP_KEYS) and cfg.type != "bond":
                raise invalid(f"{key} is for bonds; {name} is a {cfg.type} port")
            if key in vxlan.VXLAN_KEYS and cfg.type != "vxlan":
                raise invalid(f"{key} is for vxlan ports; {name} is a {cfg.type} port")
            tunnel_mtu = key == "mtu" and cfg.type == "vxlan"   # the inner MTU: live
            if key not in self.LIVE_PORT_KEYS and not tunnel_mtu:
                if key in PortConfig.__dataclass_fields__:
                    raise invalid(f"{key} of a port cannot be changed live "
                                  "(del-port and add-port it again)")
                raise invalid(f"unknown port setting {key!r} "
                              f"(one of: {', '.join(self.LIVE_PORT_KEYS)})")
            if value in ("", None, []):
                merged.pop(key, None)
            else:
                merged[key] = value
        try:
            new = parse_port(name, merged, ("bridge", br.name, "port", name), br.subnet,
                             br.subnet6)
        except ConfigError as e:
            raise _cfg_error(e) from None
        new_cfg = self.network.prepare(
            self.config.with_bridge(replace(br, ports={**br.ports, name: new})), self.config)
        new = new_cfg.bridges[br.name].ports[name]
        if new == cfg:
            return
        rt = self.bridges[br.name]
        self._apply_live(rt, name, new)

        def undo() -> None:
            self._apply_live(rt, name, cfg)
        self._commit(new_cfg, undo)

    def rehome_port(self, name: str, cfg: PortConfig, device: str, netns: str | None) -> None:
        """Record that a port's device was moved and renamed by someone else
        (Docker moves the TAP it is handed into the container): the new
        configuration describes where the device is now, so a restarted
        daemon re-creates it there.  Nothing is done to the device."""
        found = self.config.find_port(name)
        if not found:
            raise not_found(f"no port named {name}")
        br, old = found
        new_cfg = self.network.prepare(
            self.config.with_bridge(replace(br, ports={**br.ports, name: cfg})), self.config)
        cfg = new_cfg.bridges[br.name].ports[name]
        prt = self.bridges[br.name].ports[name]
        old_att = prt.attachment
        if old_att is not None:
            prt.attachment = replace(old_att, device=device, netns=netns)
        prt.cfg = cfg

        def undo() -> None:
            prt.cfg, prt.attachment = old, old_att
        self._commit(new_cfg, undo)
        if old.netns and old.netns != cfg.netns:
            self._release_netns(old, new_cfg)
        # No route is touched: whoever moved the device routes the namespace
        # now (Docker adds its default route a moment later and fails if one
        # is there).  A device vswitch re-creates gets its routes as usual.
        self.network.forget_port(name)

    def _release_netns(self, cfg: PortConfig, remaining: SwitchConfig) -> None:
        if cfg.type == "tap" and cfg.netns and cfg.netns not in self._netns_in_use(remaining):
            self.namespaces.release(cfg.netns)

    def list_ports(self, bridge: str) -> list[str]:
        return sorted(self._bridge_cfg(bridge).ports)

    # --- FDB ---------------------------------------------------------------------------
    def _apply_static(self, bridge: str, s: StaticMac) -> None:
        rt = self.bridges[bridge]
        self.dp.fdb_add_static(rt.br_id, rt.ports[s.port].port_id, s.vlan, s.mac)

    def fdb_add(self, bridge: str, port: str, vlan: Any, mac: Any) -> None:
        br = self._bridge_cfg(bridge)
        if port not in br.ports:
            raise not_found(f"no port named {port} on bridge {bridge}")
        try:
            v = check_int(vlan, ("vlan",), "VLAN", 0, 4094)
            m = check_mac(mac, ("mac",))
        except ConfigError as e:
            raise invalid(e.message) from None
        s = StaticMac(port, v, m)
        statics = tuple(x for x in br.static_macs if (x.vlan, x.mac) != (v, m)) + (s,)
        if len(statics) > br.mac_table_size:
            raise VswitchError("ENOSPC", f"mac_table_size {br.mac_table_size} is full of "
                                         "static entries")
        rt = self.bridges[bridge]
        previous = next((x for x in br.static_macs if (x.vlan, x.mac) == (v, m)), None)
        self._apply_static(bridge, s)

        def undo() -> None:
            if previous:
                self._apply_static(bridge, previous)
            else:
                self.dp.fdb_del(rt.br_id, v, m)
        self._commit(self.config.with_bridge(replace(br, static_macs=statics)), undo)

    def fdb_del(self, bridge: str, vlan: Any, mac: Any) -> None:
        br = self._bridge_cfg(bridge)
        try:
            v = check_int(vlan, ("vlan",), "VLAN", 0, 4094)
            m = check_mac(mac, ("mac",))
        except ConfigError as e:
            raise invalid(e.message) from None
        rt = self.bridges[bridge]
        statics = tuple(x for x in br.static_macs if (x.vlan, x.mac) != (v, m))
        if len(statics) != len(br.static_macs):
            self._persist(self.config.with_bridge(replace(br, static_macs=statics)))
        try:
            self.dp.fdb_del(rt.br_id, v, m)
        except VswitchError as e:
            if e.code == "ENOENT" and len(statics) != len(br.static_macs):
                return
            if e.code == "ENOENT":
                raise not_found(f"no FDB entry for {m} in VLAN {v} on {bridge}") from None
            raise

    def fdb_flush(self, bridge: str | None) -> int:
        names = [bridge] if bridge else list(self.bridges)
        for n in names:
            self._bridge_cfg(n)
        return sum(self.dp.fdb_flush(self.bridges[n].br_id) for n in names)

    def fdb_show(self, bridge: str) -> list[dict[str, Any]]:
        self._bridge_cfg(bridge)
        rt = self.bridges[bridge]
        names = {p.port_id: n for n, p in rt.ports.items()}
        rows = [{"port": names.get(e.port, str(e.port)), "vlan": e.vlan, "mac": e.mac,
                 "age": None if e.is_static else e.age, "static": e.is_static,
                 # tunnel ports: the remote the MAC is behind
                 **({"remote": e.remote} if e.remote else {})}
                for e in self.dp.fdb_dump(rt.br_id)]
        rows.sort(key=lambda r: (r["port"], r["vlan"], r["mac"]))
        return rows

    def fdb_stats(self, bridge: str) -> dict[str, int]:
        self._bridge_cfg(bridge)
        s = self.dp.fdb_stats(self.bridges[bridge].br_id)
        return {"entries": s.entries, "static_entries": s.static_entries,
                "max_entries": s.max_entries, "mac_aging": s.aging, "learned": s.learned,
                "expired": s.expired, "evicted": s.evicted, "moved": s.moved}

    # --- reload ---------------------------------------------------------------------------
    config_file: Path | None = None   # the --config the daemon started from

    def reload(self, file: str | None) -> dict[str, list[str]]:
        """Apply a configuration file's differences as one transaction."""
        from .config_file import ConfigFileError, load_config_file
        from .reload import apply_config
        path = Path(file) if file else self.config_file
        if path is None:
            raise invalid("no file to reload: vswitchd was not started with --config; "
                          "name one: vswitchctl reload FILE")
        try:
            new = load_config_file(path)
        except ConfigFileError as e:
            raise invalid(str(e)) from None
        new = keep_managed(self.config, new)           # containers' ports are not the file's
        new = self.network.prepare(new, self.config)   # addresses the file leaves open
        changes = apply_config(self, new)
        if file:
            self.config_file = path
        log.info("reloaded %s: %s", path, changes or "nothing changed")
        return changes

    # --- state ------------------------------------------------------------------------------
    def port_state(self, prt: PortRuntime) -> tuple[str, str | None]:
        if prt.bond:
            if any(m.enabled for m in prt.bond.members.values()):
                return "up", None
            return "down", "no member enabled"
        if prt.error:
            return "down", prt.error
        if not prt.ifaces:
            return "down", "not attached"
        if any(self.dp.iface_failed(i) for i in prt.ifaces):
            return "down", "device gone (its namespace or interface was deleted)"
        att = prt.attachment
        if att is not None and links.admin_up(att.index, att.netns) is False:
            return "down", "interface administratively down"
        return "up", None

    def port_stats(self, bridge: str | None) -> list[dict[str, Any]]:
        names = [bridge] if bridge else sorted(self.bridges)
        rows = []
        for n in names:
            self._bridge_cfg(n)
            for pname, prt in sorted(self.bridges[n].ports.items()):
                total = IfaceStats()
                for i in prt.ifaces:
                    total += self.dp.iface_stats(i)
                row = {"bridge": n, "port": pname, "ofport": self.dp_ofport(n, pname),
                       **total.to_json()}
                if prt.cfg.type == "vxlan" and prt.ifaces:
                    row["remotes"] = [{"remote": r.ip, "source": r.src_ip,
                                       "rx_packets": r.rx_packets, "rx_bytes": r.rx_bytes,
                                       "tx_packets": r.tx_packets, "tx_bytes": r.tx_bytes,
                                       "tx_errors": r.tx_errors}
                                      for r in self.dp.tunnel_remote_stats(prt.ifaces[0])]
                rows.append(row)
        return rows

    def _port_entry(self, bridge: str, prt: PortRuntime) -> dict[str, Any]:
        pcfg = prt.cfg
        state, why = self.port_state(prt)
        entry = {"name": pcfg.name, **pcfg.to_json(), "vlan_mode": pcfg.effective_vlan_mode,
                 "state": state, "ofport": self.dp_ofport(bridge, pcfg.name)}
        if why:
            entry["error"] = why
        if prt.bond:
            entry["active_member"] = prt.bond.active
        if prt.attachment:
            entry["device"] = prt.attachment.device
            entry["device_mac"] = prt.attachment.mac
            entry["device_mtu"] = prt.attachment.mtu
        if prt.tunnel and prt.ifaces:
            entry["device_mtu"] = prt.tunnel.mtu      # the inner MTU
            entry["mtu_from"] = prt.tunnel.mtu_from
            note = vxlan.state_note(pcfg)
            if note:
                entry["warning"] = note
        for version, route in self.network.routes.get(pcfg.name, {}).items():
            entry["default_route" if version == 4 else "default_route6"] = route
        return entry

    def show(self) -> dict[str, Any]:
        out = []
        for bname, br in sorted(self.config.bridges.items()):
            rt = self.bridges[bname]
            ports = []
            local = rt.ports.get(bname) if br.has_network else None
            if local is not None:    # the bridge's own port (network.py)
                ports.append({**self._port_entry(bname, local), "local": True})
            for pname in sorted(br.ports):
                ports.append(self._port_entry(bname, rt.ports[pname]))
            entry = {"name": bname, "mac_aging": br.mac_aging,
                     "mac_table_size": br.mac_table_size, "ports": ports}
            for key in NETWORK_KEYS:
                if getattr(br, key) is not None:
                    entry[key] = getattr(br, key)
            if br.flow_export and br.flow_export.describe():
                entry["flow_export"] = br.flow_export.describe()
            if br.external_ids:
                entry["external_ids"] = dict(br.external_ids)
            out.append(entry)
        return {"bridges": out}

    def net_show(self, bridge: str) -> dict[str, Any]:
        """`docker network inspect`, in this project's words."""
        br = self._bridge_cfg(bridge)
        rt = self.bridges[bridge]
        ports = []
        for pname in sorted(br.ports):
            e = self._port_entry(bridge, rt.ports[pname])
            ipv4 = [a for a in e.get("ip", ()) if ":" not in a]
            ipv6 = [a for a in e.get("ip", ()) if ":" in a]
            ports.append({"name": pname, "type": e["type"], "state": e["state"],
                          "netns": e.get("netns"), "ipv4": ipv4[0] if ipv4 else None,
                          "ipv6": ipv6[0] if ipv6 else None,
                          "ip": e.get("ip", []), "mac": e.get("device_mac"),
                          "publish": e.get("publish", []),
                          "default_route": e.get("default_route"),
                          "default_route6": e.get("default_route6"),
                          "external_ids": e.get("external_ids", {})})
        local = rt.ports.get(bridge) if br.has_network else None
        out = self.network.describe(br, ports)
        if local is not None:
            out["gateway_mac"] = local.attachment.mac if local.attachment else None
            out["gateway_state"] = self.port_state(local)[0]
        out["external_ids"] = dict(br.external_ids)
        return out
