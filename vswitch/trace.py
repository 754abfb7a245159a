"""`vswitchctl trace BR in_port=P dl_src=MAC dl_dst=MAC [dl_vlan=N]
[dl_type=0xNNNN]`: what the engine would do with such a frame (Open
vSwitch's ofproto/trace).

The frame is built here and handed to vs_dp_trace, which runs the engine's
own forwarding code with a recorder attached and changes nothing (no frame
sent, nothing learned or counted).  This module only turns the recorded
steps into words and the engine's ids into names: the decision itself is
never re-implemented in Python, so it cannot drift from the real one.
"""
from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING, Any

from ._engine import lib
from .config import ConfigError, check_int
from .datapath import DROP_REASONS, RawTrace, mac_bytes
from .errors import invalid, not_found

if TYPE_CHECKING:
    from .switch import BridgeRuntime, PortRuntime, Switch

TRACE_KEYS = ("in_port", "dl_src", "dl_dst", "dl_vlan", "dl_type")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
MIN_FRAME = 60
VLAN_MODE_NAMES = {lib.VS_VLAN_TRUNK: "trunk", lib.VS_VLAN_ACCESS: "access",
                   lib.VS_VLAN_NATIVE_TAGGED: "native-tagged",
                   lib.VS_VLAN_NATIVE_UNTAGGED: "native-untagged"}
BOND_MODE_NAMES = {lib.VS_BOND_ACTIVE_BACKUP: "active-backup",
                   lib.VS_BOND_BALANCE_SLB: "balance-slb",
                   lib.VS_BOND_BALANCE_TCP: "balance-tcp"}


def _mac(flow: dict[str, Any], key: str) -> str:
    value = flow.get(key)
    if value is None:
        raise invalid(f"trace needs {key}=MAC")
    if not isinstance(value, str) or not _MAC.match(value):
        raise invalid(f"{key}: {value!r} is not a MAC address (like 02:00:00:00:00:01)")
    return value.lower()


def build_frame(flow: dict[str, Any]) -> tuple[bytes, int | None, int]:
    """The frame to trace, its 802.1Q VID (None: untagged) and ethertype."""
    unknown = sorted(set(flow) - set(TRACE_KEYS))
    if unknown:
        raise invalid(f"unknown trace field {unknown[0]!r} (fields: {', '.join(TRACE_KEYS)})")
    dst, src = _mac(flow, "dl_dst"), _mac(flow, "dl_src")
    try:
        vlan = None if flow.get("dl_vlan") in (None, "") else \
            check_int(flow["dl_vlan"], ("dl_vlan",), "dl_vlan", 0, 4095)
        raw_type = flow.get("dl_type", "0x0800")
        if isinstance(raw_type, str) and re.fullmatch(r"0[xX][0-9a-fA-F]{1,4}", raw_type.strip()):
            raw_type = int(raw_type, 16)
        dl_type = check_int(raw_type, ("dl_type",), "dl_type", 0x600, 0xFFFF)
    except ConfigError as e:
        raise invalid(e.message) from None
    if dl_type in (0x8100, 0x88A8):
        raise invalid("dl_type: give the VLAN with dl_vlan=N instead of a tag ethertype")
    frame = mac_bytes(dst) + mac_bytes(src)
    if vlan is not None:
        frame += struct.pack("!HH", 0x8100, vlan)
    frame += struct.pack("!H", dl_type)
    return frame + bytes(max(0, MIN_FRAME - len(frame))), vlan, dl_type


def _input(sw: "Switch", rt: "BridgeRuntime", bridge: str, name: Any
           ) -> tuple[str, str, int, str | None]:
    """(port, interface, engine iface, a note) for in_port=NAME: a port, or
    a bond member by its interface name; a bond port means its active
    member (as frames from the far end would arrive)."""
    if not isinstance(name, str) or not name:
        raise invalid("trace needs in_port=PORT")
    prt = rt.ports.get(name)
    if prt is not None:
        if prt.bond is None:
            if not prt.ifaces:
                raise invalid(f"port {name} is down ({sw.port_state(prt)[1]}): it receives "
                              "nothing to trace")
            return name, name, prt.ifaces[0], None
        member = prt.bond.active or next((m for m, st in prt.bond.members.items()
                                          if st.iface is not None), None)
        if member is None:
            raise invalid(f"bond {name} has no member to receive on")
        note = "its active member" if member == prt.bond.active else "no member is active"
        iface = prt.bond.members[member].iface
        assert iface is not None
        return name, member, iface, f"bond {name}: received on {member} ({note})"
    for pname, p in rt.ports.items():
        if p.bond and name in p.bond.members:
            iface = p.bond.members[name].iface
            if iface is None:
                raise invalid(f"bond member {name} is not attached (its interface is missing)")
            return pname, name, iface, None
    raise not_found(f"no port or bond member named {name} on bridge {bridge}")


class _Names:
    """Engine ids of one bridge back to names."""

    def __init__(self, rt: "BridgeRuntime") -> None:
        self.ports: dict[int, str] = {}
        self.ifaces: dict[int, str] = {}
        self.mirrors = {slot: name for name, slot in rt.mirror_slots.items()}
        for pname, prt in rt.ports.items():
            self.ports[prt.port_id] = pname
            self._ifaces(pname, prt)

    def _ifaces(self, pname: str, prt: "PortRuntime") -> None:
        if prt.bond:
            for m, st in prt.bond.members.items():
                if st.iface is not None:
                    self.ifaces[st.iface] = m
        else:
            for i in prt.ifaces:
                self.ifaces[i] = pname

    def port(self, pid: int) -> str:
        return self.ports.get(pid, f"#{pid}")

    def iface(self, iid: int) -> str:
        return self.ifaces.get(iid, f"#{iid}")


