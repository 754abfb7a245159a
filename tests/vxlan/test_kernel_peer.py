"""vswitch's VXLAN port against the Linux kernel's vxlan device.

    [h1] --tap-- vswitchd (namespace U) ==veth underlay== K: vx0 + br0 --veth-- [kh]

The daemon runs in U, K holds a Linux bridge with a kernel vxlan device and
a veth to the host namespace kh.  Pings and TCP both ways, the kernel host's
MAC learned on the tunnel port with K's address, iperf3 through the
tunnel, the per-remote counters, and the MTU rules: ICMP "fragmentation
needed" for IPv4 with DF, outer fragmentation without."""
from __future__ import annotations

import re

import pytest

from ..helpers import PREFIX, ns, ping, ping_eventually
from .underlay import Hosts, NsDaemon, iperf, kernel_vtep, received_bytes, subnet

pytestmark = pytest.mark.netns

VNI = 5001
KH_MAC = "02:00:00:00:0c:02"


@pytest.fixture
def site(tmp_path):
    """U (the daemon's namespace) joined to K (kernel vxlan) by a veth."""
    hosts = Hosts()
    under, over = subnet(), subnet()
    u, k, kh = hosts.netns("vu"), hosts.netns("vk"), hosts.netns("vkh")
    hosts.veth(u, "u0", k, "k0", f"{under}.1/24", f"{under}.2/24")
    d = NsDaemon(tmp_path / "d", u)
    d.u, d.k, d.kh, d.under, d.over = u, k, kh, under, over
    d.br = PREFIX + "vbr"
    d.h1 = PREFIX + "vh1"
    yield d, hosts
    d.stop()
    hosts.close()


def start(d, tap_mtu: int = 1450, vx_mtu: int = 1450, **vxlan) -> None:
    kernel_vtep(d.k, f"{d.under}.2", [f"{d.under}.1"], VNI, d.kh, f"{d.over}.2/24",
                mtu=vx_mtu, host_mac=KH_MAC)
    d.start_with({"bridge": {d.br: {"port": {
        "h1": {"netns": d.h1, "ip": f"{d.over}.1/24", "mtu": tap_mtu},
        "vx": {"type": "vxlan", "remote_ip": f"{d.under}.2", "key": VNI, **vxlan}}}}})


def test_kernel_vxlan_peer_ping_tcp_learning_and_counters(site):
    d, _ = site
    start(d)
    assert ping_eventually(d.h1, f"{d.over}.2", tries=10)
    assert ping_eventually(d.kh, f"{d.over}.1")

    # the kernel host's MAC is on the tunnel port, behind K's address
    rows = d.call("fdb/show", bridge=d.br)
    kh_row = [r for r in rows if r["mac"] == KH_MAC]
    assert kh_row and kh_row[0]["port"] == "vx" and kh_row[0]["remote"] == f"{d.under}.2"
    text = d.ctl("fdb/show", d.br).stdout
    assert re.search(rf"vx\s+0\s+{KH_MAC}\s+\d+\s+{re.escape(d.under)}\.2$", text, re.M), text
    # the kernel learned ours behind U's address
    fdb = ns(d.k, "bridge", "fdb", "show", "dev", "vx0").stdout
    assert f"dst {d.under}.1" in fdb

    # TCP both ways, through the tunnel
    fwd = received_bytes(iperf(d.h1, d.kh, f"{d.over}.2", 5301))
    back = received_bytes(iperf(d.h1, d.kh, f"{d.over}.2", 5302, reverse=True))
    assert fwd > 5_000_000 and back > 5_000_000, (fwd, back)

    stats = {r["port"]: r for r in d.call("port/stats", bridge=d.br)}
    vx = stats["vx"]
    (remote,) = vx["remotes"]
    assert remote["remote"] == f"{d.under}.2" and remote["source"] == f"{d.under}.1"
    assert remote["rx_packets"] > 1000 and remote["tx_packets"] > 1000
    assert remote["tx_errors"] == 0
    assert vx["tx_packets"] == remote["tx_packets"]
    # every datagram the kernel sent was a good one
    assert sum(vx["drops"].values()) == 0, vx["drops"]
    text = d.ctl("port/stats", d.br).stdout
    assert f"remote {d.under}.2 from {d.under}.1: rx pkts=" in text
    show = d.port("vx")
    assert show["state"] == "up" and show["device_mtu"] == 1450
    assert "remote_ip: " + f"{d.under}.2" in d.ctl("show").stdout


def test_mtu_frag_needed_with_df_and_outer_fragments_without(site):
    """The tap keeps 1500 while the tunnel carries 1450: DF packets get an
    ICMP with the tunnel's MTU; others cross in outer fragments (the kernel
    side is set to 1500 so it takes them)."""
    d, _ = site
    start(d, tap_mtu=1500, vx_mtu=1500)
    assert ping_eventually(d.h1, f"{d.over}.2", tries=10)
    r = ns(d.h1, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", f"{d.over}.2",
           check=False)
    assert "mtu = 1450" in r.stdout + r.stderr, r.stdout + r.stderr
    assert d.call("port/stats", bridge=d.br)[-1]["drops"]["frag_needed"] >= 1
    # without DF: 1600 bytes of ICMP data cross both ways
    r = ns(d.h1, "ping", "-c", "2", "-W", "2", "-M", "dont", "-s", "1600", f"{d.over}.2",
           check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    # and the kernel answered our 1450-byte frames without fragmenting them
    assert ping(d.h1, f"{d.over}.2")


def test_udp_gso_toward_the_kernel(site):
    """udp_gso=true: a TAP's 64 KB segments leave as UDP_SEGMENT sends; the
    kernel peer takes them like any datagrams."""
    d, _ = site
    start(d, udp_gso=True)
    assert ping_eventually(d.h1, f"{d.over}.2", tries=10)
    fwd = received_bytes(iperf(d.h1, d.kh, f"{d.over}.2", 5303))
    assert fwd > 5_000_000, fwd
    vx = next(r for r in d.call("port/stats", bridge=d.br) if r["port"] == "vx")
    (remote,) = vx["remotes"]
    assert remote["tx_packets"] > 1000 and remote["tx_errors"] == 0
    assert d.port("vx")["udp_gso"] is True
