"""Bonds in the engine: admissibility and egress choice for active-backup
and balance-slb, SLB hashing, and the learning packets sent on failover."""
from __future__ import annotations

from collections import Counter

import pytest
from scapy.layers.l2 import ARP, Dot1Q, Ether

from vswitch._engine import lib

from .frames import BCAST, frame, mac


@pytest.fixture
def ab(engine):
    """host port h, and an active-backup bond with members m0 (active), m1."""
    h = engine.add_port()
    bond = engine.add_port(bond_mode="active-backup", members=2)
    m0, m1 = engine.members(bond.port)
    engine.dp.set_active(bond.port, m0.iface)
    return engine, h, bond, m0, m1


def test_active_backup_sends_on_the_active_member_only(ab):
    engine, h, bond, m0, m1 = ab
    engine.send(h, frame(mac(1), BCAST))
    assert len(engine.recv_all(m0)) == 1 and engine.recv_all(m1) == []
    engine.dp.set_active(bond.port, m1.iface)
    engine.send(h, frame(mac(1), mac(99)))
    assert engine.recv_all(m0) == [] and len(engine.recv_all(m1)) == 1


def test_active_backup_drops_everything_arriving_on_a_backup(ab):
    engine, h, bond, m0, m1 = ab
    engine.send(m1, frame(mac(5), BCAST))
    engine.send(m1, frame(mac(5), mac(6)))
    assert engine.recv_all(h) == []
    assert engine.stats(m1).drops["bond"] == 2
    assert engine.dp.fdb_lookup(engine.br, 0, mac(5)) is None
    engine.send(m0, frame(mac(5), BCAST))
    assert len(engine.recv_all(h)) == 1
    assert engine.dp.fdb_lookup(engine.br, 0, mac(5)) == bond.port


def test_disabled_member_neither_sends_nor_receives(ab):
    engine, h, bond, m0, m1 = ab
    engine.dp.set_enabled(m0.iface, False)
    engine.send(h, frame(mac(1), BCAST))
    assert engine.recv_all(m0) == []          # the active one, but disabled
    # a flood reaching a bond with no usable member: the bond's drop...
    assert engine.stats(m0).drops["no_member"] == 1
    assert engine.stats(h).rx_forwarded == 1
    # ...unicast that can only go there: the input's
    engine.dp.fdb_add_static(engine.br, bond.port, 0, mac(42))
    engine.send(h, frame(mac(1), mac(42)))
    assert engine.stats(h).drops["no_member"] == 1
    engine.send(m0, frame(mac(5), BCAST))
    assert engine.recv_all(h) == [] and engine.stats(m0).drops["bond"] == 1


@pytest.fixture
def slb(engine):
    h, other = engine.add_port(), engine.add_port()
    bond = engine.add_port(bond_mode="balance-slb", members=3)
    members = engine.members(bond.port)
    for b in range(256):
        engine.dp.set_slb_bucket(bond.port, b, members[b % 3].iface)
    engine.dp.set_active(bond.port, members[0].iface)
    return engine, h, other, bond, members


def test_slb_spreads_100_source_macs_over_3_members(slb):
    engine, h, other, bond, members = slb
    for i in range(100):
        engine.send(h, frame(mac(1000 + i), BCAST))
    got = [len(engine.recv_all(m)) for m in members]
    assert sum(got) == 100
    assert min(got) >= 15, got
    # one MAC always leaves by the same member
    for _ in range(3):
        engine.send(h, frame(mac(1000), BCAST))
    assert sorted(len(engine.recv_all(m)) for m in members) == [0, 0, 3]


def test_slb_hash_is_by_source_mac_and_vlan(slb):
    seen = Counter(lib.vs_slb_hash(bytes.fromhex(mac(i).replace(":", "")), 0)
                   for i in range(2000))
    assert len(seen) > 200              # nearly every bucket used
    m = bytes.fromhex("020000000001")
    assert lib.vs_slb_hash(m, 10) != lib.vs_slb_hash(m, 11) or \
        lib.vs_slb_hash(m, 12) != lib.vs_slb_hash(m, 13)


