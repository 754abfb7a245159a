"""The LACP state machines (vswitch/lacp/machine.py) on a fake clock:
bonds wired member to member, PDUs delivered after a millisecond, links cut
in one direction to make a partner go silent."""
from __future__ import annotations

from vswitch.lacp.machine import (AGGREGATE_WAIT, MUX_COLL_DIST, MUX_DETACHED, RX_CURRENT,
                                  RX_DEFAULTED, RX_EXPIRED)
from vswitch.lacp.pdu import decode

from .lacp_fakes import Net, settings


def pair(a_active=True, b_active=True, fast=True, members=2, fallback=False):
    net = Net()
    net.bond("A", settings(0xA, active=a_active, fast=fast, fallback=fallback, key=1),
             [f"a{i}" for i in range(members)])
    net.bond("B", settings(0xB, active=b_active, fast=fast, fallback=fallback, key=2),
             [f"b{i}" for i in range(members)])
    for i in range(members):
        net.link(("A", f"a{i}"), ("B", f"b{i}"))
    return net


def test_active_active_negotiates_within_a_few_seconds():
    net = pair()
    net.run(1.0)
    assert net.bonds["A"].status == "negotiated"       # partner known, still waiting
    assert net.distributing("A") == []
    net.run(AGGREGATE_WAIT - 1.1)
    assert net.distributing("A") == []                  # a new aggregate waits 2 s
    net.run(1.2)
    assert net.distributing("A") == ["a0", "a1"]        # both links together
    for bond, mine, theirs in (("A", 0xA, 0xB), ("B", 0xB, 0xA)):
        show = net.bonds[bond].show()
        assert show["status"] == "negotiated"
        assert show["actor"]["system_id"] == f"02:00:00:00:00:{mine:02x}"
        assert show["partner"]["system_id"] == f"02:00:00:00:00:{theirs:02x}"
        assert show["partner"]["key"] == (2 if bond == "A" else 1)
        for m in show["members"]:
            assert m["distributing"]
            assert set(m["actor_state"]) == {"activity", "timeout", "aggregation",
                                             "synchronization", "collecting", "distributing"}
            assert set(m["partner_state"]) == set(m["actor_state"])
            assert m["pdus_rx"] >= 2 and m["pdus_tx"] >= 2 and m["pdus_bad"] == 0
    assert net.distributing("A") == ["a0", "a1"] and net.distributing("B") == ["b0", "b1"]


def test_fast_periodic_is_one_pdu_a_second_and_slow_is_thirty():
    net = pair()
    net.run(10)
    before = len(net.sent)
    net.run(10)
    assert 4 * 10 - 2 <= len(net.sent) - before <= 4 * 10 + 2   # 4 members, 1/s each
    net = pair(fast=False)
    net.run(10)
    before = len(net.sent)
    net.run(120)
    assert 4 * 4 - 2 <= len(net.sent) - before <= 4 * 4 + 2     # every 30 s
    assert net.distributing("A") == ["a0", "a1"]


def test_active_passive_negotiates_and_passive_passive_never_does():
    for a, b in ((True, False), (False, True)):
        net = pair(a_active=a, b_active=b)
        net.run(5)
        assert net.distributing("A") == ["a0", "a1"], (a, b)
        assert net.distributing("B") == ["b0", "b1"], (a, b)
    net = pair(a_active=False, b_active=False)
    net.run(60)
    assert net.sent == []                      # nobody speaks first
    assert net.bonds["A"].status == net.bonds["B"].status == "defaulted"
    assert net.distributing("A") == net.distributing("B") == []


