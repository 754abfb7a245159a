"""VXLAN tunnel interfaces, driven through cffi with real UDP sockets on
loopback: the engine's tunnel socket is bound to 127.0.0.1 on a random
port, and "remotes" are test sockets bound to other loopback addresses on
the same port.  Frames go in on a socketpair port (inject) or as datagrams
from a remote; they come out as datagrams at the remotes (checked byte by
byte, checksums included) or on the socketpair."""
from __future__ import annotations

import random
import socket
import struct
import time

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import checksum

from .frames import BCAST, mac
from .harness import Engine
from .test_offload import DATA_VALID, GSO_TCPV4, NEEDS_CSUM, tcp_gso, valid_l4, vnet

LOCAL = "127.0.0.1"
VNI = 4242


def vxlan_hdr(vni: int = VNI, flags: int = 0x08, reserved: bytes = b"\0\0\0",
              last: int = 0) -> bytes:
    return bytes([flags]) + reserved + vni.to_bytes(3, "big") + bytes([last])


class Remote:
    """A peer's end of the underlay: a UDP socket on LOCAL's port at ip."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip = ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.settimeout(5)
        self.port = port

    def send(self, payload: bytes) -> None:
        self.sock.sendto(payload, (LOCAL, self.port))

    def recv(self, timeout: float = 5) -> tuple[bytes, tuple[str, int]]:
        self.sock.settimeout(timeout)
        return self.sock.recvfrom(70000)

    def recv_all(self, settle: float = 0.3) -> list[bytes]:
        out = []
        self.sock.settimeout(settle)
        while True:
            try:
                out.append(self.sock.recv(70000))
            except socket.timeout:
                return out

    def close(self) -> None:
        self.sock.close()


class Sniffer:
    """Copies of every UDP datagram the host receives (a raw socket only
    reads), to check outer headers: source port, DF, TTL, checksum."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        self.sock.settimeout(0.3)

    def packets(self, dport: int, dst: str) -> list[IP]:
        out = []
        while True:
            try:
                raw = self.sock.recv(70000)
            except socket.timeout:
                return out
            pkt = IP(raw)
            if UDP in pkt and pkt[UDP].dport == dport and pkt.dst == dst:
                out.append(pkt)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tun():
    """An engine with a local port (socketpair) and a tunnel port whose
    remotes are 127.0.0.2 and 127.0.0.3; the forwarding thread runs, since
    the tunnel's socket is read by it."""
    e = Engine()
    port = random.randint(20000, 60000)
    remotes = [Remote("127.0.0.2", port), Remote("127.0.0.3", port)]
    local = e.add_port()
    tport = e.dp.add_port(e.br)
    tif = e.dp.add_tunnel(tport, VNI, [r.ip for r in remotes], LOCAL, port, mtu=1450)
    e.dp.set_clock(None)
    e.dp.start()
    e.tif, e.tport, e.udp_port, e.remotes, e.local = tif, tport, port, remotes, local
    yield e
    e.close()
    for r in remotes:
        r.close()


def wait_recv(tp, timeout: float = 5, raw: bool = False, n: int = 1) -> list[bytes]:
    """What came out of a socketpair port: waits (up to timeout) for n
    frames, then takes whatever else is there; raw keeps the virtio-net
    header.  (The forwarding thread writes them: they come when it runs.)"""
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        tp.sock.settimeout(max(0.01, deadline - time.monotonic()))
        out.append(tp.sock.recv(70000))
    tp.sock.setblocking(False)
    while True:
        try:
            out.append(tp.sock.recv(70000))
        except BlockingIOError:
            return [f[10:] if tp.vnet and not raw else f for f in out]


def test_flood_goes_to_every_remote_encapsulated(tun):
    f = bytes(Ether(src=mac(1), dst=BCAST) / ARP(psrc="10.0.0.1", pdst="10.0.0.2"))
    tun.send(tun.local, f)
    for r in tun.remotes:
        data, (src, sport) = r.recv()
        assert src == LOCAL
        assert data[:8] == vxlan_hdr() and data[8:] == f
        assert 32768 <= sport <= 60999
    s = tun.dp.iface_stats(tun.tif)
    assert s.tx_packets == 2
    per = {x.ip: x for x in tun.dp.tunnel_remote_stats(tun.tif)}
    assert per["127.0.0.2"].tx_packets == 1 and per["127.0.0.3"].tx_packets == 1


