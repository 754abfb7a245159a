"""VLANs on real namespaces: access hosts in one IP subnet separated by VLAN,
a trunk namespace speaking tagged frames (raw sockets: this kernel has no
802.1Q sub-interfaces), native modes, a system port on a trunk, live
changes and persistence."""
from __future__ import annotations

import json

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from ..helpers import PREFIX, name, ns, ping, ping_eventually, sh
from ..l2 import RawPort

pytestmark = pytest.mark.netns

BR = PREFIX + "vbr"
T_MAC = "02:00:00:00:99:01"
HOSTS = {  # port: (tag, ip, mac)
    "a10": (10, "10.0.0.10", "02:00:00:00:0a:10"),
    "b10": (10, "10.0.0.11", "02:00:00:00:0b:10"),
    "a20": (20, "10.0.0.20", "02:00:00:00:0a:20"),
}


def host_ports() -> dict:
    return {p: {"netns": PREFIX + p, "ip": f"{ip}/24", "mac": mac, "tag": tag}
            for p, (tag, ip, mac) in HOSTS.items()}


@pytest.fixture
def vlans(daemon):
    ports = host_ports()
    ports["tr"] = {"netns": PREFIX + "tr", "trunks": "10,20"}
    ports["nu"] = {"netns": PREFIX + "nu", "tag": 10, "vlan_mode": "native-untagged",
                   "trunks": [20], "ip": "10.0.0.12/24"}
    ports["nt"] = {"netns": PREFIX + "nt", "tag": 10, "vlan_mode": "native-tagged",
                   "trunks": [20]}
    daemon.start_with({"bridge": {BR: {"port": ports}}})
    return daemon


def arp_request(vlan: int | None, src_mac: str, src_ip: str, dst_ip: str) -> bytes:
    eth = Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff")
    tag = Dot1Q(vlan=vlan) if vlan is not None else None
    arp = ARP(op=1, hwsrc=src_mac, psrc=src_ip, pdst=dst_ip)
    return bytes(eth / tag / arp if tag else eth / arp)


def is_arp_reply(vlan: int | None, from_ip: str):
    def match(raw: bytes) -> bool:
        e = Ether(raw)
        if vlan is None:
            return e.type == 0x0806 and e[ARP].op == 2 and e[ARP].psrc == from_ip
        return (e.type == 0x8100 and e[Dot1Q].vlan == vlan and ARP in e
                and e[ARP].op == 2 and e[ARP].psrc == from_ip)
    return match


def test_access_hosts_reach_only_their_own_vlan(vlans):
    assert ping_eventually(PREFIX + "a10", "10.0.0.11")
    assert ping_eventually(PREFIX + "b10", "10.0.0.10")
    assert not ping(PREFIX + "a10", "10.0.0.20", wait=1)
    assert not ping(PREFIX + "a20", "10.0.0.10", wait=1)
    rows = vlans.call("fdb/show", bridge=BR)
    assert {(r["port"], r["vlan"]) for r in rows if r["mac"] == HOSTS["a10"][2]} == {("a10", 10)}


@pytest.mark.parametrize("port", ["a10", "a20"])
def test_trunk_namespace_exchanges_tagged_arp_and_icmp(vlans, port):
    tag, ip, mac = HOSTS[port]
    with RawPort("eth0", PREFIX + "tr") as t:
        t.send(arp_request(tag, T_MAC, "10.0.0.100", ip))
        reply = t.expect(is_arp_reply(tag, ip))
        assert reply is not None, f"no tagged ARP reply from {port} in VLAN {tag}"
        assert Ether(reply).src == mac
        ping_frame = Ether(src=T_MAC, dst=mac) / Dot1Q(vlan=tag) / \
            IP(src="10.0.0.100", dst=ip) / ICMP(id=77, seq=1)
        t.send(bytes(ping_frame))
        echo = t.expect(lambda raw: (Ether(raw).type == 0x8100 and
                                     Ether(raw)[Dot1Q].vlan == tag and ICMP in Ether(raw) and
                                     Ether(raw)[ICMP].type == 0 and Ether(raw)[ICMP].id == 77))
        assert echo is not None, f"no tagged echo reply from {port}"
        # the same question asked in the wrong VLAN gets no answer
        other = 20 if tag == 10 else 10
        t.drain()
        t.send(arp_request(other, T_MAC, "10.0.0.100", ip))
        assert t.expect(is_arp_reply(other, ip), timeout=1) is None
        assert t.expect(is_arp_reply(tag, ip), timeout=0.2) is None


