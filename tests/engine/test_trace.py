"""vs_dp_trace (csrc/trace.c): the forwarding code run with a recorder.
Each case traces a frame, checks that nothing changed, then injects the
same frame and checks the trace named exactly where it really went."""
from collections import Counter

import pytest
from scapy.layers.l2 import Dot1Q, Ether

from vswitch._engine import lib
from vswitch.datapath import CLAIM_LACP

from .frames import BCAST, frame, mac


def state(engine):
    """Everything a trace must leave alone."""
    st = {tp.iface: engine.stats(tp) for tp in engine.ports}
    loads = {tp.port: tuple(engine.dp.take_slb_loads(tp.port))
             for tp in engine.ports if len(engine.members(tp.port)) > 1}
    # take_slb_loads resets them: put nothing back, compare only the reads
    return st, sorted((e.port, e.vlan, e.mac, e.is_static) for e in engine.dp.fdb_dump(engine.br)), \
        loads


def trace_and_send(engine, tp, raw):
    """(the trace, Counter of (iface, vlan or None) that really came out)."""
    for p in engine.ports:
        engine.recv_all(p)
    before = state(engine)
    t = engine.dp.trace(tp.iface, raw)
    after = state(engine)
    assert after[0] == before[0], "a trace changed counters"
    assert after[1] == before[1], "a trace changed the FDB"
    assert all(sum(v) == 0 for v in after[2].values()), "a trace moved SLB loads"
    assert all(engine.recv_all(p) == [] for p in engine.ports), "a trace sent something"
    engine.send(tp, raw)
    real = Counter()
    for p in engine.ports:
        for out in engine.recv_all(p):
            e = Ether(out)
            real[(p.iface, e[Dot1Q].vlan if Dot1Q in e else None)] += 1
    return t, real


def predicted(t):
    return Counter((o.iface, o.vlan if o.tagged else None) for o in t.outputs)


def kinds(t):
    return [s[0] for s in t.steps]


def test_learned_unicast(engine):
    a, b, c = engine.add_port(), engine.add_port(), engine.add_port()
    engine.send(b, frame(mac(2), BCAST))
    t, real = trace_and_send(engine, a, frame(mac(1), mac(2)))
    assert predicted(t) == real == Counter({(b.iface, None): 1})
    assert t.drop is None
    assert (lib.VS_TRACE_LEARN, a.port, 0, -1) in t.steps       # mac(1) is new
    assert (lib.VS_TRACE_FDB_HIT, b.port, 0, 0) in t.steps
    assert lib.VS_TRACE_FLOOD not in kinds(t)


def test_flood_lists_every_port_it_reaches(engine):
    a, b, c = engine.add_port(), engine.add_port(), engine.add_port()
    d = engine.add_port()
    engine.dp.set_vlan(d.port, "access", 10, [])
    t, real = trace_and_send(engine, a, frame(mac(1), mac(99)))
    assert predicted(t) == real == Counter({(b.iface, None): 1, (c.iface, None): 1})
    assert (lib.VS_TRACE_FLOOD, 1, 0, 0) in t.steps
    assert (lib.VS_TRACE_SKIP, d.port, 1, 0) in t.steps          # VLAN 0 not carried
    t, real = trace_and_send(engine, a, frame(mac(1), BCAST))
    assert predicted(t) == real and (lib.VS_TRACE_FLOOD, 2, 0, 0) in t.steps


def test_vlan_drop_and_tagging(engine):
    access = engine.add_port()
    engine.dp.set_vlan(access.port, "access", 10, [])
    trunk = engine.add_port()
    engine.dp.set_vlan(trunk.port, "trunk", 0, [10, 20])
    # a tagged frame on an access port: dropped at ingress
    t, real = trace_and_send(engine, access, frame(mac(1), BCAST, vlan=20))
    assert t.drop == "vlan" and t.outputs == [] and not real
    assert engine.stats(access).drops["vlan"] == 1       # the real one counted
    # a frame in a VLAN the trunk does not carry
    t, real = trace_and_send(engine, trunk, frame(mac(2), BCAST, vlan=30))
    assert t.drop == "vlan" and not real
    # untagged in on access, tagged out on the trunk
    t, real = trace_and_send(engine, access, frame(mac(1), BCAST))
    assert predicted(t) == real == Counter({(trunk.iface, 10): 1})
    assert (lib.VS_TRACE_VLAN, 10, lib.VS_VLAN_ACCESS, 10) in t.steps
    # learned unicast to a port not carrying the VLAN
    engine.send(trunk, frame(mac(5), BCAST, vlan=20))
    t, real = trace_and_send(engine, access, frame(mac(1), mac(5)))
    assert t.drop is None and predicted(t) == real == Counter({(trunk.iface, 10): 1})