def test_outer_header_as_the_kernel_writes_it():
    """Checksum complete and right, DF clear, TTL 64, the source port a
    function of the inner flow only."""
    e = Engine()
    port = random.randint(20000, 60000)
    r = Remote("127.0.0.2", port)
    sniff = Sniffer()
    try:
        local = e.add_port()
        tport = e.dp.add_port(e.br)
        e.dp.add_tunnel(tport, VNI, ["127.0.0.2"], LOCAL, port, mtu=1450)
        flows = []
        for sport in (1000, 1000, 2000, 3000):
            f = bytes(Ether(src=mac(1), dst=mac(2)) / IP(src="10.0.0.1", dst="10.0.0.2") /
                      UDP(sport=sport, dport=53) / (b"q" * 101))
            e.send(local, f)
            flows.append(sport)
        got = sniff.packets(port, "127.0.0.2")
        assert len(got) == 4
        for p in got:
            assert p.ttl == 64 and not (p.flags & 2)
            raw = bytes(p[UDP])
            assert p[UDP].chksum != 0
            pseudo = struct.pack("!4s4sBBH", socket.inet_aton(p.src), socket.inet_aton(p.dst),
                                 0, 17, len(raw))
            assert checksum(pseudo + raw) == 0
        ports = [p[UDP].sport for p in got]
        assert ports[0] == ports[1]          # same flow, same port
        assert len(set(ports)) >= 2          # other flows spread
    finally:
        e.close()
        r.close()
        sniff.close()


def test_decapsulated_frames_are_learned_with_their_remote(tun):
    r2, r3 = tun.remotes
    f = bytes(Ether(src=mac(7), dst=BCAST) / ARP(psrc="10.0.0.7", pdst="10.0.0.1"))
    r3.send(vxlan_hdr() + f)
    assert wait_recv(tun.local) == [f]
    rows = {(e.mac, e.remote) for e in tun.dp.fdb_dump(tun.br) if e.port == tun.tport}
    assert rows == {(mac(7), "127.0.0.3")}
    # known unicast back: to 127.0.0.3 only
    reply = bytes(Ether(src=mac(1), dst=mac(7)) / ARP(op=2, psrc="10.0.0.1", pdst="10.0.0.7"))
    tun.send(tun.local, reply)
    data, _ = r3.recv()
    assert data[8:] == reply
    assert r2.recv_all() == []
    per = {x.ip: x for x in tun.dp.tunnel_remote_stats(tun.tif)}
    assert per["127.0.0.3"].rx_packets == 1 and per["127.0.0.2"].rx_packets == 0
    # the station moves to the other remote: the entry follows it
    r2.send(vxlan_hdr() + f)
    wait_recv(tun.local)
    assert [e.remote for e in tun.dp.fdb_dump(tun.br) if e.mac == mac(7)] == ["127.0.0.2"]


def test_nothing_goes_back_into_the_tunnel(tun):
    r2, r3 = tun.remotes
    bcast = bytes(Ether(src=mac(8), dst=BCAST) / ARP(psrc="10.0.0.8", pdst="10.0.0.1"))
    r2.send(vxlan_hdr() + bcast)
    assert wait_recv(tun.local) == [bcast]
    assert r3.recv_all() == [] and r2.recv_all() == []
    # unicast from one remote to a MAC behind another: same port, dropped
    r3.send(vxlan_hdr() + bytes(Ether(src=mac(9), dst=BCAST) / ARP()))
    wait_recv(tun.local)
    r2.send(vxlan_hdr() + bytes(Ether(src=mac(8), dst=mac(9)) / ARP()))
    time.sleep(0.3)
    assert r3.recv_all() == []
    assert tun.dp.iface_stats(tun.tif).drops["same_port"] == 1


