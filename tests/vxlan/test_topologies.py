"""Head-end replication to two kernel peers, and two vswitch daemons as two
hosts.

Two remotes:   [h1] vswitchd (U) ==u1/k0== K1: vx0+br0 -- [kh1]
                                 ==u2/k0== K2: vx0+br0 -- [kh2]
Two daemons:   [a1] vswitchd (UA) ==veth== vswitchd (UB) [b1]
"""
from __future__ import annotations

import pytest

from ..helpers import PREFIX, ns, ping, ping_eventually, wait_for
from .underlay import (Hosts, NsDaemon, iperf, kernel_vtep, link_stats, received_bytes,
                       subnet)

pytestmark = pytest.mark.netns

VNI = 7007
KH1_MAC, KH2_MAC = "02:00:00:00:0d:02", "02:00:00:00:0d:03"


@pytest.fixture
def hosts():
    h = Hosts()
    yield h
    h.close()


def quiet(netns: str) -> None:
    """No IPv6 chatter (router solicitations, MLD) in a namespace the daemon
    made, so counters count only what the test sends."""
    ns(netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")


def remote_tx(d, port: str = "vx") -> dict[str, int]:
    row = next(r for r in d.call("port/stats") if r["port"] == port)
    return {r["remote"]: r["tx_packets"] for r in row["remotes"]}


def test_two_remotes_flood_to_both_unicast_to_one_never_back(tmp_path, hosts):
    u1, u2, over = subnet(), subnet(), subnet()
    u, k1, k2 = hosts.netns("vu"), hosts.netns("vk1"), hosts.netns("vk2")
    kh1, kh2 = hosts.netns("vkh1"), hosts.netns("vkh2")
    hosts.veth(u, "u1", k1, "k0", f"{u1}.1/24", f"{u1}.2/24")
    hosts.veth(u, "u2", k2, "k0", f"{u2}.1/24", f"{u2}.2/24")
    kernel_vtep(k1, f"{u1}.2", [f"{u1}.1"], VNI, kh1, f"{over}.2/24", host_mac=KH1_MAC)
    kernel_vtep(k2, f"{u2}.2", [f"{u2}.1"], VNI, kh2, f"{over}.3/24", host_mac=KH2_MAC)
    d = NsDaemon(tmp_path / "d", u)
    br, h1 = PREFIX + "vbr", PREFIX + "vh1"
    try:
        d.start_with({"bridge": {br: {"port": {
            "h1": {"netns": h1, "ip": f"{over}.1/24", "mtu": 1450},
            "vx": {"type": "vxlan", "remote_ip": [f"{u1}.2", f"{u2}.2"], "key": VNI}}}}})
        quiet(h1)
        assert ping_eventually(h1, f"{over}.2", tries=10)
        assert ping_eventually(h1, f"{over}.3", tries=10)
        where = {r["mac"]: r.get("remote") for r in d.call("fdb/show", bridge=br)}
        assert where[KH1_MAC] == f"{u1}.2" and where[KH2_MAC] == f"{u2}.2"

        # known unicast: to K1 only (and K2's kernel sees nothing of it)
        before, k2_before = remote_tx(d), link_stats(k2, "vx0")["rx"]
        assert ns(h1, "ping", "-c", "10", "-i", "0.05", "-W", "1", f"{over}.2",
                  check=False).returncode == 0
        after, k2_after = remote_tx(d), link_stats(k2, "vx0")["rx"]
        assert after[f"{u1}.2"] - before[f"{u1}.2"] >= 10
        assert after[f"{u2}.2"] == before[f"{u2}.2"]
        assert k2_after == k2_before

        # a broadcast from h1 reaches both kernels
        k1_rx, k2_rx = link_stats(k1, "vx0")["rx"], link_stats(k2, "vx0")["rx"]
        ns(h1, "ping", "-b", "-c", "3", "-i", "0.2", "-W", "1", f"{over}.255", check=False)
        assert wait_for(lambda: link_stats(k1, "vx0")["rx"] - k1_rx >= 3 and
                        link_stats(k2, "vx0")["rx"] - k2_rx >= 3)

        # a broadcast from behind K1 reaches h1 and never goes back out
        stats = {r["port"]: r for r in d.call("port/stats", bridge=br)}
        before = remote_tx(d)
        ns(kh1, "ping", "-b", "-c", "5", "-i", "0.2", "-W", "1", f"{over}.255", check=False)
        assert wait_for(lambda: next(r for r in d.call("port/stats", bridge=br)
                                     if r["port"] == "h1")["tx_packets"]
                        - stats["h1"]["tx_packets"] >= 5)
        assert remote_tx(d) == before
        after_stats = {r["port"]: r for r in d.call("port/stats", bridge=br)}
        assert after_stats["h1"]["tx_packets"] - stats["h1"]["tx_packets"] == 5
        assert sum(after_stats["vx"]["drops"].values()) == 0
    finally:
        d.stop()


def test_two_vswitch_daemons_joined_by_vxlan(tmp_path, hosts):
    under, over = subnet(), subnet()
    ua, ub = hosts.netns("vua"), hosts.netns("vub")
    hosts.veth(ua, "u0", ub, "u0", f"{under}.1/24", f"{under}.2/24")
    a, b = NsDaemon(tmp_path / "a", ua), NsDaemon(tmp_path / "b", ub)
    bra, brb = PREFIX + "vbra", PREFIX + "vbrb"
    a1, b1 = PREFIX + "va1", PREFIX + "vb1"
    try:
        a.start_with({"bridge": {bra: {"port": {
            "a1": {"netns": a1, "ip": f"{over}.1/24", "mtu": 1450},
            "vxa": {"type": "vxlan", "remote_ip": f"{under}.2", "local_ip": f"{under}.1",
                    "key": VNI}}}}})
        # the second one through the CLI, as a user would
        b.start_with({"bridge": {brb: {}}})
        b.ctl("add-port", brb, "b1", "--netns", b1, "--ip", f"{over}.2/24", "mtu=1450")
        b.ctl("add-port", brb, "vxb", "type=vxlan", f"remote_ip={under}.1", f"key={VNI}")
        assert ping_eventually(a1, f"{over}.2", tries=10)
        assert ping_eventually(b1, f"{over}.1")
        fwd = received_bytes(iperf(a1, b1, f"{over}.2", 5311))
        back = received_bytes(iperf(a1, b1, f"{over}.2", 5312, reverse=True))
        assert fwd > 5_000_000 and back > 5_000_000, (fwd, back)
        mac_b1 = b.port("b1")["device_mac"]
        rows = [r for r in a.call("fdb/show", bridge=bra) if r["mac"] == mac_b1]
        assert rows and rows[0]["port"] == "vxa" and rows[0]["remote"] == f"{under}.2"

        # live: another VNI on one side cuts the segment (counted by the
        # one that changed), the same one again restores it
        b.ctl("set", "port", "vxb", f"key={VNI + 1}")
        assert not ping(a1, f"{over}.2", count=2, wait=1)
        assert b.call("port/stats", bridge=brb)[-1]["drops"]["wrong_vni"] >= 1
        b.ctl("set", "port", "vxb", f"key={VNI}")
        assert ping_eventually(a1, f"{over}.2", tries=10)

        # restarted from its database, B's tunnel comes back as it was
        b.restart()
        port = b.port("vxb")
        assert (port["state"], port["remote_ip"], port["key"]) == ("up", [f"{under}.1"], VNI)
        assert ping_eventually(a1, f"{over}.2", tries=10)
    finally:
        a.stop()
        b.stop()