def test_slb_accepts_multicast_only_on_the_active_member(slb):
    engine, h, other, bond, members = slb
    engine.send(members[1], frame(mac(7), BCAST))
    assert engine.recv_all(h) == [] and engine.stats(members[1]).drops["bond"] == 1
    engine.send(members[0], frame(mac(7), BCAST))
    assert len(engine.recv_all(h)) == 1


def test_slb_drops_unicast_whose_source_is_learned_elsewhere(slb):
    engine, h, other, bond, members = slb
    engine.send(h, frame(mac(1), BCAST))                # mac(1) lives behind h
    for m in members:
        engine.recv_all(m)
    engine.recv_all(other)
    engine.send(members[2], frame(mac(1), mac(50)))      # our own frame looping back
    assert engine.recv_all(other) == [] and engine.stats(members[2]).drops["bond"] == 1
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) == h.port
    engine.send(members[2], frame(mac(60), mac(1)))      # a genuine remote station
    assert len(engine.recv_all(h)) == 1
    assert engine.dp.fdb_lookup(engine.br, 0, mac(60)) == bond.port


def rarps(raw_frames):
    out = []
    for raw in raw_frames:
        e = Ether(raw)
        vlan = e[Dot1Q].vlan if e.type == 0x8100 else 0
        inner = e[Dot1Q].type if e.type == 0x8100 else e.type
        assert inner == 0x8035 and e.dst == "ff:ff:ff:ff:ff:ff" and len(raw) >= 60
        arp = ARP(bytes(e[Dot1Q].payload if vlan else e.payload))
        assert (arp.op, arp.hwsrc, arp.hwdst, arp.psrc, arp.pdst) == \
            (3, e.src, e.src, "0.0.0.0", "0.0.0.0")
        out.append((e.src, vlan))
    return sorted(out)


def test_learning_packets_after_failover(ab):
    engine, h, bond, m0, m1 = ab
    engine.send(h, frame(mac(1), BCAST))
    engine.send(h, frame(mac(2), BCAST, vlan=10))
    engine.send(m0, frame(mac(3), BCAST))          # learned on the bond itself
    for p in (m0, m1, h):
        engine.recv_all(p)
    engine.dp.set_active(bond.port, m1.iface)
    assert engine.dp.send_learning_packets(bond.port) == 2
    assert engine.recv_all(m0) == []
    assert rarps(engine.recv_all(m1)) == [(mac(1), 0), (mac(2), 10)]


def test_learning_packets_follow_the_bonds_vlan_configuration(ab):
    engine, h, bond, m0, m1 = ab
    engine.dp.set_vlan(bond.port, "native-untagged", 10, (20,))
    engine.send(h, frame(mac(1), BCAST, vlan=10))
    engine.send(h, frame(mac(2), BCAST, vlan=20))
    engine.send(h, frame(mac(3), BCAST, vlan=30))   # a VLAN the bond does not carry
    engine.recv_all(m0)
    assert engine.dp.send_learning_packets(bond.port) == 2
    assert rarps(engine.recv_all(m0)) == [(mac(1), 0), (mac(2), 20)]


def test_slb_learning_packets_leave_by_each_macs_member(slb):
    engine, h, other, bond, members = slb
    macs = [mac(500 + i) for i in range(30)]
    for m in macs:
        engine.send(h, frame(m, BCAST))
    data_by_member = [{Ether(f).src for f in engine.recv_all(m)} for m in members]
    assert engine.dp.send_learning_packets(bond.port) == 30
    rarp_by_member = [{src for src, _ in rarps(engine.recv_all(m))} for m in members]
    assert rarp_by_member == data_by_member
    assert set().union(*rarp_by_member) == set(macs)