def test_bad_datagrams_are_counted_by_reason(tun):
    r2 = tun.remotes[0]
    stranger = Remote("127.0.0.9", tun.udp_port)
    try:
        ok = bytes(Ether(src=mac(5), dst=BCAST) / ARP())
        stranger.send(vxlan_hdr() + ok)              # unknown remote
        r2.send(vxlan_hdr(vni=VNI + 1) + ok)         # wrong VNI
        r2.send(vxlan_hdr(flags=0x0c) + ok)          # another flag
        r2.send(vxlan_hdr(flags=0x00) + ok)          # no I flag
        r2.send(vxlan_hdr(reserved=b"\0\1\0") + ok)  # reserved bits
        r2.send(vxlan_hdr(last=1) + ok)              # reserved last byte
        r2.send(b"\x08\0\0")                         # cut
        r2.send(vxlan_hdr() + ok[:10])               # inner runt
        r2.send(vxlan_hdr() + ok)                    # and one good frame
        assert wait_recv(tun.local) == [ok]
        time.sleep(0.2)
        s = tun.dp.iface_stats(tun.tif)
        d = s.drops
        assert (d["unknown_remote"], d["wrong_vni"], d["bad_vxlan"], d["vxlan_cut"],
                d["runt"]) == (1, 1, 4, 1, 1)
        assert s.rx_packets == 9 and s.rx_forwarded == 1
    finally:
        stranger.close()


