"""A bond meeting an "upstream switch": bridge A's bond has two members,
joined by two veth pairs to two plain ports of bridge B, a host on each
bridge.  Failover, no duplicates, re-learning from learning packets,
bond-primary, bond/set-active-member, persistence of the active member."""
from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from ..helpers import wait_for, PREFIX, name, ping, ping_eventually, sh

pytestmark = pytest.mark.netns

HA_MAC, HB_MAC = "02:00:00:00:aa:01", "02:00:00:00:bb:01"


@pytest.fixture
def veths():
    pairs = [(name("va0"), name("vb0")), (name("va1"), name("vb1"))]
    for a, b in pairs:
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        for end in (a, b):
            sh("sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1")
    yield pairs
    for a, _b in pairs:
        sh("ip", "link", "del", a, check=False)


@pytest.fixture
def bonded(daemon, veths, request):
    (va0, vb0), (va1, vb1) = veths
    mode = getattr(request, "param", "active-backup")
    cfg = {"bridge": {
        PREFIX + "bra": {"port": {
            "ha": {"netns": PREFIX + "ha", "ip": "10.0.0.1/24", "mac": HA_MAC},
            "bd": {"type": "bond", "interfaces": [va0, va1], "bond_mode": mode}}},
        PREFIX + "brb": {"port": {
            "hb": {"netns": PREFIX + "hb", "ip": "10.0.0.2/24", "mac": HB_MAC},
            vb0: {"type": "system"}, vb1: {"type": "system"}}}}}
    daemon.start_with(cfg)
    daemon.va = (va0, va1)
    daemon.vb = (vb0, vb1)
    assert ping_eventually(PREFIX + "ha", "10.0.0.2")
    return daemon


def bond_state(d) -> dict:
    return d.call("bond/show", bond="bd")[0]


def learned_port(d, bridge: str, mac: str) -> str | None:
    for r in d.call("fdb/show", bridge=PREFIX + bridge):
        if r["mac"] == mac:
            return r["port"]
    return None


def test_bond_show(bonded):
    s = bond_state(bonded)
    assert s["bond_mode"] == "active-backup" and s["active_member"] == bonded.va[0]
    assert [(m["name"], m["enabled"], m["carrier"]) for m in s["members"]] == \
        [(bonded.va[0], True, True), (bonded.va[1], True, True)]
    text = bonded.ctl("bond/show", "bd").stdout
    assert f"active member: {bonded.va[0]}" in text
    assert f"member {bonded.va[1]}: enabled (carrier)" in text