def test_same_port_drop(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.send(a, frame(mac(1), BCAST))
    t, real = trace_and_send(engine, a, frame(mac(2), mac(1)))
    assert t.drop == "same_port" and t.outputs == [] and not real


def test_active_backup_bond(engine):
    h = engine.add_port()
    bond = engine.add_port(bond_mode="active-backup", members=2)
    m0, m1 = engine.members(bond.port)
    engine.dp.set_active(bond.port, m1.iface)
    engine.send(m1, frame(mac(50), BCAST))              # learned behind the bond
    t, real = trace_and_send(engine, h, frame(mac(1), mac(50)))
    assert predicted(t) == real == Counter({(m1.iface, None): 1})
    assert t.outputs[0].port == bond.port
    # the backup member does not admit
    t, real = trace_and_send(engine, m0, frame(mac(51), BCAST))
    assert t.drop == "bond" and not real
    assert (lib.VS_TRACE_BOND_ADMIT, 0, lib.VS_BOND_ACTIVE_BACKUP, m1.iface) in t.steps
    # failover: the trace follows
    engine.dp.set_active(bond.port, m0.iface)
    t, real = trace_and_send(engine, h, frame(mac(1), mac(50)))
    assert predicted(t) == real == Counter({(m0.iface, None): 1})


def test_balance_slb_bond_member_choice(engine):
    h = engine.add_port()
    bond = engine.add_port(bond_mode="balance-slb", members=3)
    members = engine.members(bond.port)
    for b in range(256):
        engine.dp.set_slb_bucket(bond.port, b, members[b % 3].iface)
    engine.dp.set_active(bond.port, members[0].iface)
    chosen = set()
    for i in range(12):
        t, real = trace_and_send(engine, h, frame(mac(100 + i), BCAST))
        assert predicted(t) == real and len(t.outputs) == 1
        chosen.add(t.outputs[0].iface)
    assert len(chosen) > 1


def test_bond_member_down_is_the_drop_of_its_only_output(engine):
    h = engine.add_port()
    bond = engine.add_port(bond_mode="active-backup", members=2)
    m0, m1 = engine.members(bond.port)
    engine.dp.set_active(bond.port, m0.iface)
    engine.send(m0, frame(mac(50), BCAST))
    engine.dp.set_active(bond.port, None)
    t, real = trace_and_send(engine, h, frame(mac(1), mac(50)))
    assert t.drop == "no_member" and not real


def test_group_source_is_not_learned(engine):
    a, b = engine.add_port(), engine.add_port()
    t, real = trace_and_send(engine, a, frame("01:00:5e:00:00:01", BCAST))
    assert (lib.VS_TRACE_NO_LEARN, 1, 0, 0) in t.steps and predicted(t) == real


def test_static_entry_is_not_moved(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.dp.fdb_add_static(engine.br, b.port, 0, mac(7))
    t, _ = trace_and_send(engine, a, frame(mac(7), BCAST))
    assert (lib.VS_TRACE_LEARN, a.port, 0, -2) in t.steps
    t, real = trace_and_send(engine, a, frame(mac(1), mac(7)))
    assert (lib.VS_TRACE_FDB_HIT, b.port, 0, 1) in t.steps and predicted(t) == real


def test_mirrors_are_outputs_of_the_trace(engine):
    a, b, m = engine.add_port(), engine.add_port(), engine.add_port()
    engine.dp.mirror_set(engine.br, 3, select_all=False, src=[a.port], dst=[], vlans=[],
                         output_port=m.port, output_vlan=None)
    t, real = trace_and_send(engine, a, frame(mac(1), BCAST))
    assert predicted(t) == real == Counter({(b.iface, None): 1, (m.iface, None): 1})
    assert [(o.port, o.mirror) for o in t.outputs] == [(b.port, None), (m.port, 3)]
    assert (lib.VS_TRACE_MIRROR, 3, 1, 0) in t.steps
    assert engine.dp.mirror_stats(engine.br, 3) == (1, len(frame(mac(1), BCAST)))  # the real one
    # what the mirror port sends is dropped
    t, real = trace_and_send(engine, m, frame(mac(9), BCAST))
    assert t.drop == "mirror_port" and not real


def test_claimed_lacpdu_goes_to_the_control_plane(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.dp.set_claim(a.iface, CLAIM_LACP)
    pdu = bytes(Ether(src=mac(1), dst="01:80:c2:00:00:02", type=0x8809)) + bytes([1, 1]) + bytes(108)
    t, real = trace_and_send(engine, a, pdu)
    assert (lib.VS_TRACE_CLAIMED, CLAIM_LACP, 0, 0) in t.steps
    assert t.drop is None and t.outputs == [] and not real
    assert engine.dp.upcall_stats().queued["slow_proto"] == 1   # only the real one


def test_runt_and_unknown_interface(engine):
    a, b = engine.add_port(), engine.add_port()
    t, real = trace_and_send(engine, a, b"\x01\x02")
    assert t.drop == "runt" and not real
    with pytest.raises(Exception) as e:
        engine.dp.trace(999, frame(mac(1), BCAST))
    assert e.value.code == "ENOENT"


def test_trace_agrees_with_forwarding_on_arbitrary_frames():
    """Property: for any frame on any port of a bridge with access, trunk,
    native, bond and mirror ports, the trace names exactly the interfaces
    the frame then really leaves by (and changes nothing)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from .test_fuzz import build_engine, ethernet, tcp_ip

    e, ports = build_engine()
    spy = e.add_port()
    e.dp.mirror_set(e.br, 0, select_all=False, src=[ports[1].port], dst=[ports[3].port],
                    vlans=[], output_port=spy.port, output_vlan=None)
    ports.append(spy)
    try:
        @settings(max_examples=300, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(st.tuples(st.integers(0, len(ports) - 1),
                                  st.one_of(ethernet(), tcp_ip())), min_size=1, max_size=8))
        def run(batch):
            for which, raw in batch:
                tp = ports[which]
                t, real = trace_and_send(e, tp, raw)
                assert Counter(o.iface for o in t.outputs) == \
                    Counter(k[0] for k in real.elements()), (t, real)
        run()
    finally:
        e.close()


def test_trace_works_out_what_learning_would_change():
    """Learning is not done, yet its effect on the frame's own lookup is:
    a frame to its own source, and a full table whose eviction removes the
    very destination."""
    from .harness import Engine
    engine = Engine(mac_table_size=2)
    try:
        a, b, c = engine.add_port(), engine.add_port(), engine.add_port()
        t, real = trace_and_send(engine, a, frame(mac(1), mac(1)))
        assert t.drop == "same_port" and not real
        engine.send(b, frame(mac(2), BCAST))        # the table: mac(1)@a, mac(2)@b
        t, real = trace_and_send(engine, c, frame(mac(3), mac(1)))
        assert any(s[0] == lib.VS_TRACE_EVICT and s[1] == a.port for s in t.steps)
        assert (lib.VS_TRACE_FLOOD, 1, 0, 0) in t.steps
        assert predicted(t) == real == Counter({(a.iface, None): 1, (b.iface, None): 1})
    finally:
        engine.close()


def test_trace_accounts_no_flow_and_samples_nothing(engine):
    """Flow accounting and sFlow sampling run in the same pass: a trace
    must touch neither (the real frame afterwards does)."""
    a, b = engine.add_port(), engine.add_port()
    engine.dp.flow_configure(engine.br, 0, max_flows=64, sampling=1, idle_timeout_ms=15000,
                             active_timeout_ms=60000, ipv4_only=True)
    engine.dp.flow_set_sampling(engine.br, 1, 128)
    f = frame(mac(1), BCAST)
    engine.dp.trace(a.iface, f)
    assert engine.dp.flow_stats(engine.br, 0)["packets"] == 0
    assert engine.dp.flow_sampling_stats(engine.br)["seen"] == 0
    assert engine.dp.upcall_stats().queued["sample"] == 0
    engine.send(a, f)
    assert engine.dp.flow_stats(engine.br, 0)["packets"] == 1
    assert engine.dp.upcall_stats().queued["sample"] == 1
