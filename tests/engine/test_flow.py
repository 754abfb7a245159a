"""The flow cache (csrc/flow.c) through cffi: keys, outputs, expiry, the
active timeout, the cap, sampling, and hostile IP headers counted right.

Frames are injected on one port; the fake clock of the harness makes every
timeout exact.  Cache 0 is keyed as NetFlow v5 (IPv4 only), cache 1 as IPFIX
(everything, with VLAN and MACs)."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from vswitch._engine import lib
from vswitch.errors import VswitchError

from .frames import BCAST, mac
from .harness import Engine

NF, IPFIX = 0, 1
FLOOD, DROP = lib.VS_FLOW_OUT_FLOOD, lib.VS_FLOW_OUT_DROP
A, B, C = mac(1), mac(2), mac(3)


def enable(e: Engine, cache: int = NF, max_flows: int = 1024, sampling: int = 1,
           idle: int = 15, active: int = 60) -> None:
    e.dp.flow_configure(e.br, cache, max_flows=max_flows, sampling=sampling,
                        idle_timeout_ms=idle * 1000, active_timeout_ms=active * 1000,
                        ipv4_only=cache == NF)


@pytest.fixture
def three(engine):
    """Three ports numbered 1, 2, 3 (ofport); A learned on 1, B on 2."""
    ports = [engine.add_port() for _ in range(3)]
    for n, p in enumerate(ports, 1):
        engine.dp.set_ofport(p.port, n)
    engine.send(ports[0], bytes(Ether(src=A, dst=BCAST) / ARP()))
    engine.send(ports[1], bytes(Ether(src=B, dst=BCAST) / ARP()))
    for p in ports:
        engine.recv_all(p)
    return ports


def flush(e: Engine, cache: int = NF):
    return e.dp.flow_collect(e.br, cache, flush=True)


def ip4(pkt) -> bytes:
    return bytes(Ether(src=A, dst=B) / pkt)


def test_off_by_default_and_errors(engine, three):
    with pytest.raises(VswitchError) as ex:
        engine.dp.flow_collect(engine.br, NF)
    assert ex.value.code == "ENOTCONN"
    with pytest.raises(VswitchError):
        engine.dp.flow_configure(engine.br, 2, max_flows=1, sampling=1, idle_timeout_ms=1,
                                 active_timeout_ms=0, ipv4_only=True)
    with pytest.raises(VswitchError):
        engine.dp.flow_configure(engine.br, NF, max_flows=0, sampling=1, idle_timeout_ms=1,
                                 active_timeout_ms=0, ipv4_only=True)
    with pytest.raises(VswitchError):
        engine.dp.set_ofport(three[0].port, 65533)


def test_keys_counts_and_outputs(engine, three):
    enable(engine)
    p1, p2, p3 = three
    for _ in range(3):
        engine.send(p1, ip4(IP(src="10.1.0.1", dst="10.1.0.2") / ICMP(type=8, code=0)))
    for _ in range(2):
        engine.send(p1, ip4(IP(src="10.1.0.1", dst="10.1.0.2", tos=0x10) / ICMP()))
    engine.send(p1, ip4(IP(src="10.1.0.1", dst="10.1.0.2") / TCP(sport=1234, dport=80,
                                                                 flags="S")))
    engine.send(p1, ip4(IP(src="10.1.0.1", dst="10.1.0.2") / TCP(sport=1234, dport=80,
                                                                 flags="A") / (b"x" * 100)))
    engine.send(p2, bytes(Ether(src=B, dst=A) / IP(src="10.1.0.2", dst="10.1.0.1") /
                          ICMP(type=0)))
    # unknown destination: flooded; to its own port: dropped
    engine.send(p1, bytes(Ether(src=A, dst=C) / IP(src="10.1.0.1", dst="10.1.0.3") /
                          UDP(sport=5, dport=6) / b"abc"))
    engine.send(p2, bytes(Ether(src=B, dst=B) / IP(src="10.1.0.2", dst="10.1.0.2") /
                          UDP(sport=7, dport=8)))
    engine.send(p1, bytes(Ether(src=A, dst=BCAST) / ARP()))  # not IPv4: not NetFlow's
    recs = {(r.in_port, r.proto, r.src_port, r.dst_port, r.tos): r for r in flush(engine)}
    assert len(recs) == 6, recs
    echo = recs[(1, 1, 0, 8 << 8, 0)]
    assert (echo.packets, echo.bytes, echo.out_port) == (3, 3 * 28, 2)
    assert echo.src == bytes([10, 1, 0, 1]) and echo.dst == bytes([10, 1, 0, 2])
    assert echo.end_reason == lib.VS_FLOW_END_FORCED
    assert recs[(1, 1, 0, 8 << 8, 0x10)].packets == 2
    tcp = recs[(1, 6, 1234, 80, 0)]
    assert (tcp.packets, tcp.bytes, tcp.tcp_flags) == (2, 40 + 140, 0x12)
    assert recs[(2, 1, 0, 0, 0)].out_port == 1
    assert recs[(1, 17, 5, 6, 0)].out_port == FLOOD
    assert recs[(1, 17, 5, 6, 0)].bytes == 20 + 8 + 3   # IP bytes, not the padded frame
    assert recs[(2, 17, 7, 8, 0)].out_port == DROP
    st_ = engine.dp.flow_stats(engine.br, NF)
    assert st_["skipped"] == 1 and st_["flows"] == 0 and st_["flushed"] == 6
    assert st_["packets"] == 10


def test_ipfix_cache_has_ipv6_vlan_and_l2(engine):
    p1 = engine.add_port()
    engine.dp.set_vlan(p1.port, "trunk", None, [])
    p2 = engine.add_port()
    engine.dp.set_ofport(p1.port, 7)
    enable(engine, IPFIX)
    engine.send(p1, bytes(Ether(src=A, dst=B) / Dot1Q(vlan=42) /
                          IPv6(src="fd00::1", dst="fd00::2", tc=0x20) / UDP(sport=9, dport=10)))
    engine.send(p1, bytes(Ether(src=A, dst=B) / ARP()))
    recs = sorted(flush(engine, IPFIX), key=lambda r: r.ethertype)
    assert [r.ethertype for r in recs] == [0x0806, 0x86dd]
    arp, v6 = recs
    assert v6.vlan == 42 and v6.src == bytes.fromhex("fd00" + "00" * 13 + "01")
    assert (v6.src_port, v6.dst_port, v6.proto, v6.tos) == (9, 10, 17, 0x20)
    assert v6.bytes == 48 and v6.in_port == 7 and v6.out_port == FLOOD
    assert v6.src_mac == bytes.fromhex(A.replace(":", ""))
    assert arp.src == b"" and arp.vlan == 0 and arp.packets == 1
    assert p2  # the flood went somewhere


def test_idle_and_active_timeouts(engine, three):
    enable(engine, idle=10, active=30)
    p1 = three[0]
    udp = ip4(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=1, dport=2))
    engine.send(p1, udp)
    engine.advance(9)
    assert engine.dp.flow_collect(engine.br, NF) == []
    engine.advance(1)
    (r,) = engine.dp.flow_collect(engine.br, NF)
    assert r.end_reason == lib.VS_FLOW_END_IDLE and r.packets == 1
    assert r.last_ms - r.first_ms == 0
    assert engine.dp.flow_stats(engine.br, NF)["flows"] == 0
    # a flow that never goes idle is cut every 30 s, counts restarting
    sent = 0
    for _ in range(35):
        engine.send(p1, udp)
        sent += 1
        engine.advance(1)
        if sent == 30:
            (r,) = engine.dp.flow_collect(engine.br, NF)
            assert r.end_reason == lib.VS_FLOW_END_ACTIVE and r.packets == 30
            assert r.last_ms - r.first_ms == 29_000
    (r,) = flush(engine)
    assert r.packets == 5
    st_ = engine.dp.flow_stats(engine.br, NF)
    assert (st_["expired_idle"], st_["expired_active"], st_["flushed"]) == (1, 1, 1)


def test_cap_counts_what_does_not_fit(engine, three):
    enable(engine, max_flows=4)
    for port in range(10):
        for _ in range(2):
            engine.send(three[0], ip4(IP(src="10.1.0.1", dst="10.1.0.2") /
                                      UDP(sport=port, dport=9)))
    st_ = engine.dp.flow_stats(engine.br, NF)
    assert (st_["flows"], st_["no_room"], st_["packets"]) == (4, 12, 8)
    assert sum(r.packets for r in flush(engine)) == 8


def test_many_flows_insert_and_remove(engine, three):
    """The table stays right through inserts, idle removals and reinserts
    (backward-shift deletion with the dense entry array)."""
    enable(engine, max_flows=3000, idle=5)
    def burst(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            engine.send(three[0], ip4(IP(src="10.1.0.1", dst=f"10.2.{i >> 8}.{i & 255}") /
                                      UDP(sport=i, dport=1)))
    burst(0, 2000)
    engine.advance(3)
    burst(1000, 3000)         # 1000 seen again, 1000 new
    engine.advance(3)         # the first 1000 are idle now
    first = engine.dp.flow_collect(engine.br, NF)
    assert sorted(r.src_port for r in first) == list(range(1000))
    burst(0, 500)             # back as new flows
    recs = flush(engine)
    by_port = {r.src_port: r.packets for r in recs}
    assert len(recs) == 2500 and set(by_port) == set(range(3000)) - set(range(500, 1000))
    assert all(by_port[i] == (2 if 1000 <= i < 2000 else 1) for i in by_port)


def test_sampling_one_in_n(engine, three):
    enable(engine, IPFIX, sampling=10)
    for i in range(100):
        engine.send(three[0], ip4(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=i % 2,
                                                                           dport=1)))
    st_ = engine.dp.flow_stats(engine.br, IPFIX)
    assert (st_["packets"], st_["unsampled"]) == (10, 90)
    assert sum(r.packets for r in flush(engine, IPFIX)) == 10


def test_gso_frame_counts_as_its_segments(engine):
    p1 = engine.add_port(vnet=True)
    engine.add_port(vnet=True)
    engine.dp.set_ofport(p1.port, 1)
    enable(engine)
    payload = b"y" * 4000
    frame = ip4(IP(src="10.1.0.1", dst="10.1.0.2") / TCP(sport=1, dport=2, flags="PA") /
                payload)
    # NEEDS_CSUM, TCPv4, hdr_len, gso_size 1000, csum_start 34, csum_offset 16
    vnet = struct.pack("<BBHHHH", 1, 1, 54, 1000, 34, 16)
    engine.dp.inject(p1.iface, vnet + frame)
    (r,) = flush(engine)
    assert (r.packets, r.bytes) == (4, 4000 + 4 * 40)


def hostile(ip: bytes) -> bytes:
    return bytes.fromhex(B.replace(":", "") + A.replace(":", "")) + b"\x08\x00" + ip


@pytest.mark.sanitize
def test_hostile_headers_counted(engine, three):
    enable(engine)
    p1 = three[0]
    good = bytes(IP(src="10.1.0.1", dst="10.1.0.2", options=b"\x01" * 8) /
                 TCP(sport=11, dport=22))
    engine.send(p1, hostile(good))                       # options: ports still found
    engine.send(p1, hostile(good[:30]))                  # TCP header cut
    engine.send(p1, hostile(good[:12]))                  # IP header cut
    lie = bytearray(bytes(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=3, dport=4)))
    lie[2:4] = (60000).to_bytes(2, "big")                # length far beyond the frame
    engine.send(p1, hostile(bytes(lie)))
    first = bytes(IP(src="10.1.0.1", dst="10.1.0.2", flags="MF", id=5) / UDP(sport=5,
                                                                            dport=6) / (b"z" * 8))
    later = bytes(IP(src="10.1.0.1", dst="10.1.0.2", frag=2, id=5, proto=17) / (b"w" * 8))
    engine.send(p1, hostile(first))
    engine.send(p1, hostile(later))
    engine.send(p1, hostile(b"\x45"))                    # one byte of IP
    recs = flush(engine)
    st_ = engine.dp.flow_stats(engine.br, NF)
    assert (st_["truncated"], st_["fragments"], st_["bad_length"]) == (3, 1, 2)
    keyed = {(r.proto, r.src_port, r.dst_port): r for r in recs}
    assert keyed[(6, 11, 22)].bytes == len(good)
    assert keyed[(6, 0, 0)].bytes == 30                  # what there was of it
    assert keyed[(17, 3, 4)].bytes == 28
    assert keyed[(17, 5, 6)].packets == 1 and keyed[(17, 0, 0)].packets == 1
    assert sum(r.packets for r in recs) == 7
    # every frame was still forwarded (accounting never drops)
    assert engine.stats(p1).rx_forwarded == 1 + 7


raw_ip = st.binary(max_size=120)


@pytest.mark.sanitize
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from([b"\x08\x00", b"\x86\xdd", b"\x81\x00"]), raw_ip),
                min_size=1, max_size=20), st.integers(1, 4))
def test_fuzz_flow_cache(frames, max_flows):
    """Arbitrary IP bytes into both caches: nothing crashes, nothing is read
    out of bounds (sanitizer run), and every frame is one packet accounted,
    skipped or without room."""
    e = Engine()
    try:
        p1, _ = e.add_port(), e.add_port()
        enable(e, NF, max_flows=max_flows)
        enable(e, IPFIX, max_flows=max_flows)
        sent = 0
        for ethertype, body in frames:
            e.send(p1, bytes.fromhex("0200000000020200000000 01".replace(" ", "")) +
                   ethertype + body)
            sent += 1
        forwarded = e.stats(p1).rx_forwarded
        for cache in (NF, IPFIX):
            st_ = e.dp.flow_stats(e.br, cache)
            recs = flush(e, cache)
            assert st_["packets"] == sum(r.packets for r in recs)
            assert st_["packets"] + st_["skipped"] + st_["no_room"] == forwarded
        assert forwarded <= sent
    finally:
        e.close()


def drain_samples(e: Engine):
    from vswitch.upcall import UpcallChannel
    from vswitch.datapath import UPCALL_SAMPLE
    got = []
    ch = UpcallChannel(e.dp)
    ch.register(UPCALL_SAMPLE, got.append)
    while ch.drain():
        pass
    return got


def test_sflow_samples_every_frame_at_rate_1(engine, three):
    engine.dp.flow_set_sampling(engine.br, 1, 64)
    p1, p2, _ = three
    for i in range(5):
        engine.send(p1, ip4(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=i, dport=9) /
                            (b"p" * 200)))
    engine.send(p2, bytes(Ether(src=B, dst=C) / IP() / UDP()))      # flooded
    got = drain_samples(engine)
    assert len(got) == 6
    first = got[0]
    assert first.args[:2] == (1, 2) and first.orig_len == 14 + 20 + 8 + 200
    assert len(first.frame) == 64 and first.frame[:6] == bytes.fromhex(B.replace(":", ""))
    assert [u.args[2] for u in got[:5]] == [1, 2, 3, 4, 5]        # the input port's pool
    assert got[5].args[:3] == (2, FLOOD, 1)
    assert engine.dp.flow_sampling_stats(engine.br) == {"seen": 6, "sampled": 6,
                                                         "dropped": 0}
    engine.dp.flow_set_sampling(engine.br, 0, 0)
    engine.send(p1, ip4(IP() / UDP()))
    assert drain_samples(engine) == []


def test_sflow_sampling_one_in_n_on_average(engine, three):
    engine.dp.flow_set_sampling(engine.br, 10, 128)
    frame = ip4(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=1, dport=9))
    for _ in range(5000):
        engine.send(three[0], frame)
    got = drain_samples(engine)
    st_ = engine.dp.flow_sampling_stats(engine.br)
    assert st_["seen"] == 5000 and st_["sampled"] == len(got)
    assert 350 <= len(got) <= 650, len(got)     # mean 500; random skips of 1..19
    assert got[-1].args[2] <= 5000
