"""Mirrors (csrc/mirror.c) with Open vSwitch's Mirror-table semantics:
every selector, the output port taken out of forwarding, RSPAN to a VLAN,
one copy per destination, counters."""
import pytest
from scapy.layers.l2 import Dot1Q, Ether

from vswitch.errors import VswitchError

from .frames import BCAST, frame, mac


def mirror(engine, slot=0, *, select_all=False, src=(), dst=(), vlans=(), out=None,
           out_vlan=None):
    engine.dp.mirror_set(engine.br, slot, select_all=select_all,
                         src=[p.port for p in src], dst=[p.port for p in dst], vlans=vlans,
                         output_port=None if out is None else out.port,
                         output_vlan=out_vlan)


def vlan_of(raw: bytes):
    e = Ether(raw)
    return e[Dot1Q].vlan if Dot1Q in e else None


@pytest.fixture
def four(engine):
    """a, b, c and a mirror output port m, all trunks."""
    a, b, c, m = (engine.add_port() for _ in range(4))
    return engine, a, b, c, m


def learn(engine, *ports):
    for i, p in enumerate(ports):
        engine.send(p, frame(mac(i + 1), BCAST))
    for p in engine.ports:
        engine.recv_all(p)


def test_select_all_copies_every_frame_once(four):
    engine, a, b, c, m = four
    mirror(engine, select_all=True, out=m)
    learn(engine, a, b, c)
    f = frame(mac(1), mac(2))              # a -> b, learned unicast
    engine.send(a, f)
    assert engine.recv_all(b) == [f] and engine.recv_all(c) == []
    assert engine.recv_all(m) == [f]       # once, though selected by a and b
    engine.send(a, frame(mac(1), BCAST))
    assert len(engine.recv_all(m)) == 1 and len(engine.recv_all(b)) == 1
    assert engine.dp.mirror_stats(engine.br, 0)[0] == 3 + 2   # the learning floods too


def test_output_port_is_out_of_normal_forwarding(four):
    engine, a, b, c, m = four
    engine.send(m, frame(mac(9), BCAST))          # m's station learned before
    engine.recv_all(a), engine.recv_all(b), engine.recv_all(c)
    assert engine.dp.fdb_lookup(engine.br, 0, mac(9)) == m.port
    mirror(engine, src=[b], out=m)
    assert engine.dp.fdb_lookup(engine.br, 0, mac(9)) is None   # forgotten
    # a flood from a does not reach m (a is not selected)
    engine.send(a, frame(mac(1), BCAST))
    assert engine.recv_all(m) == [] and len(engine.recv_all(b)) == 1
    assert len(engine.recv_all(c)) == 1
    # what m sends is dropped, and nothing is learned from it
    engine.send(m, frame(mac(8), BCAST))
    assert engine.recv_all(a) == engine.recv_all(b) == engine.recv_all(c) == []
    assert engine.stats(m).drops["mirror_port"] == 1
    assert engine.dp.fdb_lookup(engine.br, 0, mac(8)) is None
    # a static entry pointing at m: unicast to it is dropped at the input
    engine.dp.fdb_add_static(engine.br, m.port, 0, mac(7))
    engine.send(a, frame(mac(1), mac(7)))
    assert engine.recv_all(m) == [] and engine.stats(a).drops["mirror_port"] == 1


def test_select_src_port_takes_frames_entering_it_only(four):
    engine, a, b, c, m = four
    mirror(engine, src=[a], out=m)
    learn(engine, a, b, c)
    fa, fb = frame(mac(1), mac(2)), frame(mac(2), mac(1))
    engine.send(a, fa)
    engine.send(b, fb)
    assert engine.recv_all(m) == [fa]
    # a frame entering a that is then dropped (its destination is behind a)
    # is still mirrored: selection is on arrival, as in Open vSwitch
    engine.send(a, frame(mac(5), mac(1)))
    assert len(engine.recv_all(m)) == 1 and engine.stats(a).drops["same_port"] == 1


def test_select_dst_port_takes_frames_leaving_by_it_only(four):
    engine, a, b, c, m = four
    mirror(engine, dst=[b], out=m)
    learn(engine, a, b, c)
    to_b, to_c = frame(mac(1), mac(2)), frame(mac(1), mac(3))
    engine.send(a, to_b)
    engine.send(a, to_c)
    assert engine.recv_all(m) == [to_b]
    flood = frame(mac(3), BCAST)           # reaches b among others
    engine.send(c, flood)
    assert engine.recv_all(m) == [flood]
    engine.send(b, frame(mac(2), BCAST))   # leaves by a and c, not b
    assert engine.recv_all(m) == []


def test_select_vlan_narrows_the_selection(four):
    engine, a, b, c, m = four
    mirror(engine, src=[a], vlans=[10, 30], out=m)
    sent = {v: frame(mac(1), BCAST, vlan=v) for v in (10, 20, 30)}
    for f in sent.values():
        engine.send(a, f)
    assert engine.recv_all(m) == [sent[10], sent[30]]


def test_output_port_tags_as_its_vlan_configuration_says(engine):
    a = engine.add_port()
    engine.dp.set_vlan(a.port, "access", 10, [])
    trunk_out, access_out = engine.add_port(), engine.add_port()
    engine.dp.set_vlan(access_out.port, "access", 99, [])
    mirror(engine, 0, src=[a], out=trunk_out)
    mirror(engine, 1, src=[a], out=access_out)
    engine.send(a, frame(mac(1), BCAST))
    assert [vlan_of(x) for x in engine.recv_all(trunk_out)] == [10]
    # Open vSwitch outputs a mirror copy even to a port not carrying the
    # VLAN, untagged on an access port
    assert [vlan_of(x) for x in engine.recv_all(access_out)] == [None]


