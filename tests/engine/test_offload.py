"""Offloads: GSO frames and partial checksums pass untouched to ports that
speak the virtio-net header; outputs that cannot take them get MSS-sized
segments and finished checksums, built in C."""
from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import checksum

from .frames import mac

NEEDS_CSUM, DATA_VALID = 1, 2
GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4 = 1, 4, 5


def vnet(flags=0, gso=0, hdr_len=0, gso_size=0, start=0, off=0) -> bytes:
    return struct.pack("<BBHHHH", flags, gso, hdr_len, gso_size, start, off)


def partial(pkt, l4, proto_layer) -> bytes:
    """The frame as a sender with checksum offload hands it over: the L4
    checksum field holds only the pseudo-header sum."""
    raw = bytearray(bytes(pkt))
    ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
    l4_len = len(raw) - l4
    if isinstance(ip, IP):
        pseudo = struct.pack("!4s4sBBH", bytes(map(int, ip.src.split("."))),
                             bytes(map(int, ip.dst.split("."))), 0, ip.proto, l4_len)
    else:
        import socket
        pseudo = (socket.inet_pton(socket.AF_INET6, ip.src) +
                  socket.inet_pton(socket.AF_INET6, ip.dst) +
                  struct.pack("!IxxxB", l4_len, ip.nh))
    s = sum(struct.unpack(f"!{len(pseudo) // 2}H", pseudo))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    off = 16 if proto_layer == "tcp" else 6
    raw[l4 + off:l4 + off + 2] = struct.pack("!H", s)
    return bytes(raw)


def tcp_gso(v6=False, payload=5000, flags="PA", vlan=None):
    l3 = IPv6(src="fd00::1", dst="fd00::2") if v6 else IP(src="10.0.0.1", dst="10.0.0.2", id=100)
    eth = Ether(src=mac(1), dst=mac(2))
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    pkt = eth / l3 / TCP(sport=1000, dport=2000, seq=1_000_000, flags=flags) / (b"x" * payload)
    l4 = len(eth) + (40 if v6 else 20)
    return pkt, l4, partial(pkt, l4, "tcp")


def valid_l4(seg: Ether) -> bool:
    layer = seg[TCP] if TCP in seg else seg[UDP]
    got = layer.chksum
    redo = seg.copy()
    del redo[type(layer)].chksum
    return Ether(bytes(redo))[type(layer)].chksum == got


@pytest.mark.parametrize("v6", [False, True])
def test_tcp_gso_frame_is_segmented_for_a_plain_output(engine, v6):
    src = engine.add_port(vnet=True)
    out = engine.add_port(vnet=False)
    pkt, l4, raw = tcp_gso(v6=v6)
    mss = 1440 if v6 else 1460       # what fits a 1500-byte MTU
    hdr = vnet(NEEDS_CSUM, GSO_TCPV6 if v6 else GSO_TCPV4, l4 + 20, mss, l4, 16)
    engine.dp.inject(src.iface, hdr + raw)
    segs = [Ether(f) for f in engine.recv_all(out)]
    assert [len(s[TCP].payload) for s in segs] == [mss, mss, mss, 5000 - 3 * mss]
    assert [s[TCP].seq for s in segs] == [1_000_000 + mss * i for i in range(4)]
    assert [str(s[TCP].flags) for s in segs] == ["A", "A", "A", "PA"]
    assert b"".join(bytes(s[TCP].payload) for s in segs) == b"x" * 5000
    for s in segs:
        assert valid_l4(s)
        if not v6:
            assert s[IP].len == 20 + 20 + len(s[TCP].payload)
            assert checksum(bytes(s[IP])[:20]) == 0
        else:
            assert s[IPv6].plen == 20 + len(s[TCP].payload)
    if not v6:
        assert [s[IP].id for s in segs] == [100, 101, 102, 103]
    assert engine.stats(out).tx_packets == 4


def test_gso_frame_passes_whole_to_a_vnet_output(engine):
    src = engine.add_port(vnet=True)
    out = engine.add_port(vnet=True)
    _pkt, l4, raw = tcp_gso()
    hdr = vnet(NEEDS_CSUM, GSO_TCPV4, l4 + 20, 1448, l4, 16)
    engine.dp.inject(src.iface, hdr + raw)
    got = out.sock.recv(70000)
    assert got == hdr + raw


def test_segments_get_the_output_vlan_tag(engine):
    src = engine.add_port(vnet=True)
    out = engine.add_port(vnet=False)
    engine.dp.set_vlan(src.port, "access", 30, ())
    _pkt, l4, raw = tcp_gso(payload=3000)
    engine.dp.inject(src.iface, vnet(NEEDS_CSUM, GSO_TCPV4, 0, 1448, l4, 16) + raw)
    segs = [Ether(f) for f in engine.recv_all(out)]
    assert len(segs) == 3 and all(s[Dot1Q].vlan == 30 for s in segs)
    assert all(valid_l4(s) for s in segs)


