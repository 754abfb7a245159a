"""The upcall channel (csrc/upcall.c): frames from the engine to the control
plane, in order, bounded, with losses counted; claims of protocol frames;
capture copies as on the wire."""
import os
import select
import time

import pytest
from scapy.layers.l2 import Dot1Q, Ether

from vswitch._engine import ffi, lib
from vswitch.datapath import (CLAIM_LACP, UPCALL_CAPTURE, UPCALL_RX, UPCALL_SLOW_PROTO,
                              UPCALL_TX)
from vswitch.upcall import BUF_SIZE, UpcallChannel

from .frames import BCAST, frame, mac

LACP_DST = "01:80:c2:00:00:02"


def lacpdu(src: str) -> bytes:
    """A slow-protocol frame as LACP sends it (subtype 1, version 1), padded."""
    eth = Ether(src=src, dst=LACP_DST, type=0x8809)
    raw = bytes(eth) + bytes([1, 1]) + bytes(108)
    return raw


def drain(dp):
    """Every waiting upcall as (meta fields, frame bytes)."""
    meta = ffi.new("struct vs_upcall *")
    buf = ffi.new("uint8_t[]", BUF_SIZE)
    out = []
    while dp.upcall_recv(meta, buf, BUF_SIZE):
        out.append(({"reason": meta.reason, "bridge": meta.bridge, "port": meta.port,
                     "iface": meta.iface, "direction": meta.direction,
                     "orig_len": meta.orig_len, "len": meta.len, "time_ns": meta.time_ns},
                    ffi.buffer(buf, meta.len)[:]))
    return out


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_nothing_waits_and_the_fd_is_quiet_without_producers(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.send(a, frame(mac(1), BCAST))
    assert drain(engine.dp) == []
    assert not readable(engine.dp.upcall_fd())
    st = engine.dp.upcall_stats()
    assert st.pending == 0 and st.capacity_bytes == lib.VS_UPCALL_QUEUE_BYTES
    assert sum(st.queued.values()) == 0 and sum(st.dropped.values()) == 0


def test_unclaimed_lacpdu_is_dropped_as_reserved(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.send(a, lacpdu(mac(1)))
    assert engine.recv_all(b) == []
    assert engine.stats(a).drops["reserved_dst"] == 1
    assert drain(engine.dp) == []


def test_claimed_lacpdu_goes_up_not_across(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.dp.set_claim(a.iface, CLAIM_LACP)
    pdu = lacpdu(mac(1))
    engine.send(a, pdu)
    assert engine.recv_all(b) == []
    st = engine.stats(a)
    assert st.rx_packets == 1 and st.rx_upcall == 1 and sum(st.drops.values()) == 0
    assert st.rx_forwarded == 0
    ups = drain(engine.dp)
    assert len(ups) == 1
    meta, data = ups[0]
    assert data == pdu
    assert (meta["reason"], meta["port"], meta["iface"], meta["direction"], meta["bridge"]) == \
        (UPCALL_SLOW_PROTO, a.port, a.iface, UPCALL_RX, engine.br)
    assert meta["orig_len"] == meta["len"] == len(pdu)
    assert abs(meta["time_ns"] / 1e9 - time.time()) < 60
    # the claim is only for LACP: other link-local frames and other slow
    # protocols (ethertype 0x8809 to another address) are still dropped
    engine.send(a, bytes(Ether(src=mac(1), dst="01:80:c2:00:00:00", type=0x8809)) + bytes(46))
    engine.send(a, bytes(Ether(src=mac(1), dst=LACP_DST, type=0x88cc)) + bytes(46))
    assert engine.stats(a).drops["reserved_dst"] == 2
    assert drain(engine.dp) == []
    # and claims can be withdrawn
    engine.dp.set_claim(a.iface, 0)
    engine.send(a, pdu)
    assert engine.stats(a).drops["reserved_dst"] == 3 and drain(engine.dp) == []


def test_claim_works_on_any_bond_member_whatever_its_state(engine):
    """LACP decides which members carry traffic, so it must hear every
    member: the disabled one and the non-active one too."""
    h = engine.add_port()
    bond = engine.add_port(bond_mode="active-backup", members=2)
    m0, m1 = engine.members(bond.port)
    engine.dp.set_active(bond.port, m0.iface)
    engine.dp.set_enabled(m1.iface, False)
    for m in (m0, m1):
        engine.dp.set_claim(m.iface, CLAIM_LACP)
        engine.send(m, lacpdu(mac(9)))
    ups = drain(engine.dp)
    assert [u[0]["iface"] for u in ups] == [m0.iface, m1.iface]
    assert engine.stats(m1).drops["bond"] == 0 and engine.recv_all(h) == []


def test_claim_rejects_unknown_bits_and_interfaces(engine):
    a = engine.add_port()
    with pytest.raises(Exception) as e:
        engine.dp.set_claim(a.iface, 0x80)
    assert e.value.code == "EINVAL"
    with pytest.raises(Exception) as e:
        engine.dp.set_claim(999, CLAIM_LACP)
    assert e.value.code == "ENOENT"


def test_upcalls_come_out_in_order_and_the_fd_follows_the_queue(engine):
    a, b = engine.add_port(), engine.add_port()
    fd = engine.dp.upcall_fd()
    engine.dp.set_claim(a.iface, CLAIM_LACP)
    assert not readable(fd)
    pdus = [lacpdu(mac(i)) for i in range(1, 200)]
    for p in pdus:
        engine.send(a, p)
    assert readable(fd)
    got = drain(engine.dp)
    assert [d for _, d in got] == pdus
    assert not readable(fd)       # emptied: the fd is reset
    st = engine.dp.upcall_stats()
    assert st.queued["slow_proto"] == 199 and st.pending == 0 and st.pending_bytes == 0


def test_capture_copies_both_directions_as_on_the_wire(engine):
    """A trunk port's frames keep their tags; an access port's leave
    untagged; each copy says which way it went."""
    trunk, access = engine.add_port(), engine.add_port()
    engine.dp.set_vlan(access.port, "access", 10, [])
    engine.dp.set_capture(access.iface, 65535)
    engine.dp.set_capture(trunk.iface, 65535)
    tagged = frame(mac(1), BCAST, vlan=10)
    engine.send(trunk, tagged)
    out = engine.recv_all(access)
    assert len(out) == 1 and Dot1Q not in Ether(out[0])
    ups = drain(engine.dp)
    assert [(u["iface"], u["direction"], u["reason"]) for u, _ in ups] == \
        [(trunk.iface, UPCALL_RX, UPCALL_CAPTURE), (access.iface, UPCALL_TX, UPCALL_CAPTURE)]
    assert ups[0][1] == tagged and ups[1][1] == out[0]
    # the reply: untagged in, tagged out
    reply = frame(mac(2), mac(1))
    engine.send(access, reply)
    ups = drain(engine.dp)
    assert [(u["iface"], u["direction"]) for u, _ in ups] == \
        [(access.iface, UPCALL_RX), (trunk.iface, UPCALL_TX)]
    assert ups[0][1] == reply
    assert ups[1][1] == engine.recv_all(trunk)[0] and Ether(ups[1][1])[Dot1Q].vlan == 10


def test_capture_sees_frames_that_are_then_dropped_and_frames_sent_from_python(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.dp.set_capture(a.iface, 65535)
    runt = b"\x01\x02\x03"
    engine.send(a, runt)
    engine.dp.send(a.iface, frame(mac(5), BCAST))
    ups = drain(engine.dp)
    assert [(u["direction"], d) for u, d in ups] == \
        [(UPCALL_RX, runt), (UPCALL_TX, frame(mac(5), BCAST))]


def test_capture_of_vnet_ports_leaves_the_header_out_and_keeps_gso_frames_whole(engine):
    """A 60 KB TCP segment handed over with a virtio-net header reaches a
    port that takes offloads as one frame: capture shows that one frame, as
    tcpdump in the namespace would."""
    from scapy.layers.inet import IP, TCP
    a, b = engine.add_port(vnet=True), engine.add_port(vnet=True)
    engine.dp.set_capture(a.iface, 65535)
    engine.dp.set_capture(b.iface, 65535)
    seg = bytes(Ether(src=mac(1), dst=BCAST) / IP(src="10.0.0.1", dst="10.0.0.2") /
                TCP(sport=1, dport=2) / (b"x" * 60000))
    import struct
    hdr = struct.pack("<BBHHHH", 1, 1, 54, 1448, 34, 16)   # NEEDS_CSUM, TCPv4
    engine.dp.inject(a.iface, hdr + seg)
    assert len(engine.recv_all(b)) == 1
    ups = drain(engine.dp)
    assert [(u["direction"], u["orig_len"], d) for u, d in ups] == \
        [(UPCALL_RX, len(seg), seg), (UPCALL_TX, len(seg), seg)]


def test_capture_snap_length_and_turning_it_off(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.dp.set_capture(a.iface, 20)
    f = frame(mac(1), BCAST, size=300)
    engine.send(a, f)
    (meta, data), = drain(engine.dp)
    assert meta["orig_len"] == 300 and meta["len"] == 20 and data == f[:20]
    engine.dp.set_capture(a.iface, 0)
    engine.send(a, f)
    assert drain(engine.dp) == []


def test_overflow_is_counted_per_reason_and_protocol_frames_keep_room(engine):
    """Capture may fill three quarters of the ring; after that its copies
    are dropped and counted, while claimed protocol frames still fit."""
    a, b = engine.add_port(mtu=65000), engine.add_port(mtu=65000)
    engine.dp.set_capture(a.iface, 65535)
    engine.dp.set_claim(a.iface, CLAIM_LACP)
    big = frame(mac(1), BCAST, size=60000)
    ring = lib.VS_UPCALL_QUEUE_BYTES
    n = ring // 60000 + 5
    for _ in range(n):
        engine.send(a, big)
        engine.recv_all(b)
    st = engine.dp.upcall_stats()
    assert st.queued["capture"] + st.dropped["capture"] == n
    assert st.dropped["capture"] > 0
    assert st.pending_bytes <= ring * 3 // 4
    # top it up with small copies until even those no longer fit...
    small = frame(mac(1), BCAST, size=100)
    for _ in range(1000):
        dropped = engine.dp.upcall_stats().dropped["capture"]
        engine.send(a, small)
        engine.recv_all(b)
        if engine.dp.upcall_stats().dropped["capture"] > dropped:
            break
    else:
        pytest.fail("capture never reached its limit")
    st = engine.dp.upcall_stats()
    # ...and protocol frames still go up
    engine.dp.set_capture(a.iface, 0)
    for i in range(3):
        engine.send(a, lacpdu(mac(i + 1)))
    st2 = engine.dp.upcall_stats()
    assert st2.queued["slow_proto"] == 3 and st2.dropped["slow_proto"] == 0
    assert st2.pending == st.pending + 3
    ups = drain(engine.dp)
    assert len(ups) == st2.pending
    assert [u["reason"] for u, _ in ups][-3:] == [UPCALL_SLOW_PROTO] * 3
    assert all(d in (big, small) for u, d in ups if u["reason"] == UPCALL_CAPTURE)
    assert engine.dp.upcall_stats().pending == 0


def test_ring_wraps_around_without_losing_or_mangling_a_frame(engine):
    """Records of varied sizes, drained as they come, many times around
    the ring: every one comes back whole and in order."""
    a, b = engine.add_port(mtu=65000), engine.add_port(mtu=65000)
    engine.dp.set_capture(a.iface, 65535)
    sent, got = [], []
    total = 0
    i = 0
    while total < 3 * lib.VS_UPCALL_QUEUE_BYTES:
        size = (60, 1514, 9000, 40000, 333)[i % 5]
        f = frame(mac(1 + i % 200), BCAST, size=size)
        engine.send(a, f)
        engine.recv_all(b)
        sent.append(f)
        total += size
        i += 1
        if i % 40 == 0:
            got += [d for _, d in drain(engine.dp)]
    got += [d for _, d in drain(engine.dp)]
    assert engine.dp.upcall_stats().dropped["capture"] == 0
    assert got == sent


def test_a_small_buffer_gets_the_start_of_the_frame(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.dp.set_capture(a.iface, 65535)
    f = frame(mac(1), BCAST, size=200)
    engine.send(a, f)
    meta = ffi.new("struct vs_upcall *")
    buf = ffi.new("uint8_t[]", 64)
    assert engine.dp.upcall_recv(meta, buf, 64)
    assert meta.orig_len == 200 and meta.len == 64 and ffi.buffer(buf, 64)[:] == f[:64]
    assert not engine.dp.upcall_recv(meta, buf, 64)


def test_channel_dispatches_by_reason_in_batches(engine):
    a, b = engine.add_port(), engine.add_port()
    ch = UpcallChannel(engine.dp)
    seen = []
    ch.register(UPCALL_SLOW_PROTO, seen.append)
    engine.dp.set_claim(a.iface, CLAIM_LACP)
    engine.dp.set_capture(b.iface, 65535)
    for i in range(10):
        engine.send(a, lacpdu(mac(i + 1)))
    engine.send(b, frame(mac(50), BCAST))     # a capture nobody handles
    assert ch.drain(limit=4) == 4
    assert readable(engine.dp.upcall_fd())     # the rest still waits
    assert ch.drain() == 7
    assert len(seen) == 10 and ch.unhandled == 1
    assert [u.frame for u in seen] == [lacpdu(mac(i + 1)) for i in range(10)]
    assert all(u.port == a.port and u.direction == UPCALL_RX for u in seen)
    # one handler per reason; a failing handler does not stop the others
    with pytest.raises(Exception):
        ch.register(UPCALL_SLOW_PROTO, lambda u: None)

    def boom(u):
        raise RuntimeError("handler bug")
    ch.register(UPCALL_CAPTURE, boom)
    engine.send(b, frame(mac(50), BCAST))
    engine.send(a, lacpdu(mac(1)))
    assert ch.drain() == 2 and ch.handler_errors == 1 and len(seen) == 11


def test_upcalls_from_the_forwarding_thread_wake_a_reader(engine):
    """With the thread running, a frame written to a port's socket ends up
    in the queue and makes the fd readable."""
    a, b = engine.add_port(), engine.add_port()
    engine.dp.set_clock(None)
    engine.dp.set_claim(a.iface, CLAIM_LACP)
    engine.dp.start()
    try:
        pdu = lacpdu(mac(3))
        a.sock.send(pdu)
        r, _, _ = select.select([engine.dp.upcall_fd()], [], [], 10)
        assert r
        assert [d for _, d in drain(engine.dp)] == [pdu]
    finally:
        engine.dp.stop()
    assert os.fstat(engine.dp.upcall_fd())
