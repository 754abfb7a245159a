"""LACP between two vswitchd on real veth pairs, with a host behind each:
the active/passive combinations, a partner that does not speak LACP (and
lacp-fallback-ab), members that meet different partners, malformed LACPDUs
on the wire, and the configuration as a user types it."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from vswitch.lacp.pdu import Info, Lacpdu, encode

from ..helpers import PREFIX, Daemon, name, ping, ping_eventually, sh
from .wiring import distributing, our_lacp, veth, wait_until

pytestmark = pytest.mark.netns

A_IP, B_IP = "10.62.0.1", "10.62.0.2"


@pytest.fixture
def links():
    pairs = [(name("ka0"), name("kb0")), (name("ka1"), name("kb1"))]
    for a, b in pairs:
        veth(a, b)
    yield pairs
    for a, _b in pairs:
        sh("ip", "link", "del", a, check=False)


@pytest.fixture
def partner(tmp_path):
    (tmp_path / "b").mkdir()
    d = Daemon(tmp_path / "b")
    yield d
    d.stop()


def side(host: str, ip: str, bond: str, members: list[str], **bond_settings) -> dict:
    return {"bridge": {PREFIX + host + "br": {"port": {
        host: {"netns": PREFIX + host, "ip": f"{ip}/24"},
        bond: {"type": "bond", "interfaces": members, **bond_settings}}}}}


def lacp_settings(mode: str) -> dict:
    return {"lacp": mode, "lacp-time": "fast", "bond_mode": "balance-tcp"}


def both_negotiated(a, b) -> bool:
    return all(our_lacp(d, bd)["status"] == "negotiated" and len(distributing(d, bd)) == 2
               for d, bd in ((a, "kbd"), (b, "kbe")))


@pytest.mark.parametrize("modes", [("active", "active"), ("active", "passive"),
                                   ("passive", "active"), ("passive", "passive")],
                         ids=lambda m: f"{m[0]}-{m[1]}")
def test_vswitch_on_both_ends(daemon, partner, links, modes):
    a_links, b_links = [a for a, _ in links], [b for _, b in links]
    daemon.start_with(side("kha", A_IP, "kbd", a_links, **lacp_settings(modes[0])))
    partner.start_with(side("khb", B_IP, "kbe", b_links, **lacp_settings(modes[1])))
    if modes == ("passive", "passive"):
        time.sleep(5)      # longer than expiry and defaulting with fast timers
        for d, bd in ((daemon, "kbd"), (partner, "kbe")):
            shown = our_lacp(d, bd)
            assert shown["status"] == "defaulted", shown
            assert all(m["pdus_tx"] == 0 and not m["distributing"] for m in shown["members"])
        assert not ping(PREFIX + "kha", B_IP, wait=1)
        return
    took = wait_until(lambda: both_negotiated(daemon, partner), 20)
    assert took is not None, (our_lacp(daemon, "kbd"), our_lacp(partner, "kbe"))
    print(f"{modes}: both aggregates formed in {took:.1f} s")
    a, b = our_lacp(daemon, "kbd"), our_lacp(partner, "kbe")
    assert a["partner"] == b["actor"] and b["partner"] == a["actor"]
    assert a["actor"]["system_id"] != b["actor"]["system_id"]
    for m in a["members"]:
        assert ("activity" in m["actor_state"]) == (modes[0] == "active")
        assert ("activity" in m["partner_state"]) == (modes[1] == "active")
        assert {"synchronization", "collecting", "distributing"} <= set(m["actor_state"])
    assert ping_eventually(PREFIX + "kha", B_IP)
    assert ping(PREFIX + "khb", A_IP, count=5, wait=1)


def test_partner_without_lacp_is_defaulted_until_fallback(daemon, partner, links):
    a_links, b_links = [a for a, _ in links], [b for _, b in links]
    daemon.start_with(side("kha", A_IP, "kbd", a_links, **lacp_settings("active")))
    # the far end: a learning bridge with the two links as plain ports
    partner.start_with({"bridge": {PREFIX + "khbbr": {"port": {
        "khb": {"netns": PREFIX + "khb", "ip": f"{B_IP}/24"},
        b_links[0]: {"type": "system"}, b_links[1]: {"type": "system"}}}}})
    assert wait_until(lambda: our_lacp(daemon, "kbd")["status"] == "defaulted", 8)
    assert not ping(PREFIX + "kha", B_IP, count=2, wait=1)
    shown = our_lacp(daemon, "kbd")
    assert shown["partner"] == {"system_id": "00:00:00:00:00:00", "system_priority": 0,
                                "key": 0}
    assert all("defaulted" in m["actor_state"] and m["pdus_rx"] == 0
               for m in shown["members"])
    text = daemon.ctl("lacp/show", "kbd").stdout
    assert "status: defaulted" in text and "not distributing" in text

    daemon.ctl("set", "port", "kbd", "lacp-fallback-ab=true")
    assert ping_eventually(PREFIX + "kha", B_IP)
    bond = daemon.call("bond/show", bond="kbd")[0]
    assert (bond["lacp_status"], bond["effective_mode"], bond["bond_mode"]) == \
        ("defaulted", "active-backup", "balance-tcp")
    assert [m["enabled"] for m in bond["members"]] == [True, True]
    assert "running as: active-backup (lacp-fallback-ab)" in daemon.ctl("bond/show").stdout
    # kept across a restart, as everything configured is
    daemon.restart()
    port = daemon.port("kbd")
    assert (port["lacp"], port["lacp_time"], port["lacp_fallback_ab"]) == \
        ("active", "fast", True)
    assert ping_eventually(PREFIX + "kha", B_IP, tries=10)


def test_members_meeting_different_partners_are_not_aggregated(daemon, partner, links):
    """ka0 meets bond X of the partner, ka1 bond Y (another bridge there, so
    another LACP system): only one of them may be in our aggregate."""
    a_links, b_links = [a for a, _ in links], [b for _, b in links]
    spare = [(name("kx0"), name("kx1")), (name("ky0"), name("ky1"))]
    try:
        for a, b in spare:
            veth(a, b)
        daemon.start_with(side("kha", A_IP, "kbd", a_links, **lacp_settings("active")))
        cfg_x = side("kx", "10.62.1.1", "kbx", [b_links[0], spare[0][0]],
                     **lacp_settings("active"))
        cfg_y = side("ky", "10.62.2.1", "kby", [b_links[1], spare[1][0]],
                     **lacp_settings("active"))
        partner.start_with({"bridge": {**cfg_x["bridge"], **cfg_y["bridge"]}})
        assert wait_until(lambda: len(distributing(daemon, "kbd")) == 1, 15)
        time.sleep(3)                  # and it stays that way
        ours = our_lacp(daemon, "kbd")
        assert sum(m["distributing"] for m in ours["members"]) == 1
        xs, ys = our_lacp(partner, "kbx"), our_lacp(partner, "kby")
        assert xs["actor"]["system_id"] != ys["actor"]["system_id"]
        chosen = next(m for m in ours["members"] if m["distributing"])
        left_out = next(m for m in ours["members"] if not m["distributing"])
        assert "synchronization" not in left_out["actor_state"]
        assert left_out["pdus_rx"] > 0          # it hears its partner; it just is not ours
        winner = xs if chosen["name"] == a_links[0] else ys
        assert ours["partner"]["system_id"] == winner["actor"]["system_id"]
    finally:
        for a, _b in spare:
            sh("ip", "link", "del", a, check=False)


def raw_send(ifname: str, frames: list[bytes]) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((ifname, 0))
        for f in frames:
            s.send(f)
    finally:
        s.close()


def test_malformed_lacpdus_on_the_wire_are_counted_and_ignored(daemon, partner, links):
    a_links, b_links = [a for a, _ in links], [b for _, b in links]
    daemon.start_with(side("kha", A_IP, "kbd", a_links, **lacp_settings("active")))
    partner.start_with(side("khb", B_IP, "kbe", b_links, **lacp_settings("active")))
    assert wait_until(lambda: both_negotiated(daemon, partner), 20)
    src = bytes.fromhex("020000000bad")
    good = encode(Lacpdu(Info(1, src, 1, 1, 1, 0x3f), Info()), src)
    bad = [good[:40],                                  # short
           good[:15] + b"\x00" + good[16:],            # version 0
           good[:17] + b"\xff" + good[18:],            # actor TLV length 255
           good[:37] + b"\x00" + good[38:],            # partner TLV length 0
           good[:57] + b"\x63" + good[58:]]            # collector TLV length 99
    before = {m["name"]: m for m in our_lacp(daemon, "kbd")["members"]}
    raw_send(b_links[0], bad * 4)
    assert wait_until(lambda: {m["name"]: m["pdus_bad"] for m in
                               our_lacp(daemon, "kbd")["members"]} ==
                      {a_links[0]: before[a_links[0]]["pdus_bad"] + 20,
                       a_links[1]: before[a_links[1]]["pdus_bad"]}, 5)
    time.sleep(1.5)
    assert both_negotiated(daemon, partner)
    ours = our_lacp(daemon, "kbd")
    assert ours["partner"]["system_id"] != "02:00:00:00:0b:ad"
    stats = {r["port"]: r for r in daemon.call("port/stats")}
    assert stats["kbd"]["rx_upcall"] >= 20
    assert ping_eventually(PREFIX + "kha", B_IP)


def test_lacp_configuration_as_a_user_types_it(daemon, links, tmp_path: Path):
    a_links = [a for a, _ in links]
    daemon.start()
    br = PREFIX + "kcbr"
    daemon.ctl("add-br", br)

    def fails(*args: str, needle: str) -> None:
        before = daemon.db.read_text()
        r = daemon.ctl(*args, check=False)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, (args, r.stderr)
        assert needle in r.stderr, (args, r.stderr)
        assert daemon.db.read_text() == before

    fails("add-bond", br, "kbd", *a_links, "bond_mode=balance-tcp",
          needle="balance-tcp needs LACP")
    fails("add-bond", br, "kbd", *a_links, "lacp=on", needle="lacp must be one of")
    fails("add-bond", br, "kbd", *a_links, "lacp=active", "lacp-time=medium",
          needle="lacp-time must be one of")
    fails("add-bond", br, "kbd", *a_links, "lacp=active", "lacp-system-priority=0",
          needle="out of range 1..65535")
    fails("add-bond", br, "kbd", *a_links, "lacp=active", "lacp-system-id=01:00:00:00:00:01",
          needle="group (multicast) address")
    fails("add-bond", br, "kbd", *a_links, "lacp=active", "lacp-fallback-ab=maybe",
          needle="must be true or false")
    daemon.ctl("add-bond", br, "kbd", *a_links, "lacp=passive", "bond_mode=balance-tcp",
               "lacp-system-id=02:00:00:00:12:34", "lacp-system-priority=100")
    shown = our_lacp(daemon, "kbd")
    assert shown["actor"]["system_id"] == "02:00:00:00:12:34"
    assert shown["actor"]["system_priority"] == 100
    assert [m["name"] for m in shown["members"]] == a_links
    assert all(m["port_id"] > 0 for m in shown["members"])
    fails("set", "port", "kbd", "lacp=off", needle="balance-tcp needs LACP")
    fails("lacp/show", "nosuch", needle="no bond named nosuch")
    daemon.ctl("set", "port", "kbd", "lacp=active", "lacp-time=fast",
               "lacp-system-id=")                     # cleared: back to the derived id
    derived = our_lacp(daemon, "kbd")["actor"]["system_id"]
    assert derived != "02:00:00:00:12:34"
    daemon.restart()
    shown = our_lacp(daemon, "kbd")
    assert shown["actor"]["system_id"] == derived            # stable across restarts
    assert daemon.port("kbd")["lacp"] == "active"
    # reload: the file's LACP settings change the bond in place
    conf = tmp_path / "k.toml"
    conf.write_text(
        f'[bridge."{br}".port.kbd]\ntype = "bond"\ninterfaces = {json.dumps(a_links)}\n'
        'bond_mode = "balance-tcp"\nlacp = "active"\nlacp-time = "slow"\n'
        'lacp-fallback-ab = true\n')
    changes = daemon.call("reload", file=str(conf))
    assert changes == {"ports_changed": ["kbd"]}
    port = daemon.port("kbd")
    assert (port["lacp_time"], port["lacp_fallback_ab"]) == ("slow", True)
    assert "timeout" not in our_lacp(daemon, "kbd")["members"][0]["actor_state"]
    conf.write_text(conf.read_text().replace('lacp = "active"', 'lacp = "sometimes"'))
    r = daemon.ctl("reload", str(conf), check=False)
    assert r.returncode == 1 and "k.toml:5:" in r.stderr and "lacp must be one of" in r.stderr
    assert daemon.port("kbd")["lacp"] == "active"