def test_output_vlan_is_rspan(engine):
    """Selected frames go to every port carrying the output VLAN, retagged,
    untagged on an access port of it; never to an output port; frames
    already in that VLAN are not mirrored again."""
    a = engine.add_port()
    engine.dp.set_vlan(a.port, "access", 10, [])
    b = engine.add_port()
    engine.dp.set_vlan(b.port, "access", 10, [])
    trunk = engine.add_port()
    engine.dp.set_vlan(trunk.port, "trunk", 0, [10, 999])
    probe = engine.add_port()
    engine.dp.set_vlan(probe.port, "access", 999, [])
    other = engine.add_port()
    engine.dp.set_vlan(other.port, "trunk", 0, [10])
    spanout = engine.add_port()
    mirror(engine, 0, src=[a], out_vlan=999)
    mirror(engine, 1, src=[b], out=spanout)      # its port never gets RSPAN copies
    f = frame(mac(1), BCAST)
    engine.send(a, f)
    got_trunk = [vlan_of(x) for x in engine.recv_all(trunk)]
    assert sorted(got_trunk, key=str) == [10, 999]       # the frame and its copy
    assert [vlan_of(x) for x in engine.recv_all(probe)] == [None]
    assert [vlan_of(x) for x in engine.recv_all(other)] == [10]
    assert engine.recv_all(spanout) == []
    # a frame already in VLAN 999 is not mirrored into it
    engine.dp.set_vlan(a.port, "access", 999, [])
    engine.send(a, frame(mac(1), BCAST))
    assert [vlan_of(x) for x in engine.recv_all(trunk)] == [999]
    assert engine.dp.mirror_stats(engine.br, 0)[0] == 2


def test_one_copy_per_destination_and_counters_per_mirror(four):
    engine, a, b, c, m = four
    mirror(engine, 0, src=[a], out=m)
    mirror(engine, 1, dst=[b], out=m)
    mirror(engine, 2, src=[c], out=m)
    f = frame(mac(1), BCAST, size=100)          # a -> b, c: selected by 0 and 1
    engine.send(a, f)
    assert engine.recv_all(m) == [f]
    stats = [engine.dp.mirror_stats(engine.br, s) for s in range(3)]
    # as Open vSwitch: the first mirror that sends to a destination counts it
    assert stats == [(1, 100), (0, 0), (0, 0)]
    engine.send(c, frame(mac(3), mac(77), size=80))  # selected by 2 and (flood reaches b) 1
    assert len(engine.recv_all(m)) == 1
    assert engine.dp.mirror_stats(engine.br, 1) == (1, 80)


def test_replacing_keeps_counters_and_deleting_stops(four):
    engine, a, b, c, m = four
    mirror(engine, src=[a], out=m)
    engine.send(a, frame(mac(1), BCAST))
    mirror(engine, src=[a, b], out=m)
    engine.send(b, frame(mac(2), BCAST))
    assert engine.dp.mirror_stats(engine.br, 0)[0] == 2
    assert len(engine.recv_all(m)) == 2
    engine.dp.mirror_del(engine.br, 0)
    # m is back in normal forwarding: a's flood reaches it once, as a copy
    # no more
    engine.send(a, frame(mac(1), BCAST))
    assert len(engine.recv_all(m)) == 1
    with pytest.raises(VswitchError):
        engine.dp.mirror_stats(engine.br, 0)


def test_deleted_ports_leave_the_selection_and_a_deleted_output_stops_it(four):
    engine, a, b, c, m = four
    mirror(engine, src=[a, b], out=m)
    engine.dp.del_port(a.port)
    d = engine.add_port()                 # may reuse a's engine id
    engine.send(d, frame(mac(4), BCAST))
    assert engine.recv_all(m) == []
    engine.send(b, frame(mac(2), BCAST))
    assert len(engine.recv_all(m)) == 1
    engine.dp.del_port(m.port)
    engine.send(b, frame(mac(2), BCAST))   # nothing to mirror to; no crash
    assert len(engine.recv_all(c)) >= 1


def test_bad_mirror_configurations_are_refused(four):
    engine, a, b, c, m = four
    other_br = engine.dp.add_bridge(64, 300)
    x = engine.add_port(br=other_br)
    cases = [dict(src=[a]),                            # no destination
             dict(src=[a], out=m, out_vlan=5),          # two
             dict(src=[x], out=m),                      # a port of another bridge
             dict(src=[a], out=x),
             dict(src=[a], out_vlan=4095)]
    for kw in cases:
        with pytest.raises(VswitchError) as e:
            mirror(engine, **kw)
        assert e.value.code == "EINVAL", kw
    with pytest.raises(VswitchError):
        mirror(engine, 32, src=[a], out=m)
    engine.send(a, frame(mac(1), BCAST))
    assert len(engine.recv_all(m)) == 1        # nothing was half-applied


def test_mirror_to_a_bond_uses_its_member(engine):
    a = engine.add_port()
    bond = engine.add_port(bond_mode="active-backup", members=2)
    m0, m1 = engine.members(bond.port)
    engine.dp.set_active(bond.port, m1.iface)
    mirror(engine, src=[a], out=bond)
    engine.send(a, frame(mac(1), BCAST))
    assert engine.recv_all(m0) == [] and len(engine.recv_all(m1)) == 1
