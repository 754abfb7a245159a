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
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import PortConfig
from .datapath import Datapath
from .errors import VswitchError, not_found

log = logging.getLogger(__name__)
BUCKETS = 256


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


@dataclass
class Member:
    name: str
    iface: int | None = None        # engine interface; None while the device is missing
    link_up: bool = False           # up with carrier, as last observed
    admin_up: bool = True           # bond/disable-member clears it
    enabled: bool = False
    timer: asyncio.TimerHandle | None = None

    @property
    def may_enable(self) -> bool:
        return self.iface is not None and self.link_up and self.admin_up


@dataclass
class Bond:
    name: str
    cfg: PortConfig
    port_id: int
    dp: Datapath
    loop: asyncio.AbstractEventLoop | None
    on_active_change: Callable[["Bond"], None]
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

    # --- settings ---------------------------------------------------------------
    def setting(self, key: str) -> Any:
        return self.cfg.bond_setting(key)

    @property
    def mode(self) -> str:
        return self.setting("bond_mode")

    # --- members ------------------------------------------------------------------
    def add_member(self, name: str, iface: int | None, link_up: bool) -> None:
        self.members[name] = Member(name, iface, link_up)
        if iface is not None:
            self.dp.set_enabled(iface, False)

    def remove_member(self, name: str) -> None:
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
        for m in self.members.values():
            if m.may_enable:
                self._set_enabled(m, True)
        if saved_active in self.members and self.members[saved_active].enabled:
            self.active = saved_active
        self.update(initial=True)
        self._arm_rebalance()
        self._arm_miimon()

    def stop(self) -> None:
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
        old_mode = self.mode
        old_primary = self.setting("bond_primary")
        self.cfg = cfg
        if self.setting("bond_primary") != old_primary:
            self._preempt = True
        if self.mode != old_mode:
            self.dp.set_bond_mode(self.port_id, self.mode)
            self.buckets = [None] * BUCKETS
        self.update()
        self._arm_rebalance()
        self._arm_miimon()

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
        if self.mode == "balance-slb":
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
        if name is not None and why != "start":
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
        if moved and self.active:
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
        if self.mode == "balance-slb" and interval and self.loop:
            self._rebalance_timer = self.loop.call_later(interval / 1000, self._rebalance_tick)

    def _rebalance_tick(self) -> None:
        self._rebalance_timer = None
        try:
            self.rebalance(self.dp.take_slb_loads(self.port_id))
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
            self.dp.send_learning_packets(self.port_id)
        return moves

    # --- reporting ----------------------------------------------------------------------------
    def show(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for key in ("bond_mode", "bond_updelay", "bond_downdelay", "bond_primary",
                    "bond_detect_mode", "bond_miimon_interval", "bond_rebalance_interval"):
            out[key] = self.setting(key)
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
            if self.mode == "balance-slb":
                entry["buckets"] = sum(1 for b in self.buckets if b == name)
            members.append(entry)
        out["members"] = members
        return out
