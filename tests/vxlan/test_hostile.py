"""A hostile underlay: tens of thousands of random datagrams to the tunnel's
UDP port -- cut headers, wrong flags and reserved bits, other VNIs, tiny and
huge ones, random inner frames behind a valid header, and from an address
that is no remote -- while the daemon (under ASan/UBSan in the sanitizer
pass) keeps forwarding.  Every datagram its socket received is counted
once: forwarded, or dropped by reason."""
from __future__ import annotations

import sys
import textwrap

import pytest

from ..helpers import PREFIX, ns, ping_eventually, wait_for
from .underlay import Hosts, NsDaemon, kernel_vtep, subnet

pytestmark = [pytest.mark.netns, pytest.mark.sanitize]

VNI = 3003
FUZZER = textwrap.dedent("""
    import random, socket, struct, sys
    target, sources, n, vni = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])
    rnd = random.Random(12)
    socks = []
    for src in sources:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        socks.append(s)
    def hdr(flags=0x08, vni=vni, res=b"\\0\\0\\0", last=0):
        return bytes([flags]) + res + vni.to_bytes(3, "big") + bytes([last])
    def inner():
        kind = rnd.randrange(4)
        eth = bytes(rnd.randrange(256) for _ in range(12))
        if kind == 0:                       # IPv4 TCP/UDP, lengths and checksum fields lying
            ihl = rnd.choice([5, 5, 5, 0, 15])
            ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, rnd.randrange(65536), 0,
                             rnd.choice([0, 0x4000, 0x2000, 0x1fff]), 64, rnd.choice([6, 17, 1]),
                             0, bytes(4), bytes(4))
            l4 = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 60)))
            return eth + b"\\x08\\x00" + ip + l4 + bytes(rnd.randrange(0, 3000))
        if kind == 1:                       # IPv6
            ip = struct.pack("!IHBB16s16s", 0x60000000, rnd.randrange(65536), rnd.choice([6, 17]),
                             64, bytes(16), bytes(16))
            return eth + b"\\x86\\xdd" + ip + bytes(rnd.randrange(0, 2000))
        if kind == 2:                       # tags, two of them, cut anywhere
            f = eth + b"\\x81\\x00" + bytes(2) + b"\\x88\\xa8" + bytes(2) + b"\\x08\\x00" + bytes(40)
            return f[:rnd.randrange(len(f) + 1)]
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 200)))
    for i in range(n):
        k = rnd.randrange(10)
        if k == 0:
            d = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 8)))      # cut
        elif k == 1:
            d = hdr(flags=rnd.randrange(256)) + inner()
        elif k == 2:
            d = hdr(res=bytes(rnd.randrange(256) for _ in range(3)), last=rnd.randrange(256)) + inner()
        elif k == 3:
            d = hdr(vni=rnd.randrange(1 << 24)) + inner()
        elif k == 4:
            d = hdr() + bytes(rnd.randrange(60000, 65000))                      # huge
        else:
            d = hdr() + inner()
        s = socks[rnd.randrange(len(socks))]
        try:
            s.sendto(d, (target, 4789))
        except OSError:
            pass
""")


def udp_delivered(netns: str) -> int:
    """UDP datagrams the kernel handed to sockets in netns (all of them ours)."""
    lines = ns(netns, "cat", "/proc/net/snmp").stdout.splitlines()
    head, vals = [line.split() for line in lines if line.startswith("Udp:")][:2]
    return int(vals[head.index("InDatagrams")])


def test_random_datagrams_are_counted_and_forwarding_goes_on(tmp_path):
    hosts = Hosts()
    under, over = subnet(), subnet()
    u, k, kh = hosts.netns("vu"), hosts.netns("vk"), hosts.netns("vkh")
    hosts.veth(u, "u0", k, "k0", f"{under}.1/24", f"{under}.2/24")
    ns(k, "ip", "addr", "add", f"{under}.3/24", "dev", "k0")     # a stranger
    kernel_vtep(k, f"{under}.2", [f"{under}.1"], VNI, kh, f"{over}.2/24")
    d = NsDaemon(tmp_path / "d", u)
    br, h1 = PREFIX + "vbr", PREFIX + "vh1"
    try:
        d.start_with({"bridge": {br: {"port": {
            "h1": {"netns": h1, "ip": f"{over}.1/24", "mtu": 1450},
            "vx": {"type": "vxlan", "remote_ip": f"{under}.2", "key": VNI}}}}})
        assert ping_eventually(h1, f"{over}.2", tries=10)
        before = udp_delivered(u)
        vx0 = next(r for r in d.call("port/stats", bridge=br) if r["port"] == "vx")
        ns(k, sys.executable, "-c", FUZZER, f"{under}.1", f"{under}.2,{under}.3", "30000",
           str(VNI), timeout=300)
        assert d.alive()

        def settled() -> bool:
            vx = next(r for r in d.call("port/stats", bridge=br) if r["port"] == "vx")
            return vx["rx_packets"] - vx0["rx_packets"] == udp_delivered(u) - before
        assert wait_for(settled, timeout=20)
        vx = next(r for r in d.call("port/stats", bridge=br) if r["port"] == "vx")
        got = vx["rx_packets"] - vx0["rx_packets"]
        drops = {r: n - vx0["drops"][r] for r, n in vx["drops"].items()}
        assert got > 10_000
        assert got == vx["rx_forwarded"] - vx0["rx_forwarded"] + sum(drops.values())
        for reason in ("unknown_remote", "wrong_vni", "bad_vxlan", "vxlan_cut", "runt"):
            assert drops[reason] > 0, (reason, drops)
        # forwarding goes on
        assert d.alive()
        assert ping_eventually(h1, f"{over}.2", tries=10)
        assert ping_eventually(kh, f"{over}.1")
    finally:
        d.stop()
        hosts.close()
