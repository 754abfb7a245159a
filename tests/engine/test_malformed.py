"""Malformed frames are counted by reason and dropped; nothing else moves."""
import struct

from vswitch._engine import ffi, lib

from .frames import BCAST, frame, mac


def parse(raw: bytes):
    out = ffi.new("struct vs_parsed *")
    rc = lib.vs_frame_parse(raw, len(raw), out)
    return rc, out


def test_parse_recognises_up_to_two_tags():
    rc, p = parse(frame(mac(1), mac(2)))
    assert rc == 0 and p.ntags == 0 and p.ethertype == 0x0800 and p.l3_offset == 14
    rc, p = parse(frame(mac(1), mac(2), vlan=10, prio=5))
    assert (rc, p.ntags, p.outer_tpid, p.outer_tci, p.l3_offset) == (0, 1, 0x8100, (5 << 13) | 10, 18)
    rc, p = parse(frame(mac(1), mac(2), vlan=100, outer_ad=True, inner=20))
    assert (p.ntags, p.outer_tpid, p.outer_tci & 0xfff, p.inner_tpid, p.inner_tci) == \
        (2, 0x88A8, 100, 0x8100, 20)
    assert p.ethertype == 0x0800 and p.l3_offset == 22


def test_parse_rejects_truncated_headers():
    good = frame(mac(1), mac(2), vlan=100, outer_ad=True, inner=20)
    for n in (0, 1, 13):
        assert parse(good[:n])[0] == -1 - lib.VS_DROP_RUNT
    assert parse(good[:14])[0] == -1 - lib.VS_DROP_RUNT    # tag announced, missing
    assert parse(good[:17])[0] == -1 - lib.VS_DROP_RUNT
    assert parse(good[:21])[0] == -1 - lib.VS_DROP_RUNT    # second tag cut short
    assert parse(good[:22])[0] == 0


def test_short_and_truncated_frames_are_counted_as_runts(engine):
    a, b = engine.add_port(), engine.add_port()
    tagged = frame(mac(1), BCAST, vlan=5)
    for raw in (b"", b"\x01" * 5, tagged[:13], tagged[:15], tagged[:17]):
        engine.send(a, raw)
    assert engine.recv_all(b) == []
    s = engine.stats(a)
    assert s.rx_packets == 5 and s.drops["runt"] == 5
    assert engine.dp.fdb_dump(engine.br) == []


def test_oversize_frames_are_dropped(engine):
    a, b = engine.add_port(), engine.add_port(mtu=1500)
    engine.send(a, frame(mac(1), BCAST, size=1514))       # exactly the MTU
    engine.send(a, frame(mac(1), BCAST, size=1515))       # one byte over
    engine.send(a, frame(mac(1), BCAST, vlan=7, size=1518))   # tagged: 4 more allowed
    engine.send(a, frame(mac(1), BCAST, vlan=7, size=1519))
    got = engine.recv_all(b)
    assert [len(f) for f in got] == [1514, 1518]
    assert engine.stats(a).drops["oversize"] == 2


def test_egress_mtu_is_checked_per_output(engine):
    a = engine.add_port(mtu=9000)
    small = engine.add_port(mtu=1500)
    big = engine.add_port(mtu=9000)
    engine.send(a, frame(mac(1), BCAST, size=4000))
    assert engine.recv_all(small) == [] and len(engine.recv_all(big)) == 1
    assert engine.stats(small).drops["oversize"] == 1


def test_frames_larger_than_any_frame_are_refused_at_read(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.send(a, b"\x02" * 70000)
    assert engine.recv_all(b) == []
    assert engine.stats(a).drops["oversize"] == 1


def test_bad_virtio_headers_are_dropped(engine):
    a = engine.add_port(vnet=True)
    b = engine.add_port(vnet=True)
    f = frame(mac(1), BCAST)

    def hdr(flags=0, gso=0, hdr_len=0, gso_size=0, start=0, off=0):
        return struct.pack("<BBHHHH", flags, gso, hdr_len, gso_size, start, off)
    bad = [
        hdr(gso=9),                          # unknown GSO type
        hdr(gso=0x80),                       # ECN without GSO
        hdr(flags=1, start=len(f), off=0),   # checksum beyond the frame
        hdr(flags=1, start=4, off=6),        # checksum inside the Ethernet header
        hdr(gso=1, gso_size=0, flags=1, start=34, off=16),  # GSO without a size
        hdr(gso=1, gso_size=1448),           # GSO without NEEDS_CSUM
        b"\x00" * 5,                         # shorter than the header
    ]
    for h in bad:
        engine.dp.inject(a.iface, h + f if len(h) == 10 else h)
    assert engine.recv_all(b) == []
    s = engine.stats(a)
    assert s.drops["bad_vnet_hdr"] == 6 and s.drops["runt"] == 1
    engine.dp.inject(a.iface, hdr() + f)      # a plain header passes
    assert engine.recv_all(b) == [f]
