"""LACP as an input of the bond state machine (vswitch/bond.py): members
carry traffic only while LACP distributes; fallback to active-backup;
no learning packets while LACP holds; the engine told the effective mode
and the LACP admission.  Two bonds wired through a fake engine on a fake
clock."""
from __future__ import annotations

from vswitch.bond import BUCKETS, Bond
from vswitch.config import parse_port
from vswitch.lacp.machine import AGGREGATE_WAIT

from .lacp_fakes import FakeTimers


class FakeDp:
    """Records what a bond tells the engine; frames sent on an interface
    reach whatever is wired to it."""

    def __init__(self, timers: FakeTimers) -> None:
        self.timers = timers
        self.enabled: dict[int, bool] = {}
        self.claims: dict[int, int] = {}
        self.active: int | None = None
        self.mode: str | None = None
        self.lag = False
        self.buckets: dict[int, int | None] = {}
        self.learning = 0
        self.wire: dict[int, tuple["Bond", int]] = {}
        self.cut: set[int] = set()

    def set_enabled(self, iface, on):
        self.enabled[iface] = on

    def set_claim(self, iface, claims):
        self.claims[iface] = claims

    def set_active(self, port, iface):
        self.active = iface

    def set_bond_mode(self, port, mode):
        self.mode = mode

    def set_lag(self, port, on):
        self.lag = on

    def send_learning_packets(self, port):
        self.learning += 1
        return 0

    def set_slb_bucket(self, port, b, iface):
        self.buckets[b] = iface

    def take_slb_loads(self, port):
        return [0] * BUCKETS

    def send(self, iface, frame):
        assert frame[12:14] == b"\x88\x09"        # no virtio-net header on these fakes
        peer = self.wire.get(iface)
        if peer and iface not in self.cut:
            bond, their_iface = peer
            self.timers.call_later(0.001, bond.lacp_receive, their_iface, frame)


def make(timers, dp, name, ifaces, system, **settings):
    cfg = parse_port(name, {"type": "bond", "interfaces": [f"{name}{i}" for i in ifaces],
                            **settings}, ())
    bond = Bond(name, cfg, ifaces[0], dp, timers, lambda b: None,  # type: ignore[arg-type]
                system_mac=bytes([2, 0, 0, 0, 0, system]))
    for i in ifaces:
        bond.add_member(f"{name}{i}", i, True, mac=f"02:00:00:00:{system:02x}:{i:02x}")
    return bond


def wired(a_settings=None, b_settings=None, start_b=True):
    timers = FakeTimers()
    dpa, dpb = FakeDp(timers), FakeDp(timers)
    a = make(timers, dpa, "a", [10, 11], 0xA, **(a_settings or
                                                  {"lacp": "active", "lacp_time": "fast"}))
    b = make(timers, dpb, "b", [20, 21], 0xB, **(b_settings or
                                                  {"lacp": "active", "lacp_time": "fast"}))
    for x, y in ((10, 20), (11, 21)):
        dpa.wire[x] = (b, y)
        dpb.wire[y] = (a, x)
    dpa.mode = a.mode
    dpb.mode = b.mode
    a.start(None)
    if start_b:
        b.start(None)
    return timers, a, b, dpa, dpb


def enabled(bond):
    return [n for n, m in bond.members.items() if m.enabled]


def test_members_wait_for_lacp_then_carry_traffic():
    timers, a, b, dpa, dpb = wired()
    assert dpa.claims == {10: 1, 11: 1}
    assert enabled(a) == [] and a.active is None and dpa.enabled == {10: False, 11: False}
    timers.advance(1.0)
    assert a.lacp_status == "negotiated" and dpa.lag and enabled(a) == []
    timers.advance(AGGREGATE_WAIT + 1)
    assert enabled(a) == ["a10", "a11"] and enabled(b) == ["b20", "b21"]
    assert dpa.enabled == {10: True, 11: True} and a.active == "a10"
    assert dpa.learning == 0                 # never under LACP
    show = a.show()
    assert show["lacp_status"] == "negotiated" and show["lacp"] == "active"


def test_balance_tcp_buckets_are_dealt_and_follow_lacp():
    tcp = {"lacp": "active", "lacp_time": "fast", "bond_mode": "balance-tcp"}
    timers, a, b, dpa, dpb = wired(tcp, tcp)
    timers.advance(5)
    assert dpa.mode == "balance-tcp"
    counts = [m["buckets"] for m in a.show()["members"]]
    assert counts == [128, 128]
    dpa.cut.add(11)
    dpb.cut.add(21)                           # both directions of the second link silent
    timers.advance(4.1)
    assert enabled(a) == ["a10"]
    assert set(dpa.buckets.values()) == {10}
    assert [m["buckets"] for m in a.show()["members"]] == [256, 0]
    assert dpa.learning == 0


