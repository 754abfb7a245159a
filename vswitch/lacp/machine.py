"""The LACP state machines of one bond (IEEE 802.1AX-2008 clause 5.4),
driven by events and timers on the daemon's event loop -- never polled.

Per member ("port" in the standard):

- receive machine: CURRENT while the partner's LACPDUs keep coming (a
  current_while timer of 3 s with fast timeouts, 90 s with slow ones);
  EXPIRED when it runs out (the partner is no longer in sync, and asked for
  fast PDUs; the member leaves the aggregate at once, see _select);
  DEFAULTED after another 3 s (partner information forgotten);
  "disabled" while the link is down (PORT_DISABLED).
- periodic transmit: a LACPDU every 1 s if the partner asked for short
  timeouts, every 30 s otherwise, and none at all when both ends are
  passive (so passive-passive never negotiates, as the standard says).
- transmit: a LACPDU whenever something the partner must know changed
  (need-to-transmit), at most 3 in any second.
- mux (coupled control): DETACHED -> WAITING (2 s, so links that come up
  together join together; none when the aggregate is already up) ->
  ATTACHED (we say "in sync") -> COLLECTING_DISTRIBUTING once the partner
  says it is in sync too.  A member carries traffic only in the last state.

And for the bond, the selection logic: members whose partners agree (same
system priority, system id and key, and aggregatable) can form the one
aggregate a bond is; the bond keeps the aggregate it has while any of its
members can stay, and otherwise takes the largest group.  Members of other
groups (another partner, a miswired link) are left out: UNSELECTED, never
in sync, never distributing.  Open vSwitch's lib/lacp.c makes the same
choices in its own way (its "lead" member); its status words are used:
"negotiated" while an aggregate is formed, "configured" while LACP is
configured but nothing agreed, and "defaulted" when no member has heard a
partner at all (the far end does not speak LACP).  With lacp-fallback-ab,
a bond that has not negotiated lets its defaulted members carry traffic as
an active-backup bond, as Open vSwitch does.

Time comes from an injectable `Timers` (the asyncio loop in the daemon, a
fake clock in tests); outputs are a `send(member, frame)` callback and an
`on_change()` callback whenever the bond status or a member's permission
to carry traffic changed.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

from .pdu import (STATE_ACTIVITY, STATE_AGGREGATION, STATE_COLLECTING, STATE_DEFAULTED,
                  STATE_DISTRIBUTING, STATE_EXPIRED, STATE_SYNCHRONIZATION, STATE_TIMEOUT,
                  Info, Lacpdu, PduError, decode, encode, mac_text, marker_response,
                  state_words)

log = logging.getLogger(__name__)

FAST_PERIODIC = 1.0        # seconds between periodic LACPDUs, partner timeout short
SLOW_PERIODIC = 30.0       # ... partner timeout long
SHORT_TIMEOUT = 3.0        # 3 x FAST_PERIODIC
LONG_TIMEOUT = 90.0        # 3 x SLOW_PERIODIC
AGGREGATE_WAIT = 2.0       # WAITING before ATTACHED
TX_LIMIT = 3               # LACPDUs per FAST_PERIODIC at most

RX_CURRENT, RX_EXPIRED, RX_DEFAULTED, RX_DISABLED = "current", "expired", "defaulted", "disabled"
MUX_DETACHED, MUX_WAITING, MUX_ATTACHED, MUX_COLL_DIST = (
    "detached", "waiting", "attached", "collecting_distributing")
STATUS_NEGOTIATED, STATUS_CONFIGURED, STATUS_DEFAULTED = "negotiated", "configured", "defaulted"

NO_SYSTEM = bytes(6)
DEFAULT_PARTNER = Info()       # the partner's "administrative" values: nobody


class Handle(Protocol):
    def cancel(self) -> None: ...


class Timers(Protocol):
    """What the machines need of a clock: asyncio's event loop has both."""

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Handle: ...

    def time(self) -> float: ...


@dataclass(frozen=True)
class LacpSettings:
    active: bool               # lacp=active (else passive)
    fast: bool                 # lacp-time=fast: ask the partner for a PDU every second
    fallback_ab: bool          # lacp-fallback-ab
    system_id: bytes           # 6 octets
    system_priority: int       # 1..65535
    key: int                   # operational key, the same for every member


