"""Property-based tests of the parser and the whole forwarding decision with
hostile input: arbitrary bytes, truncated headers, wrong lengths, stacked
tags, arbitrary virtio-net headers.  Nothing may crash, every frame must be
accounted for exactly once on its input interface, and the FDB never grows
past its size.  Run also against the sanitizer build (scripts/test-sanitize.sh),
where an out-of-bounds read or write would abort."""
from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vswitch._engine import ffi, lib

from .harness import Engine

TPIDS = [0x8100, 0x88A8, 0x0800, 0x86DD, 0x0806, 0x88B5, 0x8035]
GSO_TYPES = [0, 1, 3, 4, 5, 0x80, 0x81, 0x84, 0x85, 2, 9, 0x7F, 0xFF]

macs = st.one_of(st.binary(min_size=6, max_size=6),
                 st.sampled_from([b"\xff" * 6, b"\x01\x80\xc2\x00\x00\x00", b"\x00" * 6,
                                  b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"]))
tags = st.lists(st.tuples(st.sampled_from(TPIDS), st.integers(0, 0xFFFF)), max_size=3)


@st.composite
def ethernet(draw) -> bytes:
    frame = draw(macs) + draw(macs)
    for tpid, tci in draw(tags):
        frame += struct.pack("!HH", tpid, tci)
    frame += struct.pack("!H", draw(st.sampled_from(TPIDS)))
    frame += draw(st.binary(max_size=1600))
    cut = draw(st.one_of(st.none(), st.integers(0, len(frame))))
    return frame if cut is None else frame[:cut]


@st.composite
def tcp_ip(draw) -> bytes:
    """Plausible IPv4/IPv6 TCP or UDP frames, so that segmentation runs with
    headers that almost make sense."""
    v6 = draw(st.booleans())
    udp = draw(st.booleans())
    payload = b"x" * draw(st.integers(0, 9000))
    eth = b"\x02\x00\x00\x00\x00\x02" + draw(macs)
    for tpid, tci in draw(st.lists(st.tuples(st.sampled_from([0x8100, 0x88A8]),
                                             st.integers(0, 0xFFFF)), max_size=2)):
        eth += struct.pack("!HH", tpid, tci)
    l4 = (struct.pack("!HHHH", 1, 2, 8 + len(payload), 0) if udp else
          struct.pack("!HHIIBBHHH", 1, 2, 7, 0, draw(st.sampled_from([0x50, 0x80, 0x40, 0xF0])),
                      draw(st.integers(0, 255)), 100, 0, 0))
    proto = 17 if udp else 6
    if v6:
        l3 = struct.pack("!IHBB16s16s", 0x60000000, len(l4) + len(payload), proto, 64,
                         b"\xfd" + b"\0" * 15, b"\xfd" + b"\0" * 14 + b"\x02")
        eth += b"\x86\xdd"
    else:
        ihl = draw(st.sampled_from([5, 5, 4, 15]))
        l3 = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(l4) + len(payload), 1, 0, 64,
                         proto, 0, b"\x0a\0\0\1", b"\x0a\0\0\2")
        eth += b"\x08\x00"
    frame = eth + l3 + l4 + payload
    cut = draw(st.one_of(st.none(), st.integers(0, len(frame))))
    return frame if cut is None else frame[:cut]


vnet_headers = st.builds(
    lambda f, g, hl, gs, cs, co: struct.pack("<BBHHHH", f, g, hl, gs, cs, co),
    st.integers(0, 255), st.sampled_from(GSO_TYPES), st.integers(0, 0xFFFF),
    st.one_of(st.integers(0, 0xFFFF), st.sampled_from([1, 536, 1448, 1460])),
    st.one_of(st.integers(0, 0xFFFF), st.sampled_from([14, 18, 22, 34, 38, 54])),
    st.one_of(st.integers(0, 0xFFFF), st.sampled_from([6, 16])))

frames = st.one_of(st.binary(max_size=3000), ethernet(), tcp_ip())


@given(st.binary(max_size=200))
def test_parser_never_reads_past_the_end(raw):
    out = ffi.new("struct vs_parsed *")
    rc = lib.vs_frame_parse(raw, len(raw), out)
    if rc == 0:
        assert out.ntags <= 2
        assert out.l3_offset == 14 + 4 * out.ntags <= len(raw)
    else:
        assert rc == -1 - lib.VS_DROP_RUNT
        assert len(raw) < 14 + 4 * 2 + 2


def build_engine() -> tuple[Engine, list]:
    e = Engine(mac_table_size=64, mac_aging=300)
    ports = [e.add_port(vnet=True), e.add_port(vnet=False), e.add_port(vnet=True, mtu=9000)]
    access = e.add_port(vnet=True)
    e.dp.set_vlan(access.port, "access", 10, ())
    native = e.add_port(vnet=False)
    e.dp.set_vlan(native.port, "native-untagged", 20, (10, 30))
    bond = e.add_port(vnet=True, bond_mode="balance-slb", members=2)
    b0, b1 = e.members(bond.port)
    for b in range(256):
        e.dp.set_slb_bucket(bond.port, b, (b0, b1)[b % 2].iface)
    e.dp.set_active(bond.port, b0.iface)
    return e, ports + [access, native, b0, b1]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 6), st.one_of(st.none(), vnet_headers), frames),
                min_size=1, max_size=12))
def test_forwarding_survives_anything_and_accounts_for_every_frame(batch):
    e, ports = build_engine()
    try:
        for which, hdr, frame in batch:
            tp = ports[which]
            before = e.stats(tp)
            if tp.vnet:
                e.dp.inject(tp.iface, (hdr if hdr is not None else bytes(10)) + frame)
            else:
                e.dp.inject(tp.iface, frame)
            after = e.stats(tp)
            assert after.rx_packets == before.rx_packets + 1
            settled = (after.rx_forwarded - before.rx_forwarded) + \
                sum(after.drops.values()) - sum(before.drops.values())
            assert settled == 1, (before, after)
            for p in ports:
                for out in e.recv_all(p):
                    assert len(out) >= 14
            assert e.dp.fdb_stats(e.br).entries <= 64
    finally:
        e.close()
