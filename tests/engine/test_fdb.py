"""The MAC learning table: aging on the test clock, fair eviction, static
entries, resizing and flushing."""
import pytest

from vswitch.errors import VswitchError

from .frames import BCAST, frame, mac
from .harness import Engine


@pytest.fixture
def small():
    e = Engine(mac_table_size=10, mac_aging=300)
    yield e
    e.close()


def learn(engine, port, *ids):
    for i in ids:
        engine.send(port, frame(mac(i), BCAST))


def entries(engine):
    return {(e.mac, e.vlan): e for e in engine.dp.fdb_dump(engine.br)}


def test_entries_age_out_after_mac_aging_seconds(engine):
    a, _ = engine.add_port(), engine.add_port()
    learn(engine, a, 1)
    engine.advance(299)
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) == a.port
    assert entries(engine)[(mac(1), 0)].age == 299
    engine.advance(1)
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) is None
    assert engine.dp.fdb_stats(engine.br).expired == 1


def test_traffic_refreshes_an_entry(engine):
    a, _ = engine.add_port(), engine.add_port()
    learn(engine, a, 1)
    engine.advance(200)
    learn(engine, a, 1)
    engine.advance(200)
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) == a.port
    engine.advance(100)
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) is None


def test_changing_mac_aging_applies_to_existing_entries(engine):
    a, _ = engine.add_port(), engine.add_port()
    learn(engine, a, 1)
    engine.dp.set_mac_aging(engine.br, 10)
    engine.advance(9)
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) == a.port
    engine.advance(1)
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) is None


def test_full_table_evicts_lru_entry_of_the_port_with_most_entries(small):
    a, b, c = small.add_port(), small.add_port(), small.add_port()
    learn(small, a, 1, 2, 3, 4, 5, 6)          # a holds 6
    small.advance(1)
    learn(small, b, 11, 12, 13)                 # b holds 3
    learn(small, a, 1)                          # refresh 1: 2 is now a's LRU
    learn(small, c, 21)                         # 10 entries: full
    assert small.dp.fdb_stats(small.br).entries == 10
    learn(small, c, 22)                         # evicts from a, its LRU: mac(2)
    e = entries(small)
    assert (mac(2), 0) not in e
    assert all((mac(i), 0) in e for i in (1, 3, 4, 5, 6, 11, 12, 13, 21, 22))
    assert small.dp.fdb_stats(small.br).evicted == 1
    # a flood of new MACs from one port takes its entries from the biggest
    # port each time, never wiping out a small port
    learn(small, c, *range(100, 140))
    e = entries(small)
    assert len(e) == 10
    per_port = {}
    for entry in e.values():
        per_port[entry.port] = per_port.get(entry.port, 0) + 1
    assert per_port[b.port] == 3 and per_port[c.port] >= 3


def test_static_entry_never_ages_moves_or_gets_evicted(small):
    a, b = small.add_port(), small.add_port()
    small.dp.fdb_add_static(small.br, a.port, 0, mac(1))
    learn(small, b, 1)                          # seen elsewhere: stays on a
    assert small.dp.fdb_lookup(small.br, 0, mac(1)) == a.port
    learn(small, b, *range(10, 40))            # churn a full table
    assert small.dp.fdb_lookup(small.br, 0, mac(1)) == a.port
    small.advance(100000)
    assert small.dp.fdb_lookup(small.br, 0, mac(1)) == a.port
    e = entries(small)[(mac(1), 0)]
    assert e.is_static
    # forwarding honours it
    small.recv_all(a)
    small.send(b, frame(mac(50), mac(1)))
    assert len(small.recv_all(a)) == 1


def test_static_entry_replaces_a_learned_one_and_survives_flush(engine):
    a, b = engine.add_port(), engine.add_port()
    learn(engine, a, 1, 2)
    engine.dp.fdb_add_static(engine.br, b.port, 0, mac(1))
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) == b.port
    assert engine.dp.fdb_flush(engine.br) == 1
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) == b.port
    assert engine.dp.fdb_lookup(engine.br, 0, mac(2)) is None
    engine.dp.fdb_del(engine.br, 0, mac(1))
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) is None
    with pytest.raises(VswitchError) as err:
        engine.dp.fdb_del(engine.br, 0, mac(1))
    assert err.value.code == "ENOENT"


def test_static_entries_fill_the_table_then_learning_stops(small):
    a, b = small.add_port(), small.add_port()
    for i in range(10):
        small.dp.fdb_add_static(small.br, a.port, 0, mac(i))
    with pytest.raises(VswitchError) as err:
        small.dp.fdb_add_static(small.br, a.port, 0, mac(99))
    assert err.value.code == "ENOSPC"
    learn(small, b, 50)
    assert small.dp.fdb_lookup(small.br, 0, mac(50)) is None
    assert small.dp.fdb_stats(small.br).entries == 10


def test_flush_of_one_port(engine):
    a, b = engine.add_port(), engine.add_port()
    learn(engine, a, 1)
    learn(engine, b, 2)
    assert engine.dp.fdb_flush(engine.br, a.port) == 1
    assert engine.dp.fdb_lookup(engine.br, 0, mac(1)) is None
    assert engine.dp.fdb_lookup(engine.br, 0, mac(2)) == b.port


def test_shrinking_the_table_evicts_fairly_and_keeps_lru_order(engine):
    a, b = engine.add_port(), engine.add_port()
    learn(engine, a, *range(1, 9))     # 8 on a, oldest first
    engine.advance(1)
    learn(engine, b, 20, 21)
    engine.dp.set_mac_table_size(engine.br, 6)
    e = entries(engine)
    assert len(e) == 6
    assert {k[0] for k in e} == {mac(i) for i in (5, 6, 7, 8)} | {mac(20), mac(21)}
    # growing keeps everything
    engine.dp.set_mac_table_size(engine.br, 100000)
    assert len(entries(engine)) == 6
    assert engine.dp.fdb_stats(engine.br).max_entries == 100000


def test_resize_below_static_count_is_refused_and_changes_nothing(engine):
    a, b = engine.add_port(), engine.add_port()
    for i in range(5):
        engine.dp.fdb_add_static(engine.br, a.port, 0, mac(i))
    learn(engine, b, 50)
    with pytest.raises(VswitchError):
        engine.dp.set_mac_table_size(engine.br, 4)
    assert len(entries(engine)) == 6
    assert engine.dp.fdb_stats(engine.br).max_entries == 8192


def test_large_table_learns_and_finds_everything(engine):
    """Many entries through the bench entry points: probing stays correct
    across wrap-around and backward-shift deletions."""
    a, _ = engine.add_port(), engine.add_port()
    engine.dp.set_mac_table_size(engine.br, 5000)
    from vswitch._engine import ffi, lib
    keys = ffi.new("uint64_t[]", [(7 << 48) | (0x020000000000 + i) for i in range(20000)])
    lib.vs_fdb_bench_learn(engine.dp._dp, engine.br, a.port, keys, 20000)
    assert engine.dp.fdb_stats(engine.br).entries == 5000
    # the last 5000 learned are the ones kept
    assert lib.vs_fdb_bench_lookup(engine.dp._dp, engine.br, keys + 15000, 5000) == 5000
    assert lib.vs_fdb_bench_lookup(engine.dp._dp, engine.br, keys, 15000) == 0
