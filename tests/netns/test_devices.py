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


def static_rows(d, br):
    return [r for r in d.call("fdb/show", bridge=br) if r["static"]]


def test_static_entries_survive_a_rebuilt_port(lab):
    """Issue 14 (2): `add-port --may-exist` and `reload` rebuilt a vanished
    port without its static FDB entries (the database still had them)."""
    mac = "02:aa:00:00:00:03"
    lab.ctl("fdb/add", lab.br, "h3", "0", mac)
    sh("ip", "netns", "del", PREFIX + "h3")
    assert wait_for(lambda: lab.port("h3")["state"] == "down")
    lab.ctl("add-port", lab.br, "h3", "--may-exist")
    assert lab.port("h3")["state"] == "up"
    assert [(r["port"], r["mac"]) for r in static_rows(lab, lab.br)] == [("h3", mac)]
    assert lab.call("fdb/stats-show", bridge=lab.br)["static_entries"] == 1
    lab.ctl("fdb/add", lab.br, "h2", "0", "02:aa:00:00:00:02")
    r = lab.ctl("set", "bridge", lab.br, "mac_table_size=1", check=False)
    assert r.returncode == 1 and "2 static entries do not fit" in r.stderr
    assert lab.call("fdb/stats-show", bridge=lab.br)["static_entries"] == 2


def test_reload_repairs_vanished_ports_and_keeps_static_entries(daemon, tmp_path):
    """Issue 14 (2, 4, 10): reloading the same file builds vanished devices
    again; a port recreated by a reload keeps its static entries; a new
    static entry is reported."""
    from ..helpers import to_toml
    br = PREFIX + "rp"
    mac1, mac2 = "02:aa:00:00:00:01", "02:aa:00:00:00:02"

    def config(mtu: int, extra_static: bool) -> dict:
        fdb = [{"port": "p1", "vlan": 0, "mac": mac1}]
        if extra_static:
            fdb.append({"port": "p2", "vlan": 0, "mac": mac2})
        return {"bridge": {br: {"port": {
            "p1": {"netns": PREFIX + "rp1", "ip": "10.0.0.1/24", "mtu": mtu},
            "p2": {"netns": PREFIX + "rp2", "ip": "10.0.0.2/24"}}, "fdb": fdb}}}
    cfg = tmp_path / "rp.toml"
    cfg.write_text(to_toml(config(1500, False)))
    daemon.start(cfg)
    assert ping_eventually(PREFIX + "rp1", "10.0.0.2")
    # the same file after p2's namespace vanished: p2 is built again
    sh("ip", "netns", "del", PREFIX + "rp2")
    assert wait_for(lambda: daemon.port("p2")["state"] == "down")
    out = daemon.ctl("reload").stdout
    assert "ports repaired: p2" in out, out
    assert daemon.port("p2")["state"] == "up"
    assert ping_eventually(PREFIX + "rp1", "10.0.0.2")
    # p1 recreated by a change of MTU keeps its static entry; a new one is said
    cfg.write_text(to_toml(config(1400, True)))
    out = daemon.ctl("reload").stdout
    assert "ports recreated: p1" in out and f"fdb added: {br} {mac2} vlan 0 on p2" in out, out
    assert sorted((r["port"], r["mac"]) for r in static_rows(daemon, br)) == \
        [("p1", mac1), ("p2", mac2)]
    assert "nothing changed" in daemon.ctl("reload").stdout
    cfg.write_text(to_toml(config(1400, False)))
    assert f"fdb removed: {br} {mac2} vlan 0 on p2" in daemon.ctl("reload").stdout
    assert [(r["port"], r["mac"]) for r in static_rows(daemon, br)] == [("p1", mac1)]


def test_administratively_down_interface(lab):
    """Issue 14 (12): a TAP set down inside its namespace was shown up, and
    frames to it were counted as tx_error instead of iface_down."""
    ns(PREFIX + "h3", "ip", "link", "set", "eth0", "down")
    assert lab.port("h3")["state"] == "down"
    assert lab.port("h3")["error"] == "interface administratively down"
    ns(PREFIX + "h1", "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.0.0.3", check=False)
    stats = {r["port"]: r for r in lab.call("port/stats", bridge=lab.br)}
    assert stats["h3"]["drops"]["iface_down"] > 0
    assert stats["h3"]["drops"]["tx_error"] == 0
    ns(PREFIX + "h3", "ip", "link", "set", "eth0", "up")
    assert lab.port("h3")["state"] == "up"
    assert ping_eventually(PREFIX + "h1", "10.0.0.3")


def test_system_port_is_left_as_it_was_found(lab):
    """Issue 14 (12): the switch brings a down interface up to use it, and
    takes it down again when its configuration lets go of it (del-port,
    del-br) -- also after a crash or a restart in between.  One that was up
    stays up."""
    import os
    import signal
    up_if, down_if, peer1, peer2 = name("su"), name("sd"), name("sp1"), name("sp2")
    sh("ip", "link", "add", up_if, "type", "veth", "peer", "name", peer1)
    sh("ip", "link", "add", down_if, "type", "veth", "peer", "name", peer2)
    try:
        sh("ip", "link", "set", up_if, "up")

        def is_up(dev: str) -> bool:
            return "UP" in sh("ip", "-o", "link", "show", dev).stdout.split(">")[0]
        lab.ctl("add-port", lab.br, up_if, "type=system")
        lab.ctl("add-port", lab.br, down_if, "type=system")
        assert is_up(up_if) and is_up(down_if)
        os.kill(lab.pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{lab.pid}").exists())
        lab.pid = None
        lab.start()
        lab.ctl("del-port", down_if)
        lab.ctl("del-port", up_if)
        assert not is_up(down_if) and is_up(up_if)
        # a restart does not flap it; the configuration letting go does
        sh("ip", "link", "set", up_if, "down")
        lab.ctl("add-port", lab.br, up_if, "type=system")
        lab.restart()
        assert is_up(up_if)
        lab.ctl("del-br", lab.br)
        assert not is_up(up_if)
    finally:
        sh("ip", "link", "del", up_if, check=False)
        sh("ip", "link", "del", down_if, check=False)