def test_partner_silent_on_one_link_leaves_the_aggregate_within_the_timeout():
    net = pair()
    net.run(5)
    net.cut.add(("B", "b1"))                   # b1's PDUs stop; the link stays up
    net.run(2.9)
    assert net.distributing("A") == ["a0", "a1"]
    net.run(1.2)                               # 3 s after the last PDU, give or take one
    assert net.distributing("A") == ["a0"]
    p = net.bonds["A"].ports["a1"]
    assert p.rx == RX_EXPIRED and p.mux == MUX_DETACHED
    state = net.bonds["A"].show()["members"][1]["actor_state"]
    assert "expired" in state and "synchronization" not in state
    # B still hears a1: A is no longer in sync there, so B stops too
    net.run(0.01)
    assert net.distributing("B") == ["b0"]
    net.run(3.5)
    assert p.rx == RX_DEFAULTED
    assert net.bonds["A"].status == "negotiated"
    net.cut.clear()
    net.run(5)
    assert net.distributing("A") == ["a0", "a1"]


def test_link_down_leaves_at_once_and_comes_back():
    net = pair()
    net.run(5)
    net.set_link(("A", "a0"), False)
    assert net.distributing("A") == ["a1"] and net.distributing("B") == ["b1"]
    net.set_link(("A", "a0"), True)
    # the aggregate is up on a1: a0 joins without the aggregate wait, as
    # soon as a PDU each way says who is there
    net.run(0.1)
    assert net.distributing("A") == ["a0", "a1"] and net.distributing("B") == ["b0", "b1"]


def test_members_with_different_partners_are_not_aggregated_together():
    net = Net()
    net.bond("A", settings(0xA, key=1), ["a0", "a1", "a2"])
    net.bond("B", settings(0xB, key=2), ["b0", "b1"])
    net.bond("C", settings(0xC, key=3), ["c0", "c1"])
    net.link(("A", "a0"), ("B", "b0"))
    net.link(("A", "a1"), ("C", "c0"))
    net.link(("A", "a2"), ("B", "b1"))
    net.run(6)
    # B's two links outnumber C's one
    assert net.distributing("A") == ["a0", "a2"]
    assert net.distributing("B") == ["b0", "b1"] and net.distributing("C") == []
    assert net.bonds["A"].show()["partner"]["system_id"] == "02:00:00:00:00:0b"
    a1 = net.bonds["A"].show()["members"][1]
    assert "synchronization" not in a1["actor_state"] and not a1["distributing"]
    # the aggregate keeps its partner while it has links; when they go, C's link forms one
    net.set_link(("A", "a0"), False)
    net.set_link(("A", "a2"), False)
    net.run(AGGREGATE_WAIT + 1.5)
    assert net.distributing("A") == ["a1"] and net.distributing("C") == ["c0"]


def test_same_partner_but_another_key_is_another_aggregate():
    net = Net()
    net.bond("A", settings(0xA, key=1), ["a0", "a1"])
    net.bond("B", settings(0xB, key=2), ["b0", "b1"])
    net.bond("B2", settings(0xB, key=3), ["x0", "x1"])      # same system, another bond
    net.link(("A", "a0"), ("B", "b0"))
    net.link(("A", "a1"), ("B2", "x0"))
    net.run(6)
    assert len(net.distributing("A")) == 1


def test_no_lacp_partner_is_defaulted_and_fallback_makes_it_active_backup():
    for fallback in (False, True):
        net = Net()
        a = net.bond("A", settings(0xA, fallback=fallback), ["a0", "a1"])
        for m in ("a0", "a1"):
            a.set_port(m, enabled=True)
        assert a.status == "configured"         # expired: still hoping
        net.run(3.1)
        assert a.status == "defaulted"
        assert a.fallback_active == fallback
        assert net.distributing("A") == (["a0", "a1"] if fallback else [])
        # a defaulted fast bond keeps knocking once a second
        before = len(net.sent)
        net.run(5)
        assert 9 <= len(net.sent) - before <= 11