@dataclass
class LacpPort:
    name: str
    number: int                 # port id (1..65535)
    mac: bytes                  # source of our LACPDUs
    priority: int = 65535       # port priority (Open vSwitch's default)
    enabled: bool = False       # link up: the standard's port_enabled
    rx: str = RX_DISABLED
    mux: str = MUX_DETACHED
    selected: bool = False
    must_detach: bool = False   # partner changed: through DETACHED before selection
    partner: Info = DEFAULT_PARTNER
    defaulted: bool = True      # actor state bits the receive machine owns
    expired: bool = False
    fallback: bool = False      # carrying traffic by lacp-fallback-ab
    wait_expired: bool = False
    ntt: bool = False
    periodic: float | None = None
    pdus_tx: int = 0
    pdus_rx: int = 0
    pdus_bad: int = 0
    markers_rx: int = 0
    bad_reasons: dict[str, int] = field(default_factory=dict)
    tx_times: deque[float] = field(default_factory=lambda: deque(maxlen=TX_LIMIT))
    current_while: Handle | None = None
    wait_while: Handle | None = None
    periodic_timer: Handle | None = None
    tx_hold: Handle | None = None

    @property
    def partner_sync(self) -> bool:
        return self.partner.has(STATE_SYNCHRONIZATION)

    @property
    def carries_traffic(self) -> bool:
        return self.mux == MUX_COLL_DIST or self.fallback

    def cancel_timers(self) -> None:
        for name in ("current_while", "wait_while", "periodic_timer", "tx_hold"):
            h = getattr(self, name)
            if h is not None:
                h.cancel()
                setattr(self, name, None)


GroupKey = tuple[Any, ...]


