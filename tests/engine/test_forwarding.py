"""Learning, flooding and forwarding through the real engine code path."""
from scapy.layers.l2 import Ether

from .frames import BCAST, frame, mac


def test_unknown_unicast_floods_to_every_other_port(engine):
    a, b, c = engine.add_port(), engine.add_port(), engine.add_port()
    f = frame(mac(1), mac(2))
    engine.send(a, f)
    assert engine.recv_all(a) == []
    assert engine.recv_all(b) == [f]
    assert engine.recv_all(c) == [f]


def test_broadcast_and_multicast_flood(engine):
    a, b, c = engine.add_port(), engine.add_port(), engine.add_port()
    for dst in (BCAST, "01:00:5e:00:00:01", "33:33:00:00:00:01"):
        f = frame(mac(1), dst)
        engine.send(b, f)
        assert engine.recv_all(a) == [f]
        assert engine.recv_all(c) == [f]
        assert engine.recv_all(b) == []


def test_learned_unicast_goes_to_one_port(engine):
    a, b, c = engine.add_port(), engine.add_port(), engine.add_port()
    engine.send(a, frame(mac(1), BCAST))
    engine.recv_all(b), engine.recv_all(c)
    f = frame(mac(2), mac(1))
    engine.send(b, f)
    assert engine.recv_all(a) == [f]
    assert engine.recv_all(c) == []
    # and the reply now goes straight back, mac(2) having been learned on b
    g = frame(mac(1), mac(2))
    engine.send(a, g)
    assert engine.recv_all(b) == [g]
    assert engine.recv_all(c) == []


def test_destination_on_input_port_is_dropped_and_counted(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.send(a, frame(mac(1), BCAST))
    engine.recv_all(b)
    engine.send(a, frame(mac(3), mac(1)))
    assert engine.recv_all(b) == []
    assert engine.stats(a).drops["same_port"] == 1


def test_mac_moves_to_the_port_it_is_seen_on(engine):
    a, b, c = engine.add_port(), engine.add_port(), engine.add_port()
    engine.send(a, frame(mac(1), BCAST))
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) == a.port
    engine.send(c, frame(mac(1), BCAST))
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) == c.port
    assert engine.dp.fdb_stats(engine.br).moved == 1
    for p in (a, b, c):
        engine.recv_all(p)
    engine.send(b, frame(mac(2), mac(1)))
    assert engine.recv_all(c) and not engine.recv_all(a)


def test_group_source_is_forwarded_but_never_learned(engine):
    a, b = engine.add_port(), engine.add_port()
    for src in ("01:00:5e:00:00:09", BCAST, "00:00:00:00:00:00"):
        f = frame(src, mac(7))
        engine.send(a, f)
        assert engine.recv_all(b) == [f]
    assert engine.dp.fdb_dump(engine.br) == []


def test_counters_count_packets_and_bytes(engine):
    a, b = engine.add_port(), engine.add_port()
    f = frame(mac(1), BCAST, size=100)
    for _ in range(3):
        engine.send(a, f)
    sa, sb = engine.stats(a), engine.stats(b)
    assert (sa.rx_packets, sa.rx_bytes) == (3, 300)
    assert (sb.tx_packets, sb.tx_bytes) == (3, 300)
    assert sum(sa.drops.values()) == 0


def test_link_local_control_frames_are_not_forwarded(engine):
    a, b = engine.add_port(), engine.add_port()
    for last in (0x00, 0x02, 0x0e):  # STP, LACP, LLDP
        engine.send(a, frame(mac(1), f"01:80:c2:00:00:{last:02x}"))
    assert engine.recv_all(b) == []
    assert engine.stats(a).drops["reserved_dst"] == 3


def test_two_bridges_do_not_share_frames_or_tables(engine):
    br2 = engine.dp.add_bridge(8192, 300)
    a, b = engine.add_port(), engine.add_port()
    x, y = engine.add_port(br=br2), engine.add_port(br=br2)
    engine.send(a, frame(mac(1), BCAST))
    assert engine.recv_all(b) and not engine.recv_all(x) and not engine.recv_all(y)
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) == a.port
    assert engine.dp.fdb_lookup(br2, 0, mac(1)) is None


def test_deleting_a_port_forgets_its_entries_and_stops_its_output(engine):
    a, b, c = engine.add_port(), engine.add_port(), engine.add_port()
    engine.send(b, frame(mac(2), BCAST))
    engine.dp.del_port(b.port)
    assert engine.dp.fdb_lookup(engine.br, 0, mac(2)) is None
    engine.recv_all(a), engine.recv_all(c)
    engine.send(a, frame(mac(1), mac(2)))
    assert engine.recv_all(c)  # flooded again: mac(2) is unknown now


def test_frames_pass_unchanged_bit_for_bit(engine):
    a, b = engine.add_port(), engine.add_port()
    f = bytes(Ether(src=mac(1), dst=mac(2), type=0x88B5) / (b"\xa5" * 1000))
    engine.send(a, f)
    assert engine.recv_all(b) == [f]
