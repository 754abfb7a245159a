"""The engine's per-frame costs, item by item."""
from __future__ import annotations

import random
import socket

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from vswitch._engine import ffi, lib
from vswitch.datapath import IFACE_FD, Datapath


def mac_of(i: int) -> str:
    return "02:%02x:%02x:%02x:%02x:%02x" % ((i >> 32) & 0xff, (i >> 24) & 0xff,
                                            (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)


@pytest.fixture
def dp():
    d = Datapath()
    socks = []

    def add_port(br, **kw):
        p = d.add_port(br)
        if kw.get("bond"):
            d.set_bond_mode(p, kw["bond"])
        ifaces = []
        for _ in range(kw.get("members", 1)):
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            socks.append(b)
            ifaces.append(d.add_iface(p, a.detach(), IFACE_FD, 0, 1500))
        return p, ifaces
    d.add_test_port = add_port
    yield d
    d.close()
    for s in socks:
        s.close()


@pytest.mark.parametrize("tagged", [False, True], ids=["untagged", "qinq"])
def test_parse(benchmark, per_item, tagged):
    pkt = Ether() / (Dot1Q(vlan=10) / Dot1Q(vlan=20) if tagged else IP()) / UDP()
    raw = bytes(pkt)
    n = 1_000_000
    per_item(f"parse ({'two tags' if tagged else 'untagged'})", benchmark,
             lambda: lib.vs_bench_parse(raw, len(raw), n), n)


@pytest.mark.parametrize("size", [1_000, 65_536, 1_000_000], ids=["1k", "64k", "1M"])
def test_fdb_lookup(benchmark, per_item, dp, size):
    br = dp.add_bridge(size, 300)
    port, _ = dp.add_test_port(br)
    keys = list(range(0x020000000000, 0x020000000000 + size))
    ckeys = ffi.new("uint64_t[]", keys)
    assert lib.vs_fdb_bench_learn(dp._dp, br, port, ckeys, size) == size
    random.seed(1)
    random.shuffle(keys)                 # look up in an order the table has not seen
    n = max(size, 1_000_000)
    lookups = ffi.new("uint64_t[]", (keys * (n // size + 1))[:n])
    assert lib.vs_fdb_bench_lookup(dp._dp, br, lookups, n) == n
    per_item(f"fdb lookup, {size} entries", benchmark,
             lambda: lib.vs_fdb_bench_lookup(dp._dp, br, lookups, n), n, rounds=10)


@pytest.mark.parametrize("size", [1_000, 65_536, 1_000_000], ids=["1k", "64k", "1M"])
def test_fdb_learn_refresh(benchmark, per_item, dp, size):
    """Learning a source already in the table (the common case)."""
    br = dp.add_bridge(size, 300)
    port, _ = dp.add_test_port(br)
    keys = list(range(0x020000000000, 0x020000000000 + size))
    random.seed(2)
    random.shuffle(keys)
    ckeys = ffi.new("uint64_t[]", keys)
    lib.vs_fdb_bench_learn(dp._dp, br, port, ckeys, size)
    per_item(f"fdb learn (known MAC), {size} entries", benchmark,
             lambda: lib.vs_fdb_bench_learn(dp._dp, br, port, ckeys, size), size, rounds=10)


@pytest.mark.parametrize("size", [1_000, 65_536, 1_000_000], ids=["1k", "64k", "1M"])
def test_fdb_learn_new(benchmark, per_item, dp, size):
    """Learning new MACs into a full table: every learn evicts one entry."""
    br = dp.add_bridge(size, 300)
    port, _ = dp.add_test_port(br)
    fill = ffi.new("uint64_t[]", list(range(0x020000000000, 0x020000000000 + size)))
    lib.vs_fdb_bench_learn(dp._dp, br, port, fill, size)
    batches = [ffi.new("uint64_t[]", list(range(0x030000000000 + r * size,
                                                0x030000000000 + (r + 1) * size)))
               for r in range(2)]
    state = {"r": 0}

    def learn_new():
        lib.vs_fdb_bench_learn(dp._dp, br, port, batches[state["r"] % 2], size)
        state["r"] += 1
    per_item(f"fdb learn (new MAC, evicting), {size} entries", benchmark, learn_new, size,
             rounds=6)


def test_bond_member_choice(benchmark, per_item, dp):
    br = dp.add_bridge(1024, 300)
    port, members = dp.add_test_port(br, bond="balance-slb", members=3)
    for b in range(256):
        dp.set_slb_bucket(port, b, members[b % 3])
    n = 1_000_000
    keys = ffi.new("uint64_t[]", [(10 << 48) | (0x020000000000 + i) for i in range(4096)] *
                   (n // 4096 + 1))
    per_item("bond member choice (balance-slb)", benchmark,
             lambda: lib.vs_bench_bond_select(dp._dp, port, keys, n), n)


@pytest.mark.parametrize("case", ["known unicast", "flood to 3", "vlan push",
                                  "known unicast, netflow", "known unicast, netflow+ipfix"])
def test_forwarding_decision(benchmark, per_item, dp, case):
    """The whole path for a batch of 32 frames: parse, checks, VLAN, learn,
    look up, choose the output and build its iovec; writes skipped."""
    br = dp.add_bridge(8192, 300)
    a, (ia,) = dp.add_test_port(br)
    b, _ = dp.add_test_port(br)
    if case == "flood to 3":
        dp.add_test_port(br), dp.add_test_port(br)
    if case == "vlan push":
        dp.set_vlan(a, "access", 10, ())
    lib.vs_dp_set_dry_run(dp._dp, 1)
    vlan = 10 if case == "vlan push" else 0
    dp.fdb_add_static(br, b, vlan, "02:ff:00:00:00:01")
    dst = "ff:ff:ff:ff:ff:ff" if case == "flood to 3" else "02:ff:00:00:00:01"
    if "netflow" in case:   # flow accounting on: 32 flows (one per source port)
        for cache in range(2 if "ipfix" in case else 1):
            dp.flow_configure(br, cache, max_flows=65536, sampling=1, idle_timeout_ms=15000,
                              active_timeout_ms=600000, ipv4_only=cache == 0)
    frames = [bytes(Ether(src=mac_of(i + 1), dst=dst) / IP() / UDP(sport=1000 + i) /
                    (b"\0" * 18)) for i in range(32)]
    blob = b"".join(frames)
    lens = ffi.new("uint32_t[]", [len(f) for f in frames])
    rounds = 20_000
    per_item(f"forwarding decision, {case}", benchmark,
             lambda: lib.vs_bench_forward(dp._dp, ia, blob, lens, 32, rounds), 32 * rounds)
