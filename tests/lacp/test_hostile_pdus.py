"""Hostile slow-protocol frames through the real claim path: the C engine
claims them on a bond member (csrc/forward.c, csrc/upcall.c), the upcall
channel carries them up, the LACP machines decode them.  Nothing crashes,
every frame is counted exactly once (received, bad or marker), the engine
counts each as an upcall, and the aggregate the machines hold is never
disturbed by garbage.  Marked `sanitize`: scripts/test-sanitize.sh runs it
again against the engine built with ASan and UBSan."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vswitch.datapath import CLAIM_LACP, UPCALL_SLOW_PROTO
from vswitch.lacp.machine import Lacp
from vswitch.lacp.pdu import LACP_DST, STATE_ACTIVITY, Info, Lacpdu, encode
from vswitch.upcall import UpcallChannel

from ..engine.harness import Engine
from ..unit.lacp_fakes import FakeTimers, settings as lacp_settings

pytestmark = pytest.mark.sanitize

SRC = bytes.fromhex("02000000beef")
GOOD = encode(Lacpdu(Info(7, SRC, 3, 255, 9, STATE_ACTIVITY | 0x3c), Info()), SRC)


class Rig:
    """A bond port of two members in a real engine, its LACP machines fed
    from the real upcall channel."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.host = self.engine.add_port()
        bond = self.engine.add_port(bond_mode="balance-tcp", members=2)
        self.members = self.engine.members(bond.port)
        self.timers = FakeTimers()
        self.sent: list[tuple[str, bytes]] = []
        self.lacp = Lacp("bd", lacp_settings(0xA), self.timers,
                         lambda m, f: self.sent.append((m, f)) is None, lambda: None)
        self.by_iface = {}
        for i, m in enumerate(self.members):
            self.engine.dp.set_claim(m.iface, CLAIM_LACP)
            self.engine.dp.set_enabled(m.iface, False)    # as before LACP agrees
            self.lacp.add_port(f"m{i}", m.iface + 1, bytes(5) + bytes([i]), True)
            self.by_iface[m.iface] = f"m{i}"
        self.channel = UpcallChannel(self.engine.dp)
        self.channel.register(UPCALL_SLOW_PROTO,
                              lambda up: self.lacp.receive(self.by_iface[up.iface], up.frame))

    def feed(self, member: int, frame: bytes) -> None:
        self.engine.send(self.members[member], frame)
        self.channel.drain()

    def counts(self, name: str) -> int:
        p = self.lacp.ports[name]
        return p.pdus_rx + p.pdus_bad + p.markers_rx

    def close(self) -> None:
        self.engine.close()


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def slow_frame(body: bytes) -> bytes:
    return LACP_DST + SRC + b"\x88\x09" + body


mutations = st.lists(st.tuples(st.integers(0, 123), st.integers(0, 255)), max_size=6)


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["random", "mutated", "cut", "grown"]),
       body=st.binary(max_size=300), muts=mutations, cut=st.integers(0, 124))
def test_hostile_slow_protocol_frames(rig, kind, body, muts, cut):
    if kind == "random":
        frame = slow_frame(body)
    elif kind == "cut":
        frame = GOOD[:max(cut, 14)]
    elif kind == "grown":
        frame = GOOD + body
    else:
        raw = bytearray(GOOD)
        for off, val in muts:
            if off >= 12:        # keep it addressed to LACP so the engine claims it
                raw[off] = val
        frame = bytes(raw)
    before = rig.counts("m0")
    st_before = rig.engine.stats(rig.members[0])
    rig.feed(0, frame)
    after = rig.engine.stats(rig.members[0])
    assert after.rx_packets == st_before.rx_packets + 1
    ethertype = struct.unpack("!H", frame[12:14])[0] if len(frame) >= 14 else None
    if ethertype == 0x8809:
        assert after.rx_upcall == st_before.rx_upcall + 1
        assert rig.counts("m0") == before + 1
    else:                                    # not claimed: the engine's drop
        assert sum(after.drops.values()) == sum(st_before.drops.values()) + 1
    assert rig.engine.recv_all(rig.host) == []


def test_garbage_never_disturbs_an_aggregate(rig):
    """Both members negotiated with a scripted partner; a burst of garbage
    on one of them changes nothing but its bad-PDU counter."""
    def partner_pdu(member: int) -> bytes:
        me = rig.lacp.actor_info(rig.lacp.ports[f"m{member}"])
        return encode(Lacpdu(Info(7, SRC, 3, 255, 9 + member, 0x3d), me), SRC)
    for _ in range(6):
        for i in (0, 1):
            rig.feed(i, partner_pdu(i))
        rig.timers.advance(1.0)
    assert [rig.lacp.may_enable("m0"), rig.lacp.may_enable("m1")] == [True, True]
    garbage = [GOOD[:30], GOOD[:15] + b"\x00" + GOOD[16:], GOOD[:17] + b"\xff" + GOOD[18:],
               GOOD[:14] + b"\x01\x01\x01\x14" + b"\xff" * 106]
    for _ in range(50):
        for g in garbage:
            rig.feed(1, g)
    assert rig.lacp.ports["m1"].pdus_bad == 200
    assert [rig.lacp.may_enable("m0"), rig.lacp.may_enable("m1")] == [True, True]
    assert rig.lacp.show()["partner"]["system_id"] == "02:00:00:00:be:ef"
    # the upcall queue lost nothing and was never the bottleneck
    st = rig.engine.dp.upcall_stats()
    assert st.dropped["slow_proto"] == 0 and st.pending == 0
