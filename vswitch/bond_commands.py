"""The Switch's bond operations: attaching members, link events, the
bond/* commands, and the runtime state that survives a restart (the active
member).  A mixin of Switch (switch.py), kept apart so each file has one
subject; it uses the Switch's configuration, runtime maps and transactions.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import links
from .bond import Bond
from .config import ConfigError, PortConfig, check_global, parse_port
from .errors import VswitchError, exists, invalid, not_found
from .monitor import LinkEvent
from .datapath import IFACE_PACKET, VNET_HDR
from .lacp.pdu import mac_raw
from .ports import Attachment, derived_mac
from .runtime_state import RuntimeState
from .upcall import Upcall

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from .config import SwitchConfig
    from .datapath import Datapath
    from .ports import PortFactory
    from .switch import BridgeRuntime, PortRuntime

log = logging.getLogger(__name__)


class BondCommands:
    runtime: RuntimeState

    if TYPE_CHECKING:   # provided by Switch, the class this one is mixed into
        dp: Datapath
        system_id: str
        loop: asyncio.AbstractEventLoop | None
        factory: PortFactory
        bridges: dict[str, BridgeRuntime]
        config: SwitchConfig

        def add_port(self, bridge: str, name: str, settings: dict[str, Any],
                     may_exist: bool) -> None: ...

        def _commit(self, cfg: SwitchConfig, undo: Callable[[], None]) -> None: ...

        def _persist(self, cfg: SwitchConfig) -> None: ...

        def _attach(self, prt: PortRuntime, strict: bool = True) -> None: ...

        def _reattach(self, prt: PortRuntime, strict: bool) -> None: ...

    # --- runtime state -------------------------------------------------------
    def _save_bond_state(self, bond: Bond) -> None:
        self.runtime.set_bond_active(bond.name, bond.active)

    def _prune_bond_state(self, cfg: "SwitchConfig") -> None:
        self.runtime.keep_bonds(p.name for b in cfg.bridges.values()
                                for p in b.ports.values() if p.type == "bond")

    def _note_brought_up(self, att: Attachment) -> Attachment:
        """Remember a system interface the switch brought up (to take it down
        again when it lets go of it, even after a restart in between: then
        the interface is found up, but it was the switch that did it)."""
        if att.kind != IFACE_PACKET:
            return att
        if att.was_down:
            self.runtime.set_brought_up(att.device, True)
        elif self.runtime.brought_up(att.device):
            att = replace(att, was_down=True)
        return att

    def _forget_brought_up(self, device: str) -> None:
        self.runtime.set_brought_up(device, False)

    # --- members ---------------------------------------------------------------
    def _attach_member(self, prt: "PortRuntime", name: str) -> tuple[int, bool]:
        att = self._note_brought_up(self.factory.create(
            PortConfig(name=name, type="system", offload=prt.cfg.offload)))
        try:
            iface = self.dp.add_iface(prt.port_id, att.fd, att.kind, att.flags, att.mtu)
        except BaseException:
            self.factory.release(att)
            self._forget_brought_up(name)
            raise
        prt.ifaces.append(iface)
        prt.member_index[name] = att.index
        prt.member_atts[name] = att
        info = links.get_link(name)
        return iface, bool(info and info.up and info.carrier)

    def lacp_system_mac(self, bridge: str) -> bytes:
        """The LACP system id of a bridge's bonds when lacp-system-id is not
        set: a MAC derived from the switch's system id and the bridge's name
        (Open vSwitch uses the bridge's MAC), so it survives restarts."""
        return mac_raw(derived_mac(self.system_id, f"bridge:{bridge}"))

    @staticmethod
    def _member_device(prt: "PortRuntime", name: str) -> tuple[str | None, bool]:
        """(MAC, speaks the virtio-net header) of an attached member."""
        att = prt.member_atts.get(name)
        if att is None:
            return None, False
        return att.mac, bool(att.flags & VNET_HDR)

    def _attach_bond(self, prt: "PortRuntime", strict: bool) -> None:
        cfg = prt.cfg
        bond = Bond(cfg.name, cfg, prt.port_id, self.dp, self.loop, self._save_bond_state,
                    system_mac=self.lacp_system_mac(prt.bridge))
        for name in cfg.interfaces:
            try:
                iface, up = self._attach_member(prt, name)
            except VswitchError as e:
                if strict:
                    raise VswitchError(e.code, f"bond {cfg.name}: {e.message}") from None
                log.warning("bond %s: member %s: %s", cfg.name, name, e.message)
                bond.add_member(name, None, False)
                continue
            mac, vnet = self._member_device(prt, name)
            bond.add_member(name, iface, up, mac=mac, vnet=vnet)
        prt.bond = bond
        bond.start(self.runtime.bond_active(cfg.name))

    def on_link_event(self, ev: LinkEvent) -> None:
        """Link events of the daemon's namespace: carrier for bonds, and
        devices of system ports and bond members that vanish or come back
        (a device re-created under the same name is attached again)."""
        for rt in self.bridges.values():
            for prt in rt.ports.values():
                if prt.bond and ev.name in prt.bond.members:
                    self._member_event(prt, ev)
                elif prt.cfg.type == "system" and prt.cfg.name == ev.name:
                    self._system_port_event(prt, ev)

    def _system_port_event(self, prt: "PortRuntime", ev: LinkEvent) -> None:
        if not ev.exists:
            if prt.error is None:
                prt.error = "interface gone; it is attached again if it comes back"
                log.warning("port %s: interface deleted", prt.cfg.name)
            self._forget_brought_up(prt.cfg.name)
            return
        att = prt.attachment
        if att is not None and att.index == ev.index and prt.error is None:
            return
        self._reattach(prt, strict=False)
        if prt.error is None:
            log.info("port %s: interface back, attached again", prt.cfg.name)

    def _member_event(self, prt: "PortRuntime", ev: LinkEvent) -> None:
        bond = prt.bond
        assert bond is not None
        m = bond.members[ev.name]
        if not ev.exists:
            prt.member_atts.pop(ev.name, None)
            self._forget_brought_up(ev.name)
        if ev.exists and (m.iface is None or prt.member_index.get(ev.name) != ev.index):
            # the member's device was re-created: a new socket for the new one
            if m.iface is not None:
                self.dp.del_iface(m.iface)
                prt.ifaces.remove(m.iface)
                prt.member_atts.pop(ev.name, None)
                m.iface = None
            try:
                iface, _up = self._attach_member(prt, ev.name)
                mac, vnet = self._member_device(prt, ev.name)
                bond.set_member_iface(ev.name, iface, mac=mac, vnet=vnet)
                log.info("bond %s: member %s attached again", bond.name, ev.name)
            except VswitchError as e:
                log.warning("bond %s: member %s: %s", bond.name, ev.name, e.message)
        if bond.uses_netlink or not ev.exists:
            bond.link_changed(ev.name, ev.up and ev.exists and m.iface is not None)

    # --- lookups ---------------------------------------------------------------
    def _bond(self, name: str) -> tuple[str, "PortRuntime"]:
        found = self.config.find_port(name)
        if not found or found[1].type != "bond":
            raise not_found(f"no bond named {name}")
        br = found[0].name
        prt = self.bridges[br].ports[name]
        assert prt.bond is not None
        return br, prt

    # --- commands ----------------------------------------------------------------
    def add_bond(self, bridge: str, name: str, interfaces: list[str],
                 settings: dict[str, Any], may_exist: bool) -> None:
        if len(interfaces) < 2:
            raise invalid("add-bond needs at least two interfaces")
        settings = {**settings, "type": "bond", "interfaces": interfaces}
        self.add_port(bridge, name, settings, may_exist)

    def bond_show(self, name: str | None) -> list[dict[str, Any]]:
        if name is not None:
            br, prt = self._bond(name)
            assert prt.bond
            return [{"bridge": br, **prt.bond.show()}]
        out = []
        for br, rt in sorted(self.bridges.items()):
            for _pname, prt in sorted(rt.ports.items()):
                if prt.bond:
                    out.append({"bridge": br, **prt.bond.show()})
        return out

    def lacp_show(self, name: str | None) -> list[dict[str, Any]]:
        """`lacp/show`: one entry per bond that runs LACP."""
        if name is not None:
            _br, prt = self._bond(name)
            assert prt.bond
            if prt.bond.lacp is None:
                raise invalid(f"bond {name} does not run LACP (lacp=off); set lacp=active "
                              "or lacp=passive")
            return [prt.bond.lacp.show(list(prt.cfg.interfaces))]
        out = []
        for _br, rt in sorted(self.bridges.items()):
            for _pname, prt in sorted(rt.ports.items()):
                if prt.bond and prt.bond.lacp is not None:
                    out.append(prt.bond.lacp.show(list(prt.cfg.interfaces)))
        return out

    def on_slow_protocol(self, up: Upcall) -> None:
        """A slow-protocols frame (a LACPDU, or a marker) a bond member
        claimed: to its bond's LACP machines.  Runs on the event loop."""
        for rt in self.bridges.values():
            for prt in rt.ports.values():
                if prt.port_id == up.port and prt.bond is not None:
                    if prt.bond.lacp_receive(up.iface, up.frame):
                        return
        log.debug("slow-protocols frame from engine interface %d: no LACP bond has it",
                  up.iface)

    def bond_set_active_member(self, name: str, member: str) -> None:
        _br, prt = self._bond(name)
        assert prt.bond
        prt.bond.set_active_member(member)

    def bond_set_member_admin(self, name: str, member: str, up: bool) -> None:
        _br, prt = self._bond(name)
        assert prt.bond
        prt.bond.set_admin(member, up)

    def add_bond_iface(self, name: str, member: str) -> None:
        br_name, prt = self._bond(name)
        assert prt.bond
        cfg = prt.cfg
        if member in cfg.interfaces:
            raise exists(f"{member} is already a member of bond {name}")
        try:
            new = parse_port(name, {**cfg.to_json(), "interfaces": [*cfg.interfaces, member]},
                             ("bridge", br_name, "port", name))
            br = self.config.bridges[br_name]
            new_cfg = self.config.with_bridge(replace(br, ports={**br.ports, name: new}))
            check_global(new_cfg)
        except ConfigError as e:
            raise invalid(str(e)) from None
        iface, up = self._attach_member(prt, member)
        prt.cfg = new
        prt.bond.cfg = new
        mac, vnet = self._member_device(prt, member)
        prt.bond.add_member(member, iface, up, mac=mac, vnet=vnet)
        prt.bond.update()

        def undo() -> None:
            self._detach_member(prt, member)
            prt.cfg = cfg
            prt.bond.cfg = cfg   # type: ignore[union-attr]
        self._commit(new_cfg, undo)

    def del_bond_iface(self, name: str, member: str) -> None:
        br_name, prt = self._bond(name)
        cfg = prt.cfg
        if member not in cfg.interfaces:
            raise not_found(f"bond {name} has no member {member}")
        if len(cfg.interfaces) == 1:
            raise invalid(f"{member} is the last interface of bond {name} "
                          "(del-port the bond instead)")
        if cfg.bond_primary == member:
            raise invalid(f"{member} is bond_primary of {name}; change bond_primary first")
        new = replace(cfg, interfaces=tuple(i for i in cfg.interfaces if i != member))
        br = self.config.bridges[br_name]
        self._persist(self.config.with_bridge(replace(br, ports={**br.ports, name: new})))
        prt.cfg = new
        assert prt.bond
        prt.bond.cfg = new
        self._detach_member(prt, member)

    def _detach_member(self, prt: "PortRuntime", member: str) -> None:
        assert prt.bond
        m = prt.bond.members.get(member)
        if m is None:
            return
        # The bond lets go first, while the device is still there: its
        # buckets move, and under LACP it says goodbye on that link.
        prt.bond.remove_member(member)
        if m.iface is not None:
            self.dp.del_iface(m.iface)
            prt.ifaces.remove(m.iface)
        att = prt.member_atts.pop(member, None)
        if att is not None:
            self.factory.release(att)
            self._forget_brought_up(member)