@pytest.mark.parametrize("udp_gso", [False, True])
def test_gso_segments_fit_the_inner_mtu_with_valid_checksums(tun, udp_gso):
    if udp_gso:   # the same, sent with UDP_SEGMENT: the kernel cuts the datagrams
        tun.dp.del_iface(tun.tif)
        tun.tif = tun.dp.add_tunnel(tun.tport, VNI, [r.ip for r in tun.remotes], LOCAL,
                                    tun.udp_port, mtu=1450, udp_gso=True)
    pkt, l4, raw = tcp_gso(payload=20000)
    tun.dp.fdb_add_static(tun.br, tun.tport, 0, mac(2))   # static: every remote
    hdr = vnet(NEEDS_CSUM, GSO_TCPV4, 54, 1448, l4, 16)
    src = tun.add_port(vnet=True)   # a TAP-like port: virtio-net header
    tun.dp.inject(src.iface, hdr + raw)
    for r in tun.remotes:
        segs = [Ether(d[8:]) for d in r.recv_all(1.0)]
        assert len(segs) == -(-20000 // (1450 - 40))
        assert all(len(bytes(s)) - 14 <= 1450 for s in segs)
        assert all(valid_l4(s) for s in segs)
        assert all(checksum(bytes(s[IP])[:20]) == 0 for s in segs)
        data = b"".join(bytes(s[TCP].payload) for s in segs)
        assert data == b"x" * 20000
        seqs = [s[TCP].seq for s in segs]
        assert seqs == [1_000_000 + i * 1410 for i in range(len(segs))]
        assert [s[IP].id for s in segs] == [100 + i for i in range(len(segs))]
    per = {x.ip: x for x in tun.dp.tunnel_remote_stats(tun.tif)}
    assert all(p.tx_packets == len(segs) and p.tx_errors == 0 for p in per.values())


def test_too_big_with_df_gets_frag_needed_back(tun):
    src = tun.add_port(mtu=9000)
    big = bytes(Ether(src=mac(1), dst=mac(2)) / IP(src="10.0.0.1", dst="10.0.0.2", flags="DF") /
                UDP(sport=5, dport=6) / (b"z" * 1600))
    tun.send(src, big)
    got = wait_recv(src)
    icmp = Ether(got[0])
    assert icmp.dst == mac(1) and icmp.src == mac(2)
    assert icmp[IP].src == "10.0.0.2" and icmp[IP].dst == "10.0.0.1"
    assert icmp[ICMP].type == 3 and icmp[ICMP].code == 4 and icmp[ICMP].nexthopmtu == 1450
    assert checksum(bytes(icmp[ICMP])) == 0 and checksum(bytes(icmp[IP])[:20]) == 0
    assert bytes(icmp[ICMP].payload)[:20] == bytes(Ether(big)[IP])[:20]
    assert tun.dp.iface_stats(tun.tif).drops["frag_needed"] == 1
    assert tun.remotes[0].recv_all() == []


def test_vlan_tag_pushed_inside_the_tunnel(tun):
    tun.dp.set_vlan(tun.tport, "trunk", None, [10])
    access = tun.add_port()
    tun.dp.set_vlan(access.port, "access", 10, [])
    f = bytes(Ether(src=mac(1), dst=BCAST) / ARP())
    tun.send(access, f)
    data, _ = tun.remotes[0].recv()
    inner = Ether(data[8:])
    assert Dot1Q in inner and inner[Dot1Q].vlan == 10
    # and popped on the way back in
    r = tun.remotes[0]
    r.send(vxlan_hdr() + bytes(Ether(src=mac(3), dst=BCAST) / Dot1Q(vlan=10) / ARP()))
    assert Dot1Q not in Ether(wait_recv(access)[0])


def test_set_remotes_keeps_counters_and_learned_macs_of_remotes_that_stay(tun):
    r2, r3 = tun.remotes
    r3.send(vxlan_hdr() + bytes(Ether(src=mac(7), dst=BCAST) / ARP()))
    r2.send(vxlan_hdr() + bytes(Ether(src=mac(6), dst=BCAST) / ARP()))
    wait_recv(tun.local)
    time.sleep(0.2)
    tun.dp.set_tunnel_remotes(tun.tif, ["127.0.0.3", "127.0.0.4"])
    rows = {e.mac: e.remote for e in tun.dp.fdb_dump(tun.br)}
    assert rows == {mac(7): "127.0.0.3"}
    per = {x.ip: x.rx_packets for x in tun.dp.tunnel_remote_stats(tun.tif)}
    assert per == {"127.0.0.3": 1, "127.0.0.4": 0}


def test_bad_tunnel_requests_are_refused():
    e = Engine()
    try:
        p = e.dp.add_port(e.br)
        port = random.randint(20000, 60000)
        from vswitch.errors import VswitchError
        with pytest.raises(VswitchError):
            e.dp.add_tunnel(p, 1 << 24, ["127.0.0.2"], LOCAL, port, 1450)
        with pytest.raises(VswitchError):
            e.dp.add_tunnel(p, 1, [], LOCAL, port, 1450)
        with pytest.raises(VswitchError):
            e.dp.add_tunnel(p, 1, ["127.0.0.2", "127.0.0.2"], LOCAL, port, 1450)
        e.dp.add_tunnel(p, 1, ["127.0.0.2"], LOCAL, port, 1450)
        with pytest.raises(VswitchError):   # a port has one tunnel
            e.dp.add_tunnel(p, 2, ["127.0.0.3"], LOCAL, port, 1450)
        q = e.dp.add_port(e.br)
        with pytest.raises(VswitchError) as err:   # same VNI and remote: ambiguous
            e.dp.add_tunnel(q, 1, ["127.0.0.2"], LOCAL, port, 1450)
        assert err.value.code == "EEXIST"
        e.dp.add_tunnel(q, 2, ["127.0.0.2"], LOCAL, port, 1450)   # shares the socket
        e.dp.del_port(p)
        e.dp.del_port(q)
        # the socket is closed with its last user: the port can be bound again
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((LOCAL, port))
        s.close()
    finally:
        e.close()


def test_partial_inner_checksum_becomes_offload_metadata(tun):
    """What a kernel peer sends over a veth: a 64 KB TCP segment whose
    checksum holds only the pseudo-header sum.  A port with the virtio-net
    header gets it whole, as GSO with the tunnel's MSS; one without gets
    segments with finished checksums."""
    pkt, l4, raw = tcp_gso(payload=20000)
    tap = tun.add_port(vnet=True)
    plain = tun.add_port()
    tun.remotes[0].send(vxlan_hdr() + raw)
    (got,) = wait_recv(tap, raw=True)
    flags, gso, hdr_len, gso_size, start, off = struct.unpack("<BBHHHH", got[:10])
    assert (flags, gso, gso_size, start, off) == (NEEDS_CSUM, GSO_TCPV4, 1410, l4, 16)
    assert got[10:] == raw
    segs = [Ether(f) for f in wait_recv(plain, n=-(-20000 // 1410))]
    assert len(segs) == -(-20000 // 1410) and all(valid_l4(s) for s in segs)
    # a small partial segment: finished for the plain port, flagged for the TAP
    pkt, l4, raw = tcp_gso(payload=100)
    tun.remotes[0].send(vxlan_hdr() + raw)
    (got,) = wait_recv(tap, raw=True)
    # (finished in place for whichever output needed it first: then valid)
    assert got[1] == 0 and (got[10:] == raw if got[0] == NEEDS_CSUM
                            else got[0] == DATA_VALID and valid_l4(Ether(got[10:])))
    (seg,) = [Ether(f) for f in wait_recv(plain)]
    assert valid_l4(seg)
    # a complete checksum is left alone
    done = bytes(pkt)
    tun.remotes[0].send(vxlan_hdr() + done)
    (got,) = wait_recv(tap, raw=True)
    assert got[:10] == bytes(10) and got[10:] == done


def test_resizing_the_table_keeps_learned_remotes(tun):
    tun.remotes[1].send(vxlan_hdr() + bytes(Ether(src=mac(7), dst=BCAST) / ARP()))
    wait_recv(tun.local)
    tun.dp.set_mac_table_size(tun.br, 100)
    assert [e.remote for e in tun.dp.fdb_dump(tun.br) if e.mac == mac(7)] == ["127.0.0.3"]


def test_too_big_without_a_way_to_say_so_is_a_counted_drop(tun):
    """df_default=true forbids outer fragments: a frame without DF that does
    not fit is dropped and counted (oversize); so is a DF packet that must
    not be answered (an ICMP error itself)."""
    src = tun.add_port(mtu=9000)
    tun.dp.del_iface(tun.tif)
    tun.tif = tun.dp.add_tunnel(tun.tport, VNI, [r.ip for r in tun.remotes], LOCAL,
                                tun.udp_port, mtu=1450, df=True)
    no_df = bytes(Ether(src=mac(1), dst=mac(2)) / IP(src="10.0.0.1", dst="10.0.0.2") /
                  UDP(sport=5, dport=6) / (b"z" * 1600))
    icmp_error = bytes(Ether(src=mac(1), dst=mac(2)) /
                       IP(src="10.0.0.1", dst="10.0.0.2", flags="DF") /
                       ICMP(type=3, code=3) / (b"e" * 1600))
    tun.send(src, no_df)
    tun.send(src, icmp_error)
    s = tun.dp.iface_stats(tun.tif)
    assert s.drops["oversize"] == 2 and s.drops["frag_needed"] == 0
    assert tun.remotes[0].recv_all() == [] and tun.remotes[1].recv_all() == []
    assert tun.recv_all(src) == []
    # a small one still goes, with DF set on the outer header
    sniff = Sniffer()
    try:
        tun.send(src, no_df[:200])
        (p,) = [x for x in sniff.packets(tun.udp_port, "127.0.0.2")]
        assert p.flags & 2
    finally:
        sniff.close()


def test_capture_on_a_tunnel_port_sees_inner_frames(tun):
    """Like tcpdump on a kernel vxlan device: the inner frame, once per frame
    whatever the number of remotes, tagged as the tunnel port sends it; and
    what arrives, decapsulated."""
    from vswitch.datapath import UPCALL_CAPTURE, UPCALL_RX, UPCALL_TX

    from .test_upcall import drain
    tun.dp.set_vlan(tun.tport, "trunk", None, [10])
    access = tun.add_port()
    tun.dp.set_vlan(access.port, "access", 10, [])
    tun.dp.set_capture(tun.tif, 65535)
    f = bytes(Ether(src=mac(1), dst=BCAST) / ARP())
    tun.send(access, f)
    sent = [d[8:] for d in (tun.remotes[0].recv()[0], tun.remotes[1].recv()[0])]
    back = bytes(Ether(src=mac(3), dst=mac(1)) / Dot1Q(vlan=10) / ARP(op=2))
    tun.remotes[1].send(vxlan_hdr() + back)
    wait_recv(access)
    ups = drain(tun.dp)
    assert [(u["iface"], u["direction"], u["reason"]) for u, _ in ups] == \
        [(tun.tif, UPCALL_TX, UPCALL_CAPTURE), (tun.tif, UPCALL_RX, UPCALL_CAPTURE)]
    assert ups[0][1] == sent[0] == sent[1] and Ether(ups[0][1])[Dot1Q].vlan == 10
    assert ups[1][1] == back