def test_trunk_drops_vlans_it_does_not_carry(vlans):
    with RawPort("eth0", PREFIX + "tr") as t:
        t.send(arp_request(30, T_MAC, "10.0.0.100", "10.0.0.10"))
        t.send(arp_request(None, T_MAC, "10.0.0.100", "10.0.0.10"))
    stats = {r["port"]: r for r in vlans.call("port/stats", bridge=BR)}
    assert stats["tr"]["drops"]["vlan"] >= 2


def test_native_untagged_port(vlans):
    netns = PREFIX + "nu"
    assert ping_eventually(netns, "10.0.0.10")          # its untagged VLAN 10
    assert not ping(netns, "10.0.0.20", wait=1)         # VLAN 20 only tagged
    with RawPort("eth0", netns) as raw:
        raw.send(arp_request(20, T_MAC, "10.0.0.101", "10.0.0.20"))
        assert raw.expect(is_arp_reply(20, "10.0.0.20")) is not None


def test_native_tagged_port_sends_its_native_vlan_tagged(vlans):
    with RawPort("eth0", PREFIX + "nt") as raw:
        raw.send(arp_request(None, T_MAC, "10.0.0.102", "10.0.0.10"))   # untagged in
        assert raw.expect(is_arp_reply(10, "10.0.0.10")) is not None     # tagged out
        raw.send(arp_request(20, T_MAC, "10.0.0.102", "10.0.0.20"))
        assert raw.expect(is_arp_reply(20, "10.0.0.20")) is not None


def test_system_port_trunk_keeps_tags_both_ways(vlans):
    outer, inner, netns = name("tra"), name("trb"), name("trn")
    sh("ip", "netns", "add", netns)
    try:
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        sh("ip", "link", "set", inner, "netns", netns)
        ns(netns, "ip", "link", "set", inner, "up")
        vlans.ctl("add-port", BR, outer, "type=system", "trunks=10,20")
        with RawPort(inner, netns) as raw:
            for tag, port in ((10, "a10"), (20, "a20")):
                ip = HOSTS[port][1]
                raw.send(arp_request(tag, T_MAC, "10.0.0.103", ip))
                reply = raw.expect(is_arp_reply(tag, ip))
                assert reply is not None, f"VLAN {tag} through the system port"
        rows = vlans.call("fdb/show", bridge=BR)
        assert {(r["port"], r["vlan"]) for r in rows if r["mac"] == T_MAC} >= \
            {(outer, 10), (outer, 20)}
    finally:
        sh("ip", "link", "del", outer, check=False)
        sh("ip", "netns", "del", netns, check=False)


def test_live_vlan_change_moves_a_host_and_persists(vlans):
    assert not ping(PREFIX + "a20", "10.0.0.10", wait=1)
    vlans.ctl("set", "port", "a20", "tag=10")
    assert ping_eventually(PREFIX + "a20", "10.0.0.10")
    vlans.restart()
    assert vlans.port("a20")["tag"] == 10
    assert ping_eventually(PREFIX + "a20", "10.0.0.11")
    vlans.ctl("set", "port", "a20", "tag=20")
    assert not ping(PREFIX + "a20", "10.0.0.10", wait=1)


def test_every_vlan_setting_round_trips(daemon):
    daemon.start()
    daemon.ctl("add-br", BR)
    daemon.ctl("add-port", BR, "p1", "--netns", PREFIX + "p1", "tag=10")
    daemon.ctl("add-port", BR, "p2", "--netns", PREFIX + "p2", "trunks=10,20,30-32")
    daemon.ctl("add-port", BR, "p3", "--netns", PREFIX + "p3", "tag=5",
               "vlan_mode=native-tagged", "trunks=7")
    daemon.ctl("add-port", BR, "p4", "--netns", PREFIX + "p4", "tag=6",
               "vlan_mode=native-untagged")
    before = json.loads(daemon.ctl("show", "--json").stdout)
    text = daemon.ctl("show").stdout
    assert "vlan_mode: access, tag: 10" in text and "trunks: 10,20,30-32" in text
    assert "vlan_mode: native-tagged, tag: 5, trunks: 7" in text
    daemon.restart()
    assert json.loads(daemon.ctl("show", "--json").stdout) == before
    daemon.ctl("set", "port", "p3", "vlan_mode=", "tag=", "trunks=")   # back to trunk
    p3 = daemon.port("p3")
    assert p3["vlan_mode"] == "trunk" and "tag" not in p3 and "trunks" not in p3