def test_failover_keeps_traffic_without_duplicates_and_relearns(bonded):
    va0, va1 = bonded.va
    assert learned_port(bonded, "brb", HA_MAC) == bonded.vb[0]
    pinger = subprocess.Popen(["ip", "netns", "exec", PREFIX + "ha", "ping", "-i", "0.01",
                               "-c", "300", "-W", "1", "10.0.0.2"],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    sh("ip", "link", "set", va0, "down")
    out, _ = pinger.communicate(timeout=30)
    sent = int(re.search(r"(\d+) packets transmitted", out).group(1))
    got = int(re.search(r"(\d+) received", out).group(1))
    assert "duplicates" not in out and "DUP!" not in out, out
    assert sent == 300 and got >= 270, out   # an outage of a few pings at most
    s = bond_state(bonded)
    assert s["active_member"] == va1
    assert [m["enabled"] for m in s["members"]] == [False, True]
    # the upstream bridge moved HA's MAC to the new link
    assert learned_port(bonded, "brb", HA_MAC) == bonded.vb[1]


def test_learning_packets_move_the_upstream_entry_without_traffic(bonded):
    va0, va1 = bonded.va
    assert learned_port(bonded, "brb", HA_MAC) == bonded.vb[0]
    bonded.ctl("bond/set-active-member", "bd", va1)
    # nothing else is sending: only the RARP from the bond can have done this
    assert wait_for(lambda: learned_port(bonded, "brb", HA_MAC) == bonded.vb[1], 1.0)
    stats = {r["port"]: r for r in bonded.call("port/stats", bridge=PREFIX + "brb")}
    assert stats[bonded.vb[1]]["rx_packets"] >= 1


def test_bond_primary_takes_over_again_when_it_returns(bonded):
    va0, va1 = bonded.va
    bonded.ctl("set", "port", "bd", f"bond-primary={va0}")
    sh("ip", "link", "set", va0, "down")
    assert wait_for(lambda: bond_state(bonded)["active_member"] == va1)
    assert ping_eventually(PREFIX + "ha", "10.0.0.2")
    sh("ip", "link", "set", va0, "up")
    assert wait_for(lambda: bond_state(bonded)["active_member"] == va0)
    assert wait_for(lambda: learned_port(bonded, "brb", HA_MAC) == bonded.vb[0])
    assert ping_eventually(PREFIX + "ha", "10.0.0.2")


def test_peer_link_down_is_a_carrier_loss(bonded):
    va0, va1 = bonded.va
    sh("ip", "link", "set", bonded.vb[0], "down")     # the far end: our carrier goes
    assert wait_for(lambda: bond_state(bonded)["active_member"] == va1)
    assert ping_eventually(PREFIX + "ha", "10.0.0.2")


def test_set_active_member_moves_traffic_and_survives_restart(bonded):
    va0, va1 = bonded.va

    def through(link: str) -> int:
        return int(open(f"/sys/class/net/{link}/statistics/tx_packets").read())
    bonded.ctl("bond/set-active-member", "bd", va1)
    before = (through(va0), through(va1))
    assert ping(PREFIX + "ha", "10.0.0.2", count=5, wait=1)
    assert through(va1) - before[1] >= 5 and through(va0) - before[0] == 0
    bonded.restart()
    assert bond_state(bonded)["active_member"] == va1
    assert ping_eventually(PREFIX + "ha", "10.0.0.2")


def test_bond_command_errors(bonded):
    va0, va1 = bonded.va
    for args, needle in [
        (("bond/set-active-member", "nobond", va0), "no bond named nobond"),
        (("bond/set-active-member", "bd", "nosuch"), "has no member nosuch"),
        (("bond/show", "ha"), "no bond named ha"),
        (("add-bond", PREFIX + "bra", "b2", va0), "at least two interfaces"),
        (("add-bond", PREFIX + "bra", "b2", va0, va1), "already used by port 'bd'"),
        (("add-bond", PREFIX + "bra", "b2", name("x1"), name("x2")), "no interface"),
        (("set", "port", "bd", "bond_mode=balance-tcp"), "balance-tcp needs LACP"),
        (("set", "port", "bd", "bond_mode=round-robin"), "bond_mode must be one of"),
        (("set", "port", "ha", "lacp=active"), "is for bonds"),
        (("set", "port", "bd", "bond-primary=eth9"), "is not one of the bond's interfaces"),
        (("set", "port", "ha", "bond_updelay=5"), "is for bonds"),
        (("del-bond-iface", "bd", "nosuch"), "has no member"),
    ]:
        r = bonded.ctl(*args, check=False)
        assert r.returncode == 1 and needle in r.stderr, (args, r.stderr)
    bonded.ctl("bond/disable-member", "bd", va1)
    r = bonded.ctl("bond/set-active-member", "bd", va1, check=False)
    assert r.returncode == 1 and "cannot make disabled member" in r.stderr
    bonded.ctl("bond/enable-member", "bd", va1)
    assert wait_for(lambda: bond_state(bonded)["members"][1]["enabled"])
    bonded.ctl("bond/set-active-member", "bd", va1)


def test_members_can_be_removed_and_added(bonded):
    va0, va1 = bonded.va
    bonded.ctl("del-bond-iface", "bd", va0)
    s = bond_state(bonded)
    assert [m["name"] for m in s["members"]] == [va1] and s["active_member"] == va1
    assert ping_eventually(PREFIX + "ha", "10.0.0.2")
    r = bonded.ctl("del-bond-iface", "bd", va1, check=False)
    assert r.returncode == 1 and "last interface" in r.stderr
    bonded.ctl("add-bond-iface", "bd", va0)
    bonded.restart()
    assert [m["name"] for m in bond_state(bonded)["members"]] == [va1, va0]


@pytest.mark.parametrize("bonded", ["balance-slb"], indirect=True)
def test_balance_slb_bond_forwards_without_loops(bonded):
    s = bond_state(bonded)
    assert s["bond_mode"] == "balance-slb"
    assert sorted(m["buckets"] for m in s["members"]) == [128, 128]
    assert ping(PREFIX + "ha", "10.0.0.2", count=20, wait=1)
    assert ping(PREFIX + "hb", "10.0.0.1", count=5, wait=1)
    sh("ip", "link", "set", bonded.va[0], "down")
    assert wait_for(lambda: [m["buckets"] for m in bond_state(bonded)["members"]] == [0, 256])
    assert ping_eventually(PREFIX + "ha", "10.0.0.2")
    drops = {r["port"]: r["drops"] for r in bonded.call("port/stats", bridge=PREFIX + "bra")}
    assert drops["bd"]["bond"] >= 0
    text = json.dumps(bond_state(bonded))
    assert '"enabled": false' in text


def test_miimon_detects_a_link_going_down(bonded):
    va0, va1 = bonded.va
    bonded.ctl("set", "port", "bd", "bond-detect-mode=miimon", "bond-miimon-interval=50")
    assert bond_state(bonded)["bond_detect_mode"] == "miimon"
    sh("ip", "link", "set", va0, "down")
    assert wait_for(lambda: bond_state(bonded)["active_member"] == va1, 2.0)
    sh("ip", "link", "set", va0, "up")
    assert wait_for(lambda: bond_state(bonded)["members"][0]["enabled"], 2.0)
    assert "miimon every 50 ms" in bonded.ctl("bond/show").stdout


def test_manual_choice_outlives_unrelated_changes(bonded):
    """Issue 14 (7): with bond-primary=va0, a member chosen by hand stays
    active when an unrelated setting changes; changing the primary, or the
    primary's link coming back, may move it."""
    va0, va1 = bonded.va
    bonded.ctl("set", "port", "bd", f"bond-primary={va0}")
    assert bond_state(bonded)["active_member"] == va0
    bonded.ctl("bond/set-active-member", "bd", va1)
    bonded.ctl("set", "port", "bd", "bond_downdelay=77")
    assert bond_state(bonded)["active_member"] == va1
    assert "failover" not in bonded.log_text().split("bond_downdelay")[-1]
    bonded.ctl("set", "port", "bd", f"bond-primary={va1}")
    bonded.ctl("set", "port", "bd", f"bond-primary={va0}")   # a change of primary
    assert bond_state(bonded)["active_member"] == va0


def test_a_new_bond_does_not_inherit_a_deleted_ones_state(bonded):
    """Issue 14 (8): <db>.state.json kept the active member of deleted bonds."""
    va0, va1 = bonded.va
    state_file = bonded.dir / "conf.state.json"
    bonded.ctl("bond/set-active-member", "bd", va1)
    assert json.loads(state_file.read_text())["bonds"]["bd"]["active"] == va1
    bonded.ctl("del-port", "bd")
    assert "bd" not in json.loads(state_file.read_text())["bonds"]
    bonded.ctl("add-bond", PREFIX + "bra", "bd", va0, va1)
    assert bond_state(bonded)["active_member"] == va0
    bonded.ctl("bond/set-active-member", "bd", va1)
    bonded.ctl("del-br", PREFIX + "bra")
    assert json.loads(state_file.read_text())["bonds"] == {}