class Lacp:
    """LACP for one bond: its members' machines and the selection logic."""

    def __init__(self, name: str, settings: LacpSettings, timers: Timers,
                 send: Callable[[str, bytes], bool], on_change: Callable[[], None]) -> None:
        self.name = name
        self.settings = settings
        self.timers = timers
        self.send = send
        self.on_change = on_change
        self.ports: dict[str, LacpPort] = {}
        self.aggregate: GroupKey | None = None
        self._running = False
        self._again = False
        self._last: tuple[Any, ...] | None = None
        self._stopped = False
        self._looped: set[str] = set()

    # --- configuration and events ----------------------------------------------
    def add_port(self, name: str, number: int, mac: bytes, enabled: bool) -> None:
        p = LacpPort(name, number, mac)
        self.ports[name] = p
        p.ntt = True                  # INITIALIZE ends in DETACHED, which sets NTT
        if enabled:
            self._enable(p)
        self._run()

    def remove_port(self, name: str) -> None:
        """A member leaves the bond: it says goodbye on its link first."""
        p = self.ports.get(name)
        if p is None:
            return
        self._farewell(p)
        del self.ports[name]
        p.cancel_timers()
        self._run()

    def set_port(self, name: str, number: int | None = None, mac: bytes | None = None,
                 enabled: bool | None = None) -> None:
        """A member's port id, address or link state changed."""
        p = self.ports.get(name)
        if p is None:
            return
        if number is not None and number != p.number:
            p.number = number
            p.ntt = True
            p.must_detach = True      # our identity on that link changed:
            p.partner = _without(p.partner, STATE_SYNCHRONIZATION)   # re-learnt
        if mac is not None:
            p.mac = mac
        if enabled is not None and enabled != p.enabled:
            if enabled:
                self._enable(p)
            else:
                self._disable(p)
        self._run()

    def configure(self, settings: LacpSettings) -> None:
        old, self.settings = self.settings, settings
        if old == settings:
            return
        identity = (old.system_id, old.system_priority, old.key)
        for p in self.ports.values():
            p.ntt = True
            if identity != (settings.system_id, settings.system_priority, settings.key):
                # the partner must learn who we are again before it is in sync
                p.must_detach = True
                p.partner = _without(p.partner, STATE_SYNCHRONIZATION)
            if p.rx == RX_CURRENT and old.fast != settings.fast:
                self._start_current_while(p)
        self._run()

    def stop(self) -> None:
        """Stop the machines.  Members that were in the aggregate say
        goodbye first: one LACPDU out of sync, so the partner stops sending
        into them at once rather than after its timeout (90 s with slow
        timers) -- when vswitchd stops, the bond is deleted or LACP is
        turned off."""
        if self._stopped:
            return
        for p in self.ports.values():
            self._farewell(p)
        self._stopped = True
        for p in self.ports.values():
            p.cancel_timers()

    def _farewell(self, p: LacpPort) -> None:
        """One LACPDU saying this member is out of the aggregate, if it was in."""
        if self._stopped or not p.enabled or p.periodic is None:
            return
        if p.mux != MUX_DETACHED or p.fallback:
            p.mux, p.fallback = MUX_DETACHED, False
            if self.send(p.name, encode(Lacpdu(self.actor_info(p), p.partner), p.mac)):
                p.pdus_tx += 1

    def receive(self, name: str, frame: bytes) -> None:
        """A frame claimed as LACP on member `name` (from the upcall channel)."""
        p = self.ports.get(name)
        if p is None or self._stopped:
            return
        try:
            pdu = decode(frame)
        except PduError as e:
            if e.reason == "marker":
                self._answer_marker(p, frame)
                return
            p.pdus_bad += 1
            p.bad_reasons[e.reason] = p.bad_reasons.get(e.reason, 0) + 1
            if p.pdus_bad <= 10 or p.pdus_bad % 1000 == 0:
                log.warning("bond %s: member %s: bad LACPDU ignored (%s); %d so far",
                            self.name, name, e, p.pdus_bad)
            return
        p.pdus_rx += 1
        if not p.enabled:
            return                    # PORT_DISABLED: PDUs are not processed
        self._record_pdu(p, pdu)
        self._run()

    # --- what the bond reads ----------------------------------------------------------
    @property
    def negotiated(self) -> bool:
        return self.aggregate is not None

    @property
    def fallback_active(self) -> bool:
        return self.settings.fallback_ab and not self.negotiated

    @property
    def status(self) -> str:
        if self.negotiated:
            return STATUS_NEGOTIATED
        enabled = [p for p in self.ports.values() if p.enabled]
        if enabled and all(p.rx == RX_DEFAULTED for p in enabled):
            return STATUS_DEFAULTED
        return STATUS_CONFIGURED

    def may_enable(self, name: str) -> bool:
        p = self.ports.get(name)
        return p is not None and p.carries_traffic

    def actor_info(self, p: LacpPort) -> Info:
        s = self.settings
        state = STATE_AGGREGATION
        if s.active:
            state |= STATE_ACTIVITY
        if s.fast:
            state |= STATE_TIMEOUT
        if p.mux in (MUX_ATTACHED, MUX_COLL_DIST):
            state |= STATE_SYNCHRONIZATION
        if p.carries_traffic:
            state |= STATE_COLLECTING | STATE_DISTRIBUTING
        if p.defaulted:
            state |= STATE_DEFAULTED
        if p.expired:
            state |= STATE_EXPIRED
        return Info(s.system_priority, s.system_id, s.key, p.priority, p.number, state)

    def show(self, order: list[str] | None = None) -> dict[str, Any]:
        """`lacp/show --json`: the shape issue 13 gives, nothing more."""
        names = [n for n in (order or []) if n in self.ports]
        names += [n for n in self.ports if n not in names]
        s = self.settings
        partner = self._bond_partner()
        return {
            "bond": self.name,
            "status": self.status,
            "actor": {"system_id": mac_text(s.system_id), "system_priority": s.system_priority,
                      "key": s.key},
            "partner": {"system_id": mac_text(partner.system_id),
                        "system_priority": partner.system_priority, "key": partner.key},
            "members": [{
                "name": n,
                "port_id": self.ports[n].number,
                "distributing": self.ports[n].carries_traffic,
                "actor_state": state_words(self.actor_info(self.ports[n]).state),
                "partner_state": state_words(self.ports[n].partner.state),
                "pdus_tx": self.ports[n].pdus_tx,
                "pdus_rx": self.ports[n].pdus_rx,
                "pdus_bad": self.ports[n].pdus_bad,
            } for n in names],
        }

    def _bond_partner(self) -> Info:
        """The aggregate's partner; before one is formed, whoever was heard."""
        chosen = [p for p in self.ports.values() if p.selected]
        heard = [p for p in self.ports.values() if p.partner.system_id != NO_SYSTEM]
        for p in chosen + heard:
            return p.partner
        return DEFAULT_PARTNER

    # --- receive machine ----------------------------------------------------------------
    def _enable(self, p: LacpPort) -> None:
        """PORT_DISABLED -> EXPIRED (802.1AX: a port that comes up first
        doubts what it knew of its partner)."""
        p.enabled = True
        p.ntt = True
        self._expire(p)

    def _disable(self, p: LacpPort) -> None:
        p.enabled = False
        p.rx = RX_DISABLED
        p.expired = False
        p.partner = _without(p.partner, STATE_SYNCHRONIZATION)
        p.fallback = False
        if p.current_while is not None:
            p.current_while.cancel()
            p.current_while = None

    def _expire(self, p: LacpPort) -> None:
        p.rx = RX_EXPIRED
        p.expired = True
        p.partner = replace(p.partner, state=(p.partner.state & ~STATE_SYNCHRONIZATION)
                            | STATE_TIMEOUT)
        self._start_current_while(p, SHORT_TIMEOUT)

    def _default(self, p: LacpPort) -> None:
        p.rx = RX_DEFAULTED
        p.expired = False
        p.defaulted = True
        if not p.partner.same_link(DEFAULT_PARTNER):
            p.must_detach = True          # update_Default_Selected
        p.partner = DEFAULT_PARTNER

    def _start_current_while(self, p: LacpPort, seconds: float | None = None) -> None:
        if p.current_while is not None:
            p.current_while.cancel()
        if seconds is None:
            seconds = SHORT_TIMEOUT if self.settings.fast else LONG_TIMEOUT
        p.current_while = self.timers.call_later(seconds, self._current_while_expired, p.name)

    def _current_while_expired(self, name: str) -> None:
        p = self.ports.get(name)
        if p is None or self._stopped:
            return
        p.current_while = None
        if p.rx == RX_CURRENT:
            log.info("bond %s: member %s: partner's LACPDUs stopped; expired", self.name, name)
            self._expire(p)
        elif p.rx == RX_EXPIRED:
            log.info("bond %s: member %s: no partner; defaulted", self.name, name)
            self._default(p)
        self._run()

    def _record_pdu(self, p: LacpPort, pdu: Lacpdu) -> None:
        actor = self.actor_info(p)
        their_view = pdu.partner
        # update_Selected: another partner (or another port of it) on this link
        if not pdu.actor.same_link(p.partner) or \
                (pdu.actor.state ^ p.partner.state) & STATE_AGGREGATION:
            p.must_detach = p.must_detach or p.mux != MUX_DETACHED
        # update_NTT: the partner's picture of us is out of date
        watched = (STATE_ACTIVITY | STATE_TIMEOUT | STATE_SYNCHRONIZATION
                   | STATE_AGGREGATION)
        if not their_view.same_link(actor) or (their_view.state ^ actor.state) & watched:
            p.ntt = True
        # recordPDU: the partner is in sync only if it is and it agrees on who we are
        matches = their_view.same_link(actor) and \
            not (their_view.state ^ actor.state) & STATE_AGGREGATION
        in_sync = pdu.actor.has(STATE_SYNCHRONIZATION) and \
            (matches or not pdu.actor.has(STATE_AGGREGATION))
        state = pdu.actor.state & ~STATE_SYNCHRONIZATION
        p.partner = replace(pdu.actor, state=state | (STATE_SYNCHRONIZATION if in_sync else 0))
        if p.rx != RX_CURRENT:
            log.info("bond %s: member %s: partner %s port %d (key %d) heard", self.name,
                     p.name, mac_text(pdu.actor.system_id), pdu.actor.port, pdu.actor.key)
        p.rx = RX_CURRENT
        p.defaulted = False
        p.expired = False
        self._start_current_while(p)

    def _answer_marker(self, p: LacpPort, frame: bytes) -> None:
        """The Marker Responder 802.1AX requires of every aggregation port."""
        p.markers_rx += 1
        reply = marker_response(frame, p.mac)
        if reply is not None and p.enabled:
            self.send(p.name, reply)

    # --- selection, mux, periodic and transmit ------------------------------------------
    def _run(self) -> None:
        """Run the machines to a steady state after any event, then send
        what must be sent and tell the bond if its inputs changed."""
        if self._stopped:
            return
        if self._running:
            self._again = True
            return
        self._running = True
        try:
            for _ in range(16):             # settles in 2-3 rounds; bounded anyway
                self._again = False
                changed = self._select()
                for p in self.ports.values():
                    changed |= self._mux(p)
                changed |= self._fallback()
                if not changed and not self._again:
                    break
            for p in self.ports.values():
                self._periodic(p)
            for p in self.ports.values():
                self._transmit(p)
        finally:
            self._running = False
        out = (self.status, self.fallback_active,
               tuple((n, p.carries_traffic) for n, p in self.ports.items()))
        if out != self._last:
            if self._last is None or out[0] != self._last[0]:
                log.info("bond %s: LACP %s", self.name, out[0])
            self._last = out
            self.on_change()

    def _group(self, p: LacpPort) -> GroupKey:
        q = p.partner
        key: GroupKey = (q.system_priority, q.system_id, q.key)
        if not q.has(STATE_AGGREGATION):
            key += (p.name,)                # an individual link aggregates alone
        return key

    def _select(self) -> bool:
        groups: dict[GroupKey, list[LacpPort]] = {}
        for p in self.ports.values():
            if p.must_detach and p.mux == MUX_DETACHED:
                p.must_detach = False
            # Only a member hearing its partner now is selected.  802.1AX
            # keeps an EXPIRED member attached (still "in sync" in its PDUs)
            # until it defaults; Open vSwitch, as partner, looks only at that
            # bit, so it would keep sending into a link we no longer read for
            # another 3 s.  Unselecting at once takes the link out of the
            # aggregate on both ends within the timeout.
            if (not p.enabled or p.must_detach or p.rx != RX_CURRENT
                    or p.partner.system_id == NO_SYSTEM):
                continue
            if p.partner.system_id == self.settings.system_id:
                if p.name not in self._looped:
                    self._looped.add(p.name)
                    log.warning("bond %s: member %s is connected to its own system "
                                "(loopback); left out", self.name, p.name)
                continue
            self._looped.discard(p.name)
            groups.setdefault(self._group(p), []).append(p)
        if self.aggregate in groups:
            chosen: GroupKey | None = self.aggregate
        elif groups:
            chosen = min(groups, key=lambda k: (
                -len(groups[k]), -sum(p.rx == RX_CURRENT for p in groups[k]), k[:3]))
        else:
            chosen = None
        if chosen != self.aggregate:
            if chosen is not None:
                log.info("bond %s: aggregating with partner %s key %d", self.name,
                         mac_text(chosen[1]), chosen[2])
            self.aggregate = chosen
        changed = False
        members = groups.get(chosen, []) if chosen is not None else []
        for p in self.ports.values():
            sel = p in members
            if sel != p.selected:
                p.selected = sel
                changed = True
        return changed

    def _mux(self, p: LacpPort) -> bool:
        start = p.mux
        while True:
            before = p.mux
            if p.mux == MUX_DETACHED:
                if p.selected:
                    p.mux = MUX_WAITING
                    p.wait_expired = False
                    p.wait_while = self.timers.call_later(AGGREGATE_WAIT,
                                                          self._wait_while_expired, p.name)
            elif p.mux == MUX_WAITING:
                if not p.selected:
                    self._detach(p)
                elif (p.wait_expired and self._ready()) or self._formed():
                    p.mux = MUX_ATTACHED       # Attach_Mux_To_Aggregator; actor in sync
                    p.ntt = True
            elif p.mux == MUX_ATTACHED:
                if not p.selected:
                    self._detach(p)
                elif p.partner_sync:
                    p.mux = MUX_COLL_DIST
                    p.ntt = True
                    log.info("bond %s: member %s collecting and distributing",
                             self.name, p.name)
            elif p.mux == MUX_COLL_DIST:
                if not p.selected or not p.partner_sync:
                    p.mux = MUX_ATTACHED
                    p.ntt = True
                    log.info("bond %s: member %s stops distributing", self.name, p.name)
            if p.mux == before:
                return p.mux != start

    def _detach(self, p: LacpPort) -> None:
        p.mux = MUX_DETACHED
        p.ntt = True
        if p.wait_while is not None:
            p.wait_while.cancel()
            p.wait_while = None

    def _formed(self) -> bool:
        """An aggregate already has attached members.  The aggregate wait
        (2 s) lets links that come up together attach together; a link
        joining an aggregate that is already up has nobody to wait for, so
        it attaches at once (a returning link is back in tens of
        milliseconds, as with Open vSwitch, which has no wait at all)."""
        return any(p.mux in (MUX_ATTACHED, MUX_COLL_DIST) for p in self.ports.values())

    def _ready(self) -> bool:
        """Every member selected for the aggregate has waited its turn."""
        return all(p.wait_expired for p in self.ports.values()
                   if p.selected and p.mux == MUX_WAITING)

    def _wait_while_expired(self, name: str) -> None:
        p = self.ports.get(name)
        if p is None or self._stopped:
            return
        p.wait_while = None
        p.wait_expired = True
        self._run()

    def _fallback(self) -> bool:
        on = self.fallback_active
        changed = False
        for p in self.ports.values():
            fb = on and p.enabled and p.rx == RX_DEFAULTED
            if fb != p.fallback:
                p.fallback = fb
                p.ntt = True
                changed = True
        return changed

    def _periodic(self, p: LacpPort) -> None:
        interval: float | None
        if not p.enabled or not (self.settings.active or p.partner.has(STATE_ACTIVITY)):
            interval = None                 # NO_PERIODIC
        else:
            # The partner's timeout says how often it wants to hear from us.
            # Before any partner is heard (defaulted), our own lacp-time
            # stands in for it: a fast bond keeps knocking every second, so
            # a partner that starts late is met within a second, not 30.
            fast = p.partner.has(STATE_TIMEOUT) or (p.rx == RX_DEFAULTED
                                                    and self.settings.fast)
            interval = FAST_PERIODIC if fast else SLOW_PERIODIC
        if interval == p.periodic:
            return
        if p.periodic_timer is not None:
            p.periodic_timer.cancel()
            p.periodic_timer = None
        if interval is not None and p.periodic is not None and interval < p.periodic:
            p.ntt = True                    # slow -> fast: PERIODIC_TX at once
        p.periodic = interval
        if interval is not None:
            p.periodic_timer = self.timers.call_later(interval, self._periodic_expired, p.name)

    def _periodic_expired(self, name: str) -> None:
        p = self.ports.get(name)
        if p is None or self._stopped:
            return
        p.periodic_timer = None
        p.ntt = True
        if p.periodic is not None:
            p.periodic_timer = self.timers.call_later(p.periodic, self._periodic_expired, name)
        self._run()

    def _transmit(self, p: LacpPort) -> None:
        if not p.ntt or not p.enabled or p.periodic is None or p.tx_hold is not None:
            return
        now = self.timers.time()
        if len(p.tx_times) == TX_LIMIT and now - p.tx_times[0] < FAST_PERIODIC:
            p.tx_hold = self.timers.call_later(p.tx_times[0] + FAST_PERIODIC - now,
                                               self._tx_allowed, p.name)
            return
        p.ntt = False
        frame = encode(Lacpdu(self.actor_info(p), p.partner), p.mac)
        if self.send(p.name, frame):
            p.pdus_tx += 1
            p.tx_times.append(now)

    def _tx_allowed(self, name: str) -> None:
        p = self.ports.get(name)
        if p is None or self._stopped:
            return
        p.tx_hold = None
        self._run()


def _without(info: Info, bit: int) -> Info:
    return replace(info, state=info.state & ~bit)