def test_fallback_ends_when_lacp_negotiates():
    net = Net()
    net.bond("A", settings(0xA, fallback=True), ["a0", "a1"])
    net.bond("B", settings(0xB, active=False), ["b0", "b1"])
    for i in range(2):
        net.bonds["A"].set_port(f"a{i}", enabled=True)
    net.run(4)
    assert net.bonds["A"].fallback_active and net.distributing("A") == ["a0", "a1"]
    for i in range(2):
        net.link(("A", f"a{i}"), ("B", f"b{i}"), up=False)
        net.bonds["B"].set_port(f"b{i}", enabled=True)
    net.run(0.01)
    # B answers A's next PDU (A still knocks every second)
    net.run(1.5)
    assert net.bonds["A"].negotiated and not net.bonds["A"].fallback_active
    net.run(AGGREGATE_WAIT + 1)
    assert net.distributing("A") == ["a0", "a1"] and net.distributing("B") == ["b0", "b1"]


def test_a_link_to_its_own_system_is_left_out():
    net = Net()
    net.bond("A", settings(0xA, key=1), ["a0", "a1"])
    net.bond("A2", settings(0xA, key=2), ["x0", "x1"])       # same system id
    net.link(("A", "a0"), ("A2", "x0"))
    net.run(6)
    assert net.distributing("A") == [] and net.bonds["A"].status != "negotiated"


def test_no_more_than_three_pdus_a_second():
    net = pair()
    net.run(5)
    a = net.bonds["A"]
    before = len([s for s in net.sent if s[1] == "a0"])
    for _ in range(20):                         # configuration churn: each change is NTT
        a.configure(settings(0xA, priority=100 + _ % 2, key=1))
        net.run(0.01)
    sent = len([s for s in net.sent if s[1] == "a0"]) - before
    assert sent <= 3 + 1


def test_bad_pdus_are_counted_and_change_nothing():
    net = pair()
    net.run(5)
    a = net.bonds["A"]
    good = next(f for b, m, f in net.sent if b == "B")
    for frame in (good[:40], good[:14] + b"\x01\x00" + good[16:],
                  good[:16] + b"\x01\xff" + good[18:], b"", b"\x00" * 13):
        a.receive("a0", frame)
    show = a.show()["members"][0]
    assert show["pdus_bad"] == 5 and show["distributing"]
    assert a.ports["a0"].bad_reasons == {"short": 3, "version": 1, "tlv": 1}
    assert a.ports["a0"].rx == RX_CURRENT and a.ports["a0"].mux == MUX_COLL_DIST


def test_the_partner_must_know_us_before_it_counts_as_in_sync():
    """A PDU saying "in sync" about somebody else's port does not make the
    partner in sync with us (802.1AX recordPDU)."""
    net = pair()
    net.run(5)
    a = net.bonds["A"]
    frame = next(f for b, m, f in reversed(net.sent) if b == "B" and m == "b0")
    pdu = decode(frame)
    forged = bytearray(frame)
    forged[14 + 24 + 12] ^= 0x01          # partner port number: not ours
    a.receive("a0", bytes(forged))
    assert not a.ports["a0"].partner_sync and not a.may_enable("a0")
    a.receive("a0", frame)
    assert a.ports["a0"].partner_sync and pdu.actor.key == 2


def test_port_number_change_goes_through_detached():
    net = pair()
    net.run(5)
    net.bonds["A"].set_port("a0", number=99)
    assert "a0" not in net.distributing("A")
    net.run(AGGREGATE_WAIT + 1.5)
    assert net.distributing("A") == ["a0", "a1"]
    assert net.bonds["A"].show()["members"][0]["port_id"] == 99


def test_a_stopping_bond_says_goodbye():
    """A bond that stops (vswitchd going down, the bond deleted, LACP turned
    off) sends one last LACPDU out of sync: the partner stops sending into
    it at once, not after its timeout (90 s with slow timers)."""
    net = pair(fast=False)
    net.run(5)
    assert net.distributing("B") == ["b0", "b1"]
    net.bonds["A"].stop()
    net.run(0.01)
    assert net.distributing("B") == []
    last = [decode(f) for b, m, f in net.sent if b == "A"][-2:]
    assert all(not p.actor.has(0x08) and not p.actor.has(0x20) for p in last)
    sent = len(net.sent)
    net.run(100)                               # and nothing more from A
    assert all(b != "A" for b, _, _ in net.sent[sent:])
