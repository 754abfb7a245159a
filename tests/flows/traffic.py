"""Known traffic between two namespaces, the same for vswitch and for Open
vSwitch: a fixed number of pings (some with a ToS), a TCP transfer of an
exact size from a small Python sender, a fixed number of UDP datagrams.

What a collector must then show, flow by flow, is in EXPECTED.  For TCP the
number of packets depends on the stack (ACK pacing, segmentation), so the
check is the relation that holds whatever it is: with timestamps on (set in
the namespaces), every segment carries 20 + 32 bytes of IP and TCP header,
the SYN 8 more, so IP bytes = payload + 52 * packets + 8.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from ..helpers import ns

PINGS, TOS_PINGS, TOS = 4, 3, 0x10
PING_BYTES = 84              # 20 IP + 8 ICMP + 56 data
TCP_PORT, TCP_SIZE = 5201, 300_000
UDP_PORT, UDP_COUNT, UDP_PAYLOAD = 5202, 20, 100
TCP_SPORT, UDP_SPORT = 40001, 40002

RECEIVER = f"""
import socket, sys
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", {TCP_PORT})); t.listen(1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", {UDP_PORT}))
print("ready", flush=True)
c, _ = t.accept(); got = 0
while True:
    b = c.recv(65536)
    if not b: break
    got += len(b)
c.close()
u.settimeout(5); n = 0
try:
    while n < {UDP_COUNT}:
        u.recv(2048); n += 1
except socket.timeout:
    pass
print(got, n, flush=True)
"""

SENDER = f"""
import socket, sys, time
dst = sys.argv[1]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {TCP_SPORT})); s.connect((dst, {TCP_PORT}))
s.sendall(b"v" * {TCP_SIZE}); s.shutdown(socket.SHUT_WR)
s.recv(1); s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", {UDP_SPORT}))
for _ in range({UDP_COUNT}):
    u.sendto(b"u" * {UDP_PAYLOAD}, (dst, {UDP_PORT})); time.sleep(0.01)
"""


@dataclass
class Hosts:
    a_ns: str
    a_ip: str
    b_ns: str
    b_ip: str


def prepare(netns: str) -> None:
    """Quiet, predictable namespaces: no IPv6 chatter, TCP timestamps on."""
    ns(netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    ns(netns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
    ns(netns, "sysctl", "-qw", "net.ipv4.tcp_timestamps=1")


def run(h: Hosts) -> None:
    """All the known traffic from a to b; asserts it arrived whole."""
    for n in (h.a_ns, h.b_ns):
        prepare(n)
    # ARP first, so no ping of the counted ones is lost to resolution
    ns(h.a_ns, "ping", "-c", "1", "-W", "2", h.b_ip, check=False)
    time.sleep(0.2)
    r = ns(h.a_ns, "ping", "-c", str(PINGS), "-i", "0.2", "-W", "2", h.b_ip)
    assert f"{PINGS} received" in r.stdout, r.stdout
    r = ns(h.a_ns, "ping", "-c", str(TOS_PINGS), "-i", "0.2", "-W", "2", "-Q", str(TOS),
           h.b_ip)
    assert f"{TOS_PINGS} received" in r.stdout, r.stdout
    recv = subprocess.Popen(["ip", "netns", "exec", h.b_ns, sys.executable, "-c", RECEIVER],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert recv.stdout is not None
        assert recv.stdout.readline().strip() == "ready"
        ns(h.a_ns, sys.executable, "-c", SENDER, h.b_ip, timeout=60)
        got, n = recv.stdout.readline().split()
        assert (int(got), int(n)) == (TCP_SIZE, UDP_COUNT)
    finally:
        recv.wait(timeout=30)


def tcp_consistent(packets: int, nbytes: int) -> bool:
    """The data direction of the transfer: payload + headers, exactly."""
    return nbytes == TCP_SIZE + 52 * packets + 8