def _vlan(v: int) -> str:
    return "VLAN 0 (untagged)" if v == 0 else f"VLAN {v}"


def _step(kind: int, a: int, b: int, c: int, n: _Names, src: str, dst: str) -> str:
    K = lib
    if kind == K.VS_TRACE_RECEIVE:
        return f"received on {n.iface(a)} (port {n.port(b)}), {c} bytes"
    if kind == K.VS_TRACE_PARSE:
        tags = "untagged" if a == 0 else (f"{a} tag{'s' if a > 1 else ''}, outer VID {b}")
        return f"parsed: {tags}, ethertype 0x{c:04x}"
    if kind == K.VS_TRACE_VLAN:
        return f"ingress VLAN: {VLAN_MODE_NAMES.get(b, b)} port, frame is in {_vlan(a)}" + \
            (f", priority {c >> 13}" if c >> 13 else "")
    if kind == K.VS_TRACE_CLAIMED:
        return "LACPDU claimed by the control plane: sent up the upcall channel, not forwarded"
    if kind == K.VS_TRACE_BOND_ADMIT:
        mode = BOND_MODE_NAMES.get(b, str(b))
        active = n.iface(c) if c >= 0 else "none"
        return f"bond ({mode}, active member {active}): " + \
            ("frame admitted" if a else "frame not admissible on this member")
    if kind == K.VS_TRACE_EVICT:
        return f"MAC table full: learning evicts the oldest entry of port {n.port(a)} " \
               f"({_vlan(b)})"
    if kind == K.VS_TRACE_LEARN:
        what = {-1: "new entry", -2: "a static entry elsewhere: not moved"}.get(
            c, "refreshed" if c == a else f"moved from port {n.port(c)}")
        return f"learning: {src} in {_vlan(b)} on port {n.port(a)} ({what})"
    if kind == K.VS_TRACE_NO_LEARN:
        return f"learning: none ({src} is a {'group' if a == 1 else 'zero'} address)"
    if kind == K.VS_TRACE_FDB_HIT:
        return f"FDB: {dst} in {_vlan(b)} is on port {n.port(a)}" + (" (static)" if c else "")
    if kind == K.VS_TRACE_FLOOD:
        why = "unknown destination" if a == 1 else "broadcast/multicast destination"
        return f"flood: {why}, to every other port carrying the VLAN"
    if kind == K.VS_TRACE_SKIP:
        why = {1: "does not carry the VLAN", 2: "has no interface",
               3: "is reserved for mirror output"}.get(b, str(b))
        return f"flood skips port {n.port(a)}: it {why}"
    if kind == K.VS_TRACE_MIRROR:
        by = {1: "its input port", 2: "an output port", 3: "select_all"}.get(b, str(b))
        where = f"to VLAN {c} (RSPAN)" if c else "to its output port"
        return f"mirror {n.mirrors.get(a, f'#{a}')}: selected by {by}, copy {where}"
    if kind == K.VS_TRACE_DROP:
        reason = DROP_REASONS[a] if 0 <= a < len(DROP_REASONS) else str(a)
        return f"drop ({reason}), counted on {n.iface(b)}"
    return f"step {kind} ({a}, {b}, {c})"


def trace(sw: "Switch", bridge: str, flow: dict[str, Any]) -> dict[str, Any]:
    if bridge not in sw.config.bridges:
        raise not_found(f"no bridge named {bridge}")
    rt = sw.bridges[bridge]
    frame, vlan, dl_type = build_frame(flow)
    port, iface_name, iface, note = _input(sw, rt, bridge, flow.get("in_port"))
    raw: RawTrace = sw.dp.trace(iface, frame)
    names = _Names(rt)
    src, dst = _mac(flow, "dl_src"), _mac(flow, "dl_dst")
    tag = "untagged" if vlan is None else f"802.1Q VID {vlan}"
    steps = [f"frame {src} > {dst}, {tag}, ethertype 0x{dl_type:04x}, {len(frame)} bytes, "
             f"into port {port}" + (f" by {iface_name}" if iface_name != port else "")]
    steps += [note] if note else []
    for kind, a, b, c in raw.steps:
        if kind == lib.VS_TRACE_OUTPUT:
            o = raw.outputs[c]
            how = f"tagged VLAN {o.vlan}" if o.tagged else "untagged"
            what = f" (mirror {names.mirrors.get(o.mirror, o.mirror)})" \
                if o.mirror is not None else ""
            via = f" by member {names.iface(o.iface)}" if names.iface(o.iface) != names.port(o.port) \
                else ""
            steps.append(f"output to port {names.port(o.port)}{via}, {how}{what}")
        else:
            steps.append(_step(kind, a, b, c, names, src, dst))
    if raw.steps_lost:
        steps.append(f"({raw.steps_lost} more steps not recorded)")
    # The shape, exactly: a mirror's copy is an output like any
    # other (its step says which mirror made it).
    outputs = [{"port": names.port(o.port), "interface": names.iface(o.iface),
                "vlan": o.vlan, "tagged": o.tagged} for o in raw.outputs]
    return {"steps": steps, "outputs": outputs, "drop": raw.drop}
