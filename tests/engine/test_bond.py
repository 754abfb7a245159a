"""Bonds in the engine: admissibility and egress choice for active-backup,
balance-slb and balance-tcp, SLB and L3/L4 hashing, admission under LACP,
and the learning packets sent on failover."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


# --- balance-tcp and LACP admission -------------------------------------------------

def flow(sport: int, dport: int = 5201, src_ip: str = "10.0.0.1", dst_ip: str = "10.0.0.2",
         src: str = mac(1), dst: str = mac(2), udp: bool = False, vlan: int | None = None,
         v6: bool = False) -> bytes:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    pkt = Ether(src=src, dst=dst)
    if vlan is not None:
        pkt = pkt / Dot1Q(vlan=vlan)
    pkt = pkt / (IPv6(src="fd00::1", dst="fd00::2") if v6 else IP(src=src_ip, dst=dst_ip))
    pkt = pkt / (UDP(sport=sport, dport=dport) if udp else TCP(sport=sport, dport=dport))
    return bytes(pkt)


def tcp_bucket(raw: bytes, vlan: int = 0) -> int:
    return lib.vs_tcp_hash(raw, len(raw), vlan)


@pytest.fixture
def tcp(engine):
    """host h, a balance-tcp bond of 3 members, buckets dealt round robin,
    LACP negotiated (lag)."""
    h = engine.add_port()
    bond = engine.add_port(bond_mode="balance-tcp", members=3)
    members = engine.members(bond.port)
    for b in range(256):
        engine.dp.set_slb_bucket(bond.port, b, members[b % 3].iface)
    engine.dp.set_active(bond.port, members[0].iface)
    engine.dp.set_lag(bond.port, True)
    engine.dp.fdb_add_static(engine.br, bond.port, 0, mac(2))
    return engine, h, bond, members


def test_tcp_hash_is_symmetric_and_uses_addresses_protocol_and_ports():
    there = flow(40000)
    back = flow(5201, 40000, "10.0.0.2", "10.0.0.1", src=mac(2), dst=mac(1))
    assert tcp_bucket(there) == tcp_bucket(back)
    buckets = {tcp_bucket(flow(40000 + i)) for i in range(200)}
    assert len(buckets) > 100                     # the source port matters
    # MACs do not matter for IP; addresses do
    assert tcp_bucket(flow(1, src=mac(7))) == tcp_bucket(flow(1, src=mac(8)))
    assert len({tcp_bucket(flow(1, src_ip=f"10.0.1.{i}")) for i in range(50)}) > 25
    assert len({tcp_bucket(flow(40000 + i, udp=True)) for i in range(100)}) > 50
    assert len({tcp_bucket(flow(40000 + i, v6=True)) for i in range(100)}) > 50
    # a tag does not change an IP flow's bucket; for L2 frames the VLAN counts
    assert tcp_bucket(flow(1, vlan=10)) == tcp_bucket(flow(1))
    l2 = frame(mac(1), mac(2))[:14]
    assert len({tcp_bucket(l2, v) for v in range(1, 40)}) > 20


def test_tcp_hash_of_a_fragment_or_cut_header_ignores_ports():
    from scapy.layers.inet import IP, TCP
    frags = [bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / TCP(sport=p))
             for p in range(1000, 1010)]
    assert len({tcp_bucket(f) for f in frags}) == 1
    whole = flow(1234)
    ip_only = whole[:14 + 20]
    assert tcp_bucket(ip_only) == tcp_bucket(flow(4321)[:14 + 20])
    for cut in range(len(whole)):
        assert 0 <= tcp_bucket(whole[:cut]) < 256


def test_balance_tcp_spreads_flows_and_keeps_each_on_one_member(tcp):
    engine, h, bond, members = tcp
    for i in range(150):
        engine.send(h, flow(40000 + i))
    got = [len(engine.recv_all(m)) for m in members]
    assert sum(got) == 150 and min(got) >= 25, got
    for i in (3, 77):
        for _ in range(4):
            engine.send(h, flow(40000 + i))
        per = [len(engine.recv_all(m)) for m in members]
        assert sorted(per) == [0, 0, 4]
        assert per.index(4) == tcp_bucket(flow(40000 + i)) % 3
    loads = engine.dp.take_slb_loads(bond.port)
    assert sum(loads) == sum(len(flow(40000 + i)) for i in range(150)) + \
        8 * len(flow(40000))


def test_balance_tcp_follows_buckets_and_falls_back_to_the_active_member(tcp):
    engine, h, bond, members = tcp
    f = flow(1111)
    b = tcp_bucket(f)
    engine.dp.set_slb_bucket(bond.port, b, members[2].iface)
    engine.send(h, f)
    assert [len(engine.recv_all(m)) for m in members] == [0, 0, 1]
    engine.dp.set_enabled(members[2].iface, False)    # until its buckets move
    engine.send(h, f)
    assert [len(engine.recv_all(m)) for m in members] == [1, 0, 0]


def test_lag_admits_everything_on_enabled_members_only(tcp):
    engine, h, bond, members = tcp
    engine.send(h, frame(mac(1), BCAST))              # mac(1) learned on h
    for m in members:
        engine.recv_all(m)
    for m in members:                                 # broadcast on every member
        engine.send(m, frame(mac(30), BCAST))
    assert len(engine.recv_all(h)) == 3
    engine.send(members[1], frame(mac(31), mac(1)))
    assert len(engine.recv_all(h)) == 1
    engine.dp.set_enabled(members[1].iface, False)
    engine.send(members[1], frame(mac(31), mac(1)))
    assert engine.recv_all(h) == [] and engine.stats(members[1]).drops["bond"] == 1
    # without LACP a balance-tcp bond takes nothing in
    engine.dp.set_lag(bond.port, False)
    engine.send(members[0], frame(mac(30), BCAST))
    assert engine.recv_all(h) == [] and engine.stats(members[0]).drops["bond"] == 1


def test_lacpdus_are_claimed_on_disabled_members_and_sent_through_them(tcp):
    """LACP must hear and speak on members that carry no traffic (that is
    how a member starts to)."""
    from vswitch.datapath import CLAIM_LACP
    engine, h, bond, members = tcp
    m = members[1]
    engine.dp.set_enabled(m.iface, False)
    engine.dp.set_claim(m.iface, CLAIM_LACP)
    pdu = bytes(Ether(src=mac(9), dst="01:80:c2:00:00:02", type=0x8809)) + bytes([1, 1]) + \
        bytes(108)
    engine.send(m, pdu)
    st = engine.stats(m)
    assert st.rx_upcall == 1 and st.drops["bond"] == 0 and engine.recv_all(h) == []
    engine.dp.send(m.iface, pdu)
    assert engine.recv_all(m) == [pdu]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=120), vlan=st.integers(0, 4095))
def test_tcp_hash_of_arbitrary_bytes(data, vlan):
    for prefix in (b"", bytes(12) + b"\x08\x00", bytes(12) + b"\x86\xdd",
                   bytes(12) + b"\x81\x00\x00\x0a\x08\x00"):
        assert 0 <= lib.vs_tcp_hash(prefix + data, len(prefix + data), vlan) < 256


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ethertype=st.sampled_from([b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x88\x09"]),
       rest=st.binary(max_size=100))
def test_hostile_frames_through_a_balance_tcp_bond(tcp, ethertype, rest):
    """Cut and absurd IP headers on their way out of a balance-tcp bond:
    each is accounted once and nothing reads past the frame (the sanitizer
    pass runs this too)."""
    engine, h, bond, members = tcp
    before = engine.stats(h)
    engine.send(h, bytes.fromhex(mac(2).replace(":", "")) +
                bytes.fromhex(mac(1).replace(":", "")) + ethertype + rest)
    after = engine.stats(h)
    assert after.rx_packets == before.rx_packets + 1
    assert (after.rx_forwarded - before.rx_forwarded) + \
        (sum(after.drops.values()) - sum(before.drops.values())) == 1
    for m in members:
        engine.recv_all(m)
