"""The daemon's nftables table is its own: others' tables are untouched,
nothing is left after del-br or a clean stop, and after kill -9 a restart
makes the table what the configuration says (no duplicates)."""
from __future__ import annotations

import os
import signal

import pytest

from vswitch import nft

from ..helpers import name, wait_for
from ..hostns import HostDaemon, nft_json, random_net24, strip_counters

pytestmark = pytest.mark.netns

USER_TABLE = """
table ip {t} {{
    set blocked {{ type ipv4_addr; elements = {{ 10.66.0.7, 10.66.0.8 }} }}
    chain user_forward {{
        type filter hook forward priority 10; policy accept;
        ip saddr @blocked drop
        tcp dport 5555 reject
    }}
    chain user_nat {{
        type nat hook prerouting priority -90; policy accept;
        tcp dport 6666 dnat to 10.66.0.9:66
    }}
}}
"""


def vswitch_rules(hd: HostDaemon) -> list[dict]:
    """Our table's rules as nft reports them (handles left out)."""
    data = nft_json(hd.host, "table", nft.FAMILY, nft.TABLE)
    rules = [x["rule"] for x in data["nftables"] if "rule" in x]
    for r in rules:
        r.pop("handle", None)
        for e in r["expr"]:
            if "counter" in e:
                e["counter"] = None
    return rules


def test_other_tables_untouched_and_nothing_left_behind(hd):
    user = name("t").replace("-", "_")
    hd.host.run("nft", "-f", "-", input=USER_TABLE.format(t=user))
    mine = hd.host.run("nft", "list", "table", "ip", user).stdout
    before_all = hd.host.ruleset()
    hd.start()
    b1, b2 = name("b1"), name("b2")
    n1, n2 = random_net24(), random_net24()
    while n2 == n1:
        n2 = random_net24()
    hd.ctl("add-br", b1, f"subnet={n1}.0/24")
    hd.ctl("add-port", b1, "p", "--netns", name("p"), "--publish", "8081:80")
    hd.ctl("add-br", b2, f"subnet={n2}.0/24", "masquerade=false")
    hd.ctl("set", "port", "p", "publish=8082:80,53:53/udp")
    hd.ctl("del-port", b1, "p")
    assert hd.host.run("nft", "list", "table", "ip", user).stdout == mine
    tables = hd.host.run("nft", "list", "tables").stdout.split("\n")
    assert sorted(t for t in tables if t) == sorted([f"table ip {user}", "table inet vswitch"])
    hd.ctl("del-br", b1)
    assert "inet vswitch" in hd.host.ruleset()     # b2 still needs it
    hd.ctl("del-br", b2)
    assert hd.host.ruleset() == before_all         # no bridge needs it: gone
    hd.ctl("add-br", b1, f"subnet={n1}.0/24")
    assert "inet vswitch" in hd.host.ruleset()
    hd.stop()                                      # a clean stop
    assert hd.host.ruleset() == before_all
    assert hd.host.run("nft", "list", "table", "ip", user).stdout == mine


def test_after_kill_9_a_restart_rebuilds_the_table_from_the_configuration(hd):
    hd.start()
    br = name("br")
    hd.ctl("add-br", br, f"subnet={random_net24()}.0/24")
    hd.ctl("add-port", br, "a", "--netns", name("a"), "--publish", "8080:80")
    hd.ctl("add-port", br, "b", "--netns", name("b"), "--publish", "5353:53/udp")
    expected = vswitch_rules(hd)
    assert len(expected) == 8        # loopback drop, 2 x 2 DNAT, 3 in postrouting
    listing = strip_counters(hd.host.ruleset())

    pid = hd.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10)
    hd.pid = None
    # a crash leaves the table; something stale is added to it meanwhile
    hd.host.run("nft", "add", "rule", "inet", "vswitch", "prerouting", "tcp", "dport", "9999",
                "dnat", "ip", "to", "10.66.0.1:1")
    hd.start()
    assert vswitch_rules(hd) == expected
    assert strip_counters(hd.host.ruleset()) == listing


def test_a_daemon_without_networks_never_touches_nft(hd):
    """Two daemons may share a namespace (tests do): one with no subnet
    leaves the table alone -- here a table of that name someone else owns."""
    hd.host.run("nft", "add", "table", "inet", "vswitch")
    hd.host.run("nft", "add", "chain", "inet", "vswitch", "theirs")
    before = hd.host.ruleset()
    hd.start()
    hd.ctl("add-br", name("l2"))
    hd.ctl("add-port", name("l2"), "p", "--netns", name("p"))
    hd.stop()
    assert hd.host.ruleset() == before


def test_a_stale_table_goes_when_the_new_configuration_has_no_network(hd, tmp_path):
    hd.start()
    hd.ctl("add-br", name("br"), f"subnet={random_net24()}.0/24")
    pid = hd.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10)
    hd.pid = None
    assert "inet vswitch" in hd.host.ruleset()           # left by the crash
    conf = tmp_path / "l2.toml"
    conf.write_text(f'[bridge.{name("l2")}]\n')
    hd.start(conf)
    assert "inet vswitch" not in hd.host.ruleset()
