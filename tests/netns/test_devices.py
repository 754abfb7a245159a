"""Devices vanishing under the switch: a namespace deleted under its port,
a system port's interface deleted and re-created, a bond member likewise."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from ..helpers import wait_for, PREFIX, name, ns, ping_eventually, sh

pytestmark = pytest.mark.netns


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_namespace_deleted_under_a_running_port(lab):
    assert ping_eventually(PREFIX + "h1", "10.0.0.3")
    sh("ip", "netns", "del", PREFIX + "h3")
    assert wait_for(lambda: lab.port("h3")["state"] == "down")
    assert "device gone" in lab.port("h3")["error"]
    # the daemon neither spins nor stops forwarding for the others
    before = cpu_ticks(lab.pid)
    time.sleep(1.0)
    assert cpu_ticks(lab.pid) - before < 20      # under 0.2 s of CPU in a second
    assert ping_eventually(PREFIX + "h1", "10.0.0.2")
    assert "Port h3: down" in lab.ctl("show").stdout
    # re-adding it builds it again (the switch created that namespace)
    lab.ctl("add-port", lab.br, "h3", "--may-exist")
    assert lab.port("h3")["state"] == "up"
    assert ping_eventually(PREFIX + "h1", "10.0.0.3")
    # and del-port works on a port whose device is gone
    sh("ip", "netns", "del", PREFIX + "h3")
    assert wait_for(lambda: lab.port("h3")["state"] == "down")
    lab.ctl("del-port", "h3")
    assert "h3" not in lab.ctl("list-ports", lab.br).stdout.split()


def test_system_port_is_attached_again_when_its_interface_returns(lab):
    outer, inner, netns = name("so"), name("si"), name("sns")
    sh("ip", "netns", "add", netns)

    def make_veth() -> None:
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        sh("ip", "link", "set", inner, "netns", netns)
        ns(netns, "ip", "addr", "add", "10.0.0.60/24", "dev", inner)
        ns(netns, "ip", "link", "set", inner, "up")
    try:
        make_veth()
        lab.ctl("add-port", lab.br, outer, "type=system")
        assert ping_eventually(netns, "10.0.0.1")
        sh("ip", "link", "del", outer)
        assert wait_for(lambda: lab.port(outer)["state"] == "down")
        assert "interface gone" in lab.port(outer)["error"]
        make_veth()
        assert wait_for(lambda: lab.port(outer)["state"] == "up")
        assert ping_eventually(netns, "10.0.0.1")
        assert ping_eventually(PREFIX + "h2", "10.0.0.60")
    finally:
        sh("ip", "link", "del", outer, check=False)
        sh("ip", "netns", "del", netns, check=False)


def test_bond_member_is_attached_again_when_it_returns(daemon):
    va0, vb0, va1, vb1 = name("ba0"), name("bb0"), name("ba1"), name("bb1")
    for a, b in ((va0, vb0), (va1, vb1)):
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
    try:
        daemon.start_with({"bridge": {
            PREFIX + "ba": {"port": {
                "ha": {"netns": PREFIX + "ha", "ip": "10.0.0.1/24"},
                "bd": {"type": "bond", "interfaces": [va0, va1], "bond-primary": va0}}},
            PREFIX + "bb": {"port": {
                "hb": {"netns": PREFIX + "hb", "ip": "10.0.0.2/24"},
                vb0: {"type": "system"}, vb1: {"type": "system"}}}}})
        assert ping_eventually(PREFIX + "ha", "10.0.0.2")
        sh("ip", "link", "del", va0)          # takes vb0 with it
        bond = lambda: daemon.call("bond/show", bond="bd")[0]  # noqa: E731
        assert wait_for(lambda: bond()["active_member"] == va1)
        assert ping_eventually(PREFIX + "ha", "10.0.0.2")
        sh("ip", "link", "add", va0, "type", "veth", "peer", "name", vb0)
        assert wait_for(lambda: bond()["active_member"] == va0, 10)   # the primary is back
        assert wait_for(lambda: daemon.port(vb0)["state"] == "up")
        assert ping_eventually(PREFIX + "ha", "10.0.0.2")
    finally:
        for link in (va0, va1):
            sh("ip", "link", "del", link, check=False)
