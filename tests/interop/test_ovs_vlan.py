"""Our trunk joined by a veth pair to a trunk port of Open vSwitch's
userspace datapath, access hosts on both switches: hosts of one VLAN reach
each other across the two switches, and no others do."""
from __future__ import annotations

import shutil

import pytest

from ..helpers import PREFIX, name, ns, ping, ping_eventually, sh
from ..ovs import OvsPeer

pytestmark = [pytest.mark.netns, pytest.mark.interop]

OURS = {"a10": (10, "10.0.0.10"), "a20": (20, "10.0.0.20")}
THEIRS = {"o10": (10, "10.0.0.110"), "o20": (20, "10.0.0.120")}


@pytest.fixture
def ovs(tmp_path):
    if not shutil.which("ovs-vswitchd"):
        pytest.fail("openvswitch-switch is not installed (scripts/setup.sh --test installs it)")
    peer = OvsPeer(tmp_path / "ovs")
    peer.start()
    yield peer
    peer.stop()


@pytest.fixture
def wiring():
    """veth pairs: the inter-switch trunk, and one per OVS access host."""
    made_links, made_ns = [], []
    trunk = (name("ia"), name("ib"))
    sh("ip", "link", "add", trunk[0], "type", "veth", "peer", "name", trunk[1])
    made_links.append(trunk[0])
    for port, (tag, ip) in THEIRS.items():
        outer, inner, netns = name(port), name(port + "n"), name(port + "ns")
        sh("ip", "netns", "add", netns)
        made_ns.append(netns)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        made_links.append(outer)
        sh("ip", "link", "set", inner, "netns", netns)
        ns(netns, "ip", "addr", "add", f"{ip}/24", "dev", inner)
        ns(netns, "ip", "link", "set", inner, "up")
        sh("ip", "link", "set", outer, "up")
    for end in trunk:
        sh("ip", "link", "set", end, "up")
    yield trunk
    for link in made_links:
        sh("ip", "link", "del", link, check=False)
    for n in made_ns:
        sh("ip", "netns", "del", n, check=False)


def test_vlans_across_vswitch_and_open_vswitch(daemon, ovs, wiring):
    ours_trunk, their_trunk = wiring
    br = PREFIX + "ibr"
    ports = {p: {"netns": PREFIX + p, "tag": tag, "ip": f"{ip}/24"}
             for p, (tag, ip) in OURS.items()}
    ports[ours_trunk] = {"type": "system", "trunks": [10, 20]}
    daemon.start_with({"bridge": {br: {"port": ports}}})

    obr = name("obr")
    ovs.add_bridge(obr)
    ovs.vsctl("add-port", obr, their_trunk, "trunks=10,20")
    for port, (tag, _ip) in THEIRS.items():
        ovs.vsctl("add-port", obr, name(port), f"tag={tag}")

    assert ping_eventually(PREFIX + "a10", "10.0.0.110", tries=10)
    assert ping_eventually(PREFIX + "a20", "10.0.0.120", tries=10)
    assert ping_eventually(name("o10ns"), "10.0.0.10")
    assert ping_eventually(name("o20ns"), "10.0.0.20")
    assert not ping(PREFIX + "a10", "10.0.0.120", wait=1)
    assert not ping(PREFIX + "a20", "10.0.0.110", wait=1)
    assert not ping(name("o10ns"), "10.0.0.20", wait=1)
    # both switches learned the far hosts in the right VLAN on the trunk
    rows = daemon.call("fdb/show", bridge=br)
    on_trunk = {r["vlan"] for r in rows if r["port"] == ours_trunk}
    assert on_trunk == {10, 20}
    # OVS's fdb/show: " port  VLAN  MAC  Age"; our hosts sit behind its trunk
    trunk_ofport = ovs.vsctl("get", "interface", their_trunk, "ofport").strip()
    learned = {tuple(line.split()[:2]) for line in ovs.appctl("fdb/show", obr).splitlines()[1:]}
    assert {(trunk_ofport, "10"), (trunk_ofport, "20")} <= learned