def test_tagged_gso_input_is_segmented_and_untagged_for_an_access_port(engine):
    src = engine.add_port(vnet=True)
    out = engine.add_port(vnet=False)
    engine.dp.set_vlan(out.port, "access", 10, ())
    _pkt, l4, raw = tcp_gso(payload=2000, vlan=10)
    engine.dp.inject(src.iface, vnet(NEEDS_CSUM, GSO_TCPV4, 0, 1448, l4, 16) + raw)
    segs = [Ether(f) for f in engine.recv_all(out)]
    assert len(segs) == 2 and all(Dot1Q not in s for s in segs)
    assert all(valid_l4(s) for s in segs)


def test_udp_segmentation_offload(engine):
    src = engine.add_port(vnet=True)
    out = engine.add_port(vnet=False)
    pkt = Ether(src=mac(1), dst=mac(2)) / IP(src="10.0.0.1", dst="10.0.0.2") / \
        UDP(sport=5, dport=6) / (b"u" * 3000)
    raw = partial(pkt, 34, "udp")
    engine.dp.inject(src.iface, vnet(NEEDS_CSUM, GSO_UDP_L4, 42, 1200, 34, 6) + raw)
    segs = [Ether(f) for f in engine.recv_all(out)]
    assert [len(s[UDP].payload) for s in segs] == [1200, 1200, 600]
    assert all(s[UDP].len == 8 + len(s[UDP].payload) and valid_l4(s) for s in segs)


def test_partial_checksum_is_finished_for_a_plain_output_only(engine):
    src = engine.add_port(vnet=True)
    plain = engine.add_port(vnet=False)
    offl = engine.add_port(vnet=True)
    pkt = Ether(src=mac(1), dst="ff:ff:ff:ff:ff:ff") / IP(src="10.0.0.1", dst="10.0.0.2") / \
        TCP(sport=1, dport=2) / (b"p" * 100)
    raw = partial(pkt, 34, "tcp")
    engine.dp.inject(src.iface, vnet(NEEDS_CSUM, 0, 0, 0, 34, 16) + raw)
    (p,) = engine.recv_all(plain)
    assert p == bytes(pkt)                      # the checksum scapy computes
    got = offl.sock.recv(70000)
    flags = got[0]
    assert got[10:] == bytes(pkt) and flags == DATA_VALID


def test_port_with_offloads_off_gets_segments(engine):
    from vswitch.datapath import IFACE_FD, VNET_HDR
    from vswitch._engine import lib
    import socket
    src = engine.add_port(vnet=True)
    port = engine.dp.add_port(engine.br)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setblocking(False)
    engine.dp.add_iface(port, ours.detach(), IFACE_FD, VNET_HDR | lib.VS_IFACE_F_NO_OFFLOAD, 1500)
    _pkt, l4, raw = tcp_gso(payload=3000)
    engine.dp.inject(src.iface, vnet(NEEDS_CSUM, GSO_TCPV4, 0, 1448, l4, 16) + raw)
    frames = []
    while True:
        try:
            frames.append(theirs.recv(70000))
        except BlockingIOError:
            break
    assert len(frames) == 3 and all(f[1] == 0 for f in frames)   # no GSO type
    theirs.close()


@pytest.mark.parametrize("bad", ["ethertype", "short_ip", "proto", "mss_huge"])
def test_unsegmentable_frames_are_counted_not_crashed_on(engine, bad):
    src = engine.add_port(vnet=True)
    out = engine.add_port(vnet=False)
    _pkt, l4, raw = tcp_gso(payload=3000)
    gso, size = GSO_TCPV4, 1448
    if bad == "ethertype":
        raw = raw[:12] + b"\x88\xb5" + raw[14:]
    elif bad == "short_ip":
        raw = raw[:40]
    elif bad == "proto":
        gso = GSO_TCPV6
    elif bad == "mss_huge":
        size = 65535
    engine.dp.inject(src.iface, vnet(0 if bad == "short_ip" else NEEDS_CSUM, gso, 0, size,
                                     14 if bad == "short_ip" else l4, 16 if bad != "short_ip" else 2) + raw)
    assert engine.recv_all(out) == []
    dropped = sum(engine.stats(out).drops.values()) + sum(engine.stats(src).drops.values())
    assert dropped == 1
    if bad == "mss_huge":       # one segment, too big for the output's MTU
        assert engine.stats(out).drops["oversize"] == 1
