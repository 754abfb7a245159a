"""Bond state machines: which members may carry traffic, which one is
active, and where balance-slb hashes go.  Open vSwitch's behaviour
(Documentation/topics/bonding.rst), decided here and carried out by the
engine, which only reads these choices (csrc/bond.c).

A member *may be enabled* when its interface exists, is administratively up
with carrier, and has not been disabled with bond/disable-member.  It
becomes *enabled* bond_updelay ms after it may be (at once when no member is
enabled, or at start-up) and disabled bond_downdelay ms after it may not.

The active member is the current one while it stays enabled; bond_primary
takes over at start, when it becomes enabled and when it is made the
primary (and is the first choice after a failover); otherwise the first
enabled member in configuration order.  So a choice made with
bond/set-active-member lasts until a link event or a change of the
primary.  Whenever the active member, or an SLB bucket's member, changes, the
engine sends a RARP for every MAC learned on other ports, so upstream
switches re-learn at once.

With LACP (lacp=active|passive) the protocol is one more input to "may be
enabled": a member may carry traffic only while its LACP mux is collecting
and distributing (vswitch/lacp/machine.py), so delays, the active member,
bucket moves and failover all work as without it.  As in Open vSwitch: no
learning packets while LACP holds (the partner knows the members are one
link), frames accepted on every enabled member, and a bond whose LACP has
not negotiated carries nothing -- unless lacp-fallback-ab, which makes it
an active-backup bond of its defaulted members until LACP negotiates.
balance-tcp hashes each flow's L3/L4 addresses and ports (in the engine)
into the same 256 buckets balance-slb uses, rebalanced the same way.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import PortConfig
from .datapath import Datapath
from .errors import VswitchError, not_found
from .lacp.machine import Handle, Lacp, LacpSettings, Timers
from .lacp.pdu import mac_raw

log = logging.getLogger(__name__)
BUCKETS = 256
HASHED_MODES = ("balance-slb", "balance-tcp")
VNET_HDR_LEN = 10
CLAIM_LACP = 1      # datapath.CLAIM_LACP (kept here so tests can fake the engine)


IFF_UP = 0x1


def link_is_up(name: str) -> bool:
    """Up with carrier, read from sysfs (the miimon way: a poll)."""
    try:
        with open(f"/sys/class/net/{name}/flags") as f:
            if not int(f.read(), 16) & IFF_UP:
                return False
        with open(f"/sys/class/net/{name}/carrier") as f:
            return f.read().strip() == "1"
    except (OSError, ValueError):
        return False


class _NoHandle:
    def cancel(self) -> None:
        pass


class NoTimers:
    """Timers that never fire: a bond without an event loop (unit tests of
    the switch) keeps its LACP machines where they start."""

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Handle:
        return _NoHandle()

    def time(self) -> float:
        return 0.0


@dataclass
class Member:
    name: str
    iface: int | None = None        # engine interface; None while the device is missing
    link_up: bool = False           # up with carrier, as last observed
    admin_up: bool = True           # bond/disable-member clears it
    enabled: bool = False
    timer: asyncio.TimerHandle | None = None
    mac: str | None = None          # the device's address: LACPDUs come from it
    vnet: bool = False              # the engine interface speaks the virtio-net header
    lacp_ok: bool = True            # LACP lets it carry traffic (always, without LACP)

    @property
    def link_ok(self) -> bool:
        return self.iface is not None and self.link_up

    @property
    def may_enable(self) -> bool:
        return self.link_ok and self.admin_up and self.lacp_ok


@dataclass
class Bond:
    name: str
    cfg: PortConfig
    port_id: int
    dp: Datapath
    loop: asyncio.AbstractEventLoop | None
    on_active_change: Callable[["Bond"], None]
    # LACP system id when lacp-system-id is not set: one per bridge,
    # derived from the switch's system id (vswitch/bond_commands.py)
    system_mac: bytes = b"\x02\x00\x00\x00\x00\x01"
    members: dict[str, Member] = field(default_factory=dict)
    active: str | None = None
    buckets: list[str | None] = field(default_factory=lambda: [None] * BUCKETS)
    bucket_load: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    _rebalance_timer: asyncio.TimerHandle | None = None
    _miimon_timer: asyncio.TimerHandle | None = None
    # The primary may take the active role at the next choice: set when it
    # becomes enabled or becomes the primary.  Nothing else moves a working
    # active member (a manual bond/set-active-member choice included).
    _preempt: bool = False
    lacp: Lacp | None = None
    _engine_mode: str | None = None     # what the engine was told (mode, LACP)
    _engine_lag: bool = False
    _started: bool = False

    # --- settings ---------------------------------------------------------------
    def setting(self, key: str) -> Any:
        return self.cfg.bond_setting(key)

    @property
    def mode(self) -> str:
        return self.setting("bond_mode")

    # --- members ------------------------------------------------------------------
    def add_member(self, name: str, iface: int | None, link_up: bool,
                   mac: str | None = None, vnet: bool = False) -> None:
        m = Member(name, iface, link_up, mac=mac, vnet=vnet)
        self.members[name] = m
        if iface is not None:
            self.dp.set_enabled(iface, False)
        if self.lacp is not None:
            m.lacp_ok = False
            self._claim(m)
            self.lacp.add_port(name, self._port_number(m), self._lacp_mac(m), m.link_ok)

    def set_member_iface(self, name: str, iface: int | None, mac: str | None = None,
                         vnet: bool = False) -> None:
        """The member's device was attached again (it had been re-created)."""
        m = self._member(name)
        m.iface, m.vnet = iface, vnet
        if mac:
            m.mac = mac
        if iface is not None:
            self.dp.set_enabled(iface, m.enabled)
            self._claim(m)
        if self.lacp is not None:
            self.lacp.set_port(name, self._port_number(m), self._lacp_mac(m), m.link_ok)

    def remove_member(self, name: str) -> None:
        if self.lacp is not None:
            self.lacp.remove_port(name)     # while it can still send its goodbye
        m = self.members.pop(name)
        self._cancel(m)
        if self.active == name:
            self.active = None
        self.buckets = [None if b == name else b for b in self.buckets]
        self.update()

    def start(self, saved_active: str | None) -> None:
        """Initial state: enable every member that may be, at once (start-up
        is not a transition), then pick the active member, preferring the
        one that was active before a restart."""
        self._engine_mode = self.mode    # set by the switch with the port
        self._configure_lacp()
        self._sync_engine()
        self._started = True
        for m in self.members.values():
            if m.may_enable:
                self._set_enabled(m, True)
        if saved_active in self.members and self.members[saved_active].enabled:
            self.active = saved_active
        self.update(initial=True)
        self._arm_rebalance()
        self._arm_miimon()

    def stop(self) -> None:
        self._started = False
        if self.lacp is not None:
            self.lacp.stop()
        for m in self.members.values():
            self._cancel(m)
        for timer in (self._rebalance_timer, self._miimon_timer):
            if timer:
                timer.cancel()
        self._rebalance_timer = self._miimon_timer = None

    # --- events ---------------------------------------------------------------------
    def link_changed(self, name: str, up: bool) -> None:
        m = self.members.get(name)
        if m is None or m.link_up == up:
            return
        m.link_up = up
        log.info("bond %s: member %s link %s", self.name, name, "up" if up else "down")
        if self.lacp is not None:
            self.lacp.set_port(name, enabled=m.link_ok)
        self.update()

    def set_admin(self, name: str, up: bool) -> None:
        m = self._member(name)
        m.admin_up = up
        self.update()

    def set_active_member(self, name: str) -> None:
        m = self._member(name)
        if not m.enabled:
            raise VswitchError("EINVAL", f"cannot make disabled member {name} active")
        if self.active != name:
            self._change_active(name, "requested")

    def reconfigure(self, cfg: PortConfig) -> None:
        old_primary = self.setting("bond_primary")
        self.cfg = cfg
        if self.setting("bond_primary") != old_primary:
            self._preempt = True
        self._configure_lacp()
        self._sync_engine()
        self.update()
        self._arm_rebalance()
        self._arm_miimon()

    # --- LACP ---------------------------------------------------------------------------
    @property
    def effective_mode(self) -> str:
        """The mode the engine runs: the configured one, or active-backup
        while lacp-fallback-ab stands in for an LACP that did not negotiate."""
        if self.lacp is not None and self.lacp.fallback_active:
            return "active-backup"
        return self.mode

    @property
    def lacp_status(self) -> str:
        return self.lacp.status if self.lacp is not None else "off"

    def _may_send_learning(self) -> bool:
        """Open vSwitch sends learning packets only where the partner does
        not know the members are one link: no LACP, or its fallback."""
        return self.lacp is None or self.lacp.fallback_active

    def _lacp_settings(self) -> LacpSettings | None:
        mode = self.setting("lacp")
        if mode == "off":
            return None
        sysid = self.setting("lacp_system_id")
        prio = self.setting("lacp_system_priority")
        if prio is None:
            # Open vSwitch prefers bondable links: 65534 with two or more
            # members.  Counted when LACP is configured, not on every member
            # change: a new system priority is a new identity, and the partner
            # would take the whole aggregate down to learn it.
            prio = 65534 if len(self.cfg.interfaces) > 1 else 65535
        return LacpSettings(active=mode == "active", fast=self.setting("lacp_time") == "fast",
                            fallback_ab=bool(self.setting("lacp_fallback_ab")),
                            system_id=mac_raw(sysid) if sysid else self.system_mac,
                            system_priority=prio,
                            # one key per bond, the same on every member
                            key=self.port_id + 1)

    def _port_number(self, m: Member) -> int:
        # Unique in the switch and stable while the device stays, like
        # Open vSwitch's OpenFlow port number.
        return m.iface + 1 if m.iface is not None else 0

    def _lacp_mac(self, m: Member) -> bytes:
        return mac_raw(m.mac) if m.mac else self.system_mac

    def _claim(self, m: Member) -> None:
        if m.iface is not None:
            try:
                self.dp.set_claim(m.iface, CLAIM_LACP if self.lacp is not None else 0)
            except VswitchError as e:
                log.warning("bond %s: member %s: %s", self.name, m.name, e.message)

    def _configure_lacp(self) -> None:
        settings = self._lacp_settings()
        if settings is None:
            if self.lacp is not None:
                self.lacp.stop()
                self.lacp = None
                log.info("bond %s: LACP off", self.name)
                for m in self.members.values():
                    m.lacp_ok = True
                    self._claim(m)
            return
        if self.lacp is not None:
            self.lacp.configure(settings)
            return
        timers: Timers = self.loop if self.loop is not None else NoTimers()
        self.lacp = Lacp(self.name, settings, timers, self._lacp_send, self._lacp_changed)
        for m in self.members.values():
            m.lacp_ok = False
            self._claim(m)
        for m in self.members.values():
            self.lacp.add_port(m.name, self._port_number(m), self._lacp_mac(m), m.link_ok)
        self._apply_lacp()

    def lacp_receive(self, iface: int, frame: bytes) -> bool:
        """A LACPDU from the engine; False if it is not one of our members'."""
        for m in self.members.values():
            if m.iface == iface:
                if self.lacp is not None:
                    self.lacp.receive(m.name, frame)
                return True
        return False

    def _lacp_send(self, name: str, frame: bytes) -> bool:
        m = self.members.get(name)
        if m is None or m.iface is None:
            return False
        try:
            self.dp.send(m.iface, (bytes(VNET_HDR_LEN) if m.vnet else b"") + frame)
        except VswitchError as e:
            log.debug("bond %s: member %s: LACPDU not sent: %s", self.name, name, e.message)
            return False
        return True

    def _lacp_changed(self) -> None:
        """The LACP machines changed what a member may do, or the status."""
        self._apply_lacp()
        if self._started:
            self._sync_engine()
            self.update()

    def _apply_lacp(self) -> None:
        for m in self.members.values():
            m.lacp_ok = self.lacp is None or self.lacp.may_enable(m.name)

    def _sync_engine(self) -> None:
        """Tell the engine the effective mode and whether LACP holds."""
        mode = self.effective_mode
        if mode != self._engine_mode:
            self.dp.set_bond_mode(self.port_id, mode)
            self._engine_mode = mode
            self.buckets = [None] * BUCKETS
        lag = self.lacp is not None and self.lacp.negotiated
        if lag != self._engine_lag:
            self.dp.set_lag(self.port_id, lag)
            self._engine_lag = lag

    @property
    def uses_netlink(self) -> bool:
        """Carrier mode follows netlink link events; miimon polls."""
        return self.setting("bond_detect_mode") == "carrier"

    def _arm_miimon(self) -> None:
        if self._miimon_timer:
            self._miimon_timer.cancel()
            self._miimon_timer = None
        if not self.uses_netlink and self.loop:
            interval = self.setting("bond_miimon_interval") / 1000
            self._miimon_timer = self.loop.call_later(interval, self._miimon_tick)

    def _miimon_tick(self) -> None:
        self._miimon_timer = None
        for name in list(self.members):
            self.link_changed(name, link_is_up(name))
        self._arm_miimon()

    # --- the state machine -------------------------------------------------------------
    def _member(self, name: str) -> Member:
        if name not in self.members:
            raise not_found(f"bond {self.name} has no member {name}")
        return self.members[name]

    def _cancel(self, m: Member) -> None:
        if m.timer:
            m.timer.cancel()
            m.timer = None

    def _set_enabled(self, m: Member, enabled: bool) -> None:
        if enabled and not m.enabled and m.name == self.setting("bond_primary"):
            self._preempt = True
        m.enabled = enabled
        if m.iface is not None:
            self.dp.set_enabled(m.iface, enabled)

    def update(self, initial: bool = False) -> None:
        """Bring every member's enabled state in line with what it may be,
        honouring the delays, then re-choose the active member and buckets."""
        any_enabled = any(m.enabled for m in self.members.values())
        for m in self.members.values():
            if m.may_enable == m.enabled:
                self._cancel(m)
                continue
            if m.timer:
                continue     # already on its way
            if m.may_enable:
                delay = self.setting("bond_updelay") if any_enabled else 0
            else:
                delay = self.setting("bond_downdelay") if m.admin_up else 0
            if delay and self.loop:
                m.timer = self.loop.call_later(delay / 1000, self._timer_fired, m.name)
            else:
                self._set_enabled(m, m.may_enable)
                any_enabled = any_enabled or m.enabled
        self._choose_active(initial)
        if self.effective_mode in HASHED_MODES:
            self._reassign_buckets()

    def _timer_fired(self, name: str) -> None:
        m = self.members.get(name)
        if m is None:
            return
        m.timer = None
        if m.may_enable != m.enabled:
            self._set_enabled(m, m.may_enable)
            log.info("bond %s: member %s %s", self.name, name,
                     "enabled" if m.enabled else "disabled")
        self.update()

    def _choose_active(self, initial: bool) -> None:
        enabled = [n for n in self.cfg.interfaces if n in self.members
                   and self.members[n].enabled]
        primary = self.setting("bond_primary")
        preempt = (initial or self._preempt) and primary in enabled
        self._preempt = False
        if preempt:
            choice: str | None = primary
        elif self.active in enabled:
            choice = self.active
        elif primary in enabled:
            choice = primary
        else:
            choice = enabled[0] if enabled else None
        if choice != self.active or initial:
            self._change_active(choice, "start" if initial else "failover")

    def _change_active(self, name: str | None, why: str) -> None:
        old, self.active = self.active, name
        iface = self.members[name].iface if name else None
        self.dp.set_active(self.port_id, iface)
        if old != name:
            log.info("bond %s: active member %s -> %s (%s)", self.name, old or "none",
                     name or "none", why)
        if name is not None and why != "start" and self._may_send_learning():
            sent = self.dp.send_learning_packets(self.port_id)
            log.debug("bond %s: sent %d learning packets", self.name, sent)
        self.on_active_change(self)

    # --- balance-slb ----------------------------------------------------------------------
    def _load_of(self) -> dict[str, int]:
        loads = {n: 0 for n, m in self.members.items() if m.enabled}
        for b, owner in enumerate(self.buckets):
            if owner in loads:
                loads[owner] += self.bucket_load[b]
        return loads

    def _reassign_buckets(self) -> None:
        """Give every bucket an enabled member and even out how many each
        member holds, moving as few buckets as possible: buckets of disabled
        members first, then the surplus of the fullest members.  (Load is
        balanced later, by rebalance(), from measured traffic.)"""
        enabled = [n for n in self.cfg.interfaces if n in self.members
                   and self.members[n].enabled]
        if not enabled:
            return
        held: dict[str, list[int]] = {n: [] for n in enabled}
        orphans: list[int] = []
        for b, owner in enumerate(self.buckets):
            (held[owner] if owner in held else orphans).append(b)
        quota = {n: BUCKETS // len(enabled) + (1 if i < BUCKETS % len(enabled) else 0)
                 for i, n in enumerate(enabled)}
        for n in enabled:                      # surplus beyond the quota is up for grabs
            while len(held[n]) > quota[n]:
                orphans.append(held[n].pop())
        moved = False
        for b in sorted(orphans):
            target = min(enabled, key=lambda n: (len(held[n]) - quota[n], enabled.index(n)))
            held[target].append(b)
            if self.buckets[b] != target:
                self._move_bucket(b, target)
                moved = True
        if moved and self.active and self._may_send_learning():
            self.dp.send_learning_packets(self.port_id)

    def _move_bucket(self, b: int, member: str) -> None:
        self.buckets[b] = member
        iface = self.members[member].iface
        self.dp.set_slb_bucket(self.port_id, b, iface)

    def _arm_rebalance(self) -> None:
        if self._rebalance_timer:
            self._rebalance_timer.cancel()
            self._rebalance_timer = None
        interval = self.setting("bond_rebalance_interval")
        if self.mode in HASHED_MODES and interval and self.loop:
            self._rebalance_timer = self.loop.call_later(interval / 1000, self._rebalance_tick)

    def _rebalance_tick(self) -> None:
        self._rebalance_timer = None
        try:
            loads = self.dp.take_slb_loads(self.port_id)
            if self.effective_mode in HASHED_MODES:
                self.rebalance(loads)
        except VswitchError as e:
            log.warning("bond %s: rebalance failed: %s", self.name, e.message)
        self._arm_rebalance()

    def rebalance(self, loads: list[int]) -> int:
        """Move buckets from the most to the least loaded member while that
        narrows the gap (at most 32 moves a round).  Returns the moves."""
        self.bucket_load = loads
        moves = 0
        while moves < 32:
            member_load = self._load_of()
            if len(member_load) < 2:
                break
            hi = max(member_load, key=lambda n: member_load[n])
            lo = min(member_load, key=lambda n: member_load[n])
            gap = member_load[hi] - member_load[lo]
            if gap <= 0 or member_load[lo] * 1.1 >= member_load[hi]:
                break
            # the bucket whose move leaves the two closest together
            best, best_gap = None, gap
            for b, owner in enumerate(self.buckets):
                if owner == hi and 0 < loads[b]:
                    new_gap = abs(gap - 2 * loads[b])
                    if new_gap < best_gap:
                        best, best_gap = b, new_gap
            if best is None:
                break
            self._move_bucket(best, lo)
            moves += 1
        if moves:
            log.info("bond %s: rebalanced, %d buckets moved", self.name, moves)
            if self._may_send_learning():
                self.dp.send_learning_packets(self.port_id)
        return moves

    # --- reporting ----------------------------------------------------------------------------
    def show(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for key in ("bond_mode", "bond_updelay", "bond_downdelay", "bond_primary",
                    "bond_detect_mode", "bond_miimon_interval", "bond_rebalance_interval",
                    "lacp", "lacp_time", "lacp_fallback_ab"):
            out[key] = self.setting(key)
        out["lacp_status"] = self.lacp_status
        # what the engine runs now: differs from bond_mode under lacp-fallback-ab
        out["effective_mode"] = self.effective_mode
        out["active_member"] = self.active
        members = []
        for name in self.cfg.interfaces:
            m = self.members.get(name)
            if m is None:
                continue
            entry = {"name": name, "enabled": m.enabled, "active": name == self.active,
                     "carrier": m.link_up, "present": m.iface is not None,
                     "admin": "enabled" if m.admin_up else "disabled"}
            if m.timer:
                entry["pending"] = "enable" if m.may_enable else "disable"
            if self.effective_mode in HASHED_MODES:
                # Open vSwitch's "hash N: X kB load", from the last rebalancing
                # interval's measurement
                mine = [b for b, owner in enumerate(self.buckets) if owner == name]
                entry["buckets"] = len(mine)
                entry["hashes"] = [{"hash": b, "load_bytes": self.bucket_load[b]}
                                   for b in mine if self.bucket_load[b]]
            members.append(entry)
        out["members"] = members
        return out