def test_partner_not_speaking_lacp_no_traffic_unless_fallback():
    timers, a, b, dpa, dpb = wired(start_b=False)
    timers.advance(10)
    assert a.lacp_status == "defaulted" and enabled(a) == [] and not dpa.lag
    timers, a, b, dpa, dpb = wired({"lacp": "active", "lacp_time": "fast",
                                    "lacp_fallback_ab": True, "bond_mode": "balance-tcp"},
                                   start_b=False)
    timers.advance(2.9)
    assert enabled(a) == []                   # expired, not yet defaulted
    timers.advance(0.2)
    assert a.lacp_status == "defaulted" and enabled(a) == ["a10", "a11"]
    assert dpa.mode == "active-backup" and a.active == "a10" and not dpa.lag
    assert a.show()["effective_mode"] == "active-backup"
    learned = dpa.learning
    a.link_changed("a10", False)             # an active-backup failover, with RARPs
    assert a.active == "a11" and dpa.learning == learned + 1
    # the partner starts speaking LACP: balance-tcp again
    a.link_changed("a10", True)
    b.start(None)
    timers.advance(5)
    assert a.lacp_status == "negotiated" and dpa.mode == "balance-tcp" and dpa.lag
    assert enabled(a) == ["a10", "a11"]


def test_lacp_turned_off_and_on_live():
    timers, a, b, dpa, dpb = wired()
    timers.advance(5)
    a.reconfigure(parse_port("a", {"type": "bond", "interfaces": ["a10", "a11"]}, ()))
    assert a.lacp is None and dpa.claims == {10: 0, 11: 0} and not dpa.lag
    assert enabled(a) == ["a10", "a11"] and a.lacp_status == "off"
    a.reconfigure(parse_port("a", {"type": "bond", "interfaces": ["a10", "a11"],
                                   "lacp": "passive", "lacp_time": "fast"}, ()))
    assert dpa.claims == {10: 1, 11: 1} and enabled(a) == []
    timers.advance(5)
    assert enabled(a) == ["a10", "a11"]
    assert a.lacp is not None and not a.lacp.settings.active


def test_lacp_settings_reach_the_pdus():
    timers, a, b, dpa, dpb = wired({"lacp": "active", "lacp_time": "fast",
                                    "lacp_system_id": "02:12:34:56:78:9a",
                                    "lacp_system_priority": 100})
    timers.advance(5)
    assert b.lacp is not None
    shown = b.lacp.show()["partner"]
    assert shown == {"system_id": "02:12:34:56:78:9a", "system_priority": 100, "key": 11}
    assert a.lacp is not None and a.lacp.show()["actor"]["key"] == 11
    ports = [m["port_id"] for m in b.lacp.show()["members"]]
    assert ports == [21, 22]                  # engine interface + 1


def test_member_device_recreated_gets_claimed_and_renumbered():
    timers, a, b, dpa, dpb = wired()
    timers.advance(5)
    a.set_member_iface("a11", 15, mac="02:00:00:00:0a:0f")
    assert dpa.claims[15] == 1
    dpa.wire[15] = dpa.wire.pop(11)
    dpb.wire[21] = (a, 15)
    timers.advance(AGGREGATE_WAIT + 2)
    assert enabled(a) == ["a10", "a11"]
    assert a.lacp is not None and a.lacp.show()["members"][1]["port_id"] == 16


def test_a_member_leaving_the_bond_says_goodbye_on_its_link():
    timers, a, b, dpa, dpb = wired()
    timers.advance(5)
    assert enabled(b) == ["b20", "b21"]
    a.cfg = parse_port("a", {"type": "bond", "interfaces": ["a10"], "lacp": "active",
                             "lacp_time": "fast"}, ())
    a.remove_member("a11")
    timers.advance(0.01)
    assert enabled(b) == ["b20"]             # at once, not after B's 3 s timeout
    assert enabled(a) == ["a10"] and set(dpa.buckets.values()) <= {10}
    # the aggregate's identity did not change: its other link never flapped
    timers.advance(5)
    assert enabled(b) == ["b20"] and a.lacp is not None
    assert a.lacp.settings.system_priority == 65534


def test_lacp_show_has_exactly_the_issues_shape():
    timers, a, b, dpa, dpb = wired()
    timers.advance(5)
    assert a.lacp is not None
    shown = a.lacp.show(["a10", "a11"])
    assert set(shown) == {"bond", "status", "actor", "partner", "members"}
    assert set(shown["actor"]) == set(shown["partner"]) == \
        {"system_id", "system_priority", "key"}
    for m in shown["members"]:
        assert set(m) == {"name", "port_id", "distributing", "actor_state", "partner_state",
                          "pdus_tx", "pdus_rx", "pdus_bad"}
        assert isinstance(m["distributing"], bool)
        assert all(isinstance(w, str) for w in m["actor_state"] + m["partner_state"])
