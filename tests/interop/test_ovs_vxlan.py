"""Open vSwitch 3.1 (userspace datapath, native tunnelling) as a VXLAN peer.

    [h1] --tap-- vswitchd (U) ==veth== O: br-phy (underlay address on its
                                          LOCAL port) + br-int: vxlan0, oh -- [oh]

The conditions found by trying (see the README): OVS runs in a namespace
of its own with the underlay address on a br-phy bridge's local port; it
drops datagrams whose outer UDP checksum a veth left unfinished (ours are
complete: we write the checksum ourselves); it neither fragments nor
answers "fragmentation needed", so the inner MTU is 1450 on both sides;
userspace TSO stays off (with it OVS drops tunnelled packets), so the host
behind OVS has its veth's offloads off, as in OVS's own tests."""
from __future__ import annotations

import shutil

import pytest

from ..helpers import PREFIX, ns, ping_eventually
from ..ovs import OvsPeer
from ..vxlan.underlay import Hosts, NsDaemon, iperf, received_bytes, subnet

pytestmark = [pytest.mark.netns, pytest.mark.interop]

VNI = 9009
OH_MAC = "02:00:00:00:0e:02"


def test_open_vswitch_userspace_vxlan_peer(tmp_path):
    if not shutil.which("ovs-vswitchd"):
        pytest.fail("openvswitch-switch is not installed (scripts/setup.sh --test installs it)")
    hosts = Hosts()
    under, over = subnet(), subnet()
    u, o, oh = hosts.netns("vu"), hosts.netns("vo"), hosts.netns("voh")
    hosts.veth(u, "u0", o, "o0", f"{under}.1/24")
    hosts.veth(o, "oh", oh, "eth0", None, f"{over}.2/24", mtu=1450)
    ns(oh, "ip", "link", "set", "eth0", "address", OH_MAC)
    # OVS without userspace TSO reads the veth over AF_PACKET: the host
    # behind it must hand over finished, MTU-sized frames (as OVS's own
    # tests set their namespaces up)
    ns(oh, "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off")
    ovs = OvsPeer(tmp_path / "ovs", netns=o)
    d = NsDaemon(tmp_path / "d", u)
    br, h1 = PREFIX + "vbr", PREFIX + "vh1"
    try:
        ovs.start()
        ovs.add_bridge("br-phy")
        ovs.vsctl("add-port", "br-phy", "o0")
        ns(o, "ip", "addr", "add", f"{under}.2/24", "dev", "br-phy")
        ns(o, "ip", "link", "set", "br-phy", "up")
        ovs.add_bridge("br-int")
        ovs.vsctl("add-port", "br-int", "vxlan0", "--", "set", "interface", "vxlan0",
                  "type=vxlan", f"options:remote_ip={under}.1", f"options:key={VNI}")
        ovs.vsctl("add-port", "br-int", "oh")

        d.start_with({"bridge": {br: {"port": {
            "h1": {"netns": h1, "ip": f"{over}.1/24", "mtu": 1450},
            "vx": {"type": "vxlan", "remote_ip": f"{under}.2", "key": VNI}}}}})
        assert ping_eventually(h1, f"{over}.2", tries=15)
        assert ping_eventually(oh, f"{over}.1")
        fwd = received_bytes(iperf(h1, oh, f"{over}.2", 5321))
        back = received_bytes(iperf(h1, oh, f"{over}.2", 5322, reverse=True))
        assert fwd > 1_000_000 and back > 1_000_000, (fwd, back)

        rows = [r for r in d.call("fdb/show", bridge=br) if r["mac"] == OH_MAC]
        assert rows and rows[0]["port"] == "vx" and rows[0]["remote"] == f"{under}.2"
        # OVS learned our host on its tunnel port
        ofport = ovs.vsctl("get", "interface", "vxlan0", "ofport").strip()
        h1_mac = d.port("h1")["device_mac"]
        learned = {(line.split()[0], line.split()[2]) for line in
                   ovs.appctl("fdb/show", "br-int").splitlines()[1:]}
        assert (ofport, h1_mac) in learned
        vx = next(r for r in d.call("port/stats", bridge=br) if r["port"] == "vx")
        assert sum(vx["drops"].values()) == 0, vx["drops"]
    finally:
        d.stop()
        ovs.stop()
        hosts.close()
