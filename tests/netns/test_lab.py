"""The lab of the README, on real namespaces and TAPs: reachability, TCP,
learning, live changes and restarts."""
from __future__ import annotations

import itertools
import subprocess
import time

import pytest

from ..helpers import PREFIX, netns_list, ns, ping, ping_eventually

pytestmark = pytest.mark.netns

HOSTS = {"h1": "10.0.0.1", "h2": "10.0.0.2", "h3": "10.0.0.3"}
MACS = {"h1": "02:00:00:00:00:01", "h2": "02:00:00:00:00:02", "h3": "02:00:00:00:00:03"}


def test_all_pairs_ping(lab):
    for a, b in itertools.permutations(HOSTS, 2):
        assert ping_eventually(PREFIX + a, HOSTS[b]), f"{a} cannot reach {b}"


def test_iperf3_tcp_completes(lab):
    server = subprocess.Popen(["ip", "netns", "exec", PREFIX + "h2", "iperf3", "-s", "-1",
                               "-p", "5211"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = ns(PREFIX + "h1", "iperf3", "-c", HOSTS["h2"], "-p", "5211", "-t", "2", "-J",
               timeout=30)
        import json
        result = json.loads(r.stdout)
        received = result["end"]["sum_received"]["bytes"]
        assert received > 10_000_000, received
    finally:
        server.wait(timeout=10)


def test_learned_macs_appear_on_the_right_ports(lab):
    for h in ("h2", "h3"):
        assert ping_eventually(PREFIX + "h1", HOSTS[h])
    rows = lab.call("fdb/show", bridge=lab.br)
    where = {r["mac"]: r["port"] for r in rows}
    for h in HOSTS:
        assert where.get(MACS[h]) == h, rows
    assert all(r["vlan"] == 0 and r["age"] is not None and r["age"] < 60 for r in rows)
    text = lab.ctl("fdb/show", lab.br).stdout
    assert "02:00:00:00:00:02" in text and "h2" in text


def test_del_port_makes_the_host_unreachable_and_removes_its_namespace(lab):
    assert ping_eventually(PREFIX + "h1", HOSTS["h3"])
    lab.ctl("del-port", lab.br, "h3")
    assert not ping(PREFIX + "h1", HOSTS["h3"], wait=1)
    assert PREFIX + "h3" not in netns_list()      # the switch created it
    assert "h3" not in lab.ctl("list-ports", lab.br).stdout.split()
    assert ping(PREFIX + "h1", HOSTS["h2"])


def test_add_port_live_then_reachable(lab):
    h4 = PREFIX + "h4"
    lab.ctl("add-port", lab.br, "h4", "--netns", h4, "--ip", "10.0.0.4/24")
    assert ping_eventually(h4, HOSTS["h1"])
    assert lab.port("h4")["state"] == "up"


def test_restart_brings_every_port_back(lab):
    h4 = PREFIX + "h4"
    lab.ctl("add-port", lab.br, "h4", "--netns", h4, "--ip", "10.0.0.4/24")
    lab.restart()   # no --config: from the database
    names = [p["name"] for p in lab.show()["bridges"][0]["ports"]]
    assert names == ["h1", "h2", "h3", "h4"]
    for a, b in (("h1", "10.0.0.2"), ("h3", "10.0.0.4"), ("h4", "10.0.0.1")):
        assert ping_eventually(PREFIX + a, b)


def test_clean_stop_removes_only_namespaces_the_switch_created(lab):
    own = PREFIX + "keep"
    subprocess.run(["ip", "netns", "add", own], check=True)
    try:
        lab.ctl("add-port", lab.br, "p9", "--netns", own, "--ip", "10.0.0.9/24")
        assert ping_eventually(own, HOSTS["h1"])
        lab.ctl("del-port", "p9")
        assert own in netns_list()            # existed before: never removed
        lab.ctl("add-port", lab.br, "p9", "--netns", own, "--ip", "10.0.0.9/24")
        lab.stop()
        left = {n for n in netns_list() if n.startswith(PREFIX)}
        assert left == {own}
    finally:
        subprocess.run(["ip", "netns", "del", own], check=False)


def test_may_exist_is_idempotent(lab):
    for _ in range(2):
        lab.ctl("add-br", lab.br, "--may-exist")
        lab.ctl("--may-exist", "add-port", lab.br, "h1")
        lab.ctl("add-port", lab.br, "h1", "--may-exist", "--netns", PREFIX + "h1",
                "--ip", "10.0.0.1/24", "--mac", MACS["h1"])
    assert lab.ctl("list-ports", lab.br).stdout.split() == ["h1", "h2", "h3"]
    # as with ovs-vsctl: the port exists, so nothing changes, whatever else
    # the command says
    before = lab.db.read_text()
    lab.ctl("add-port", lab.br, "h1", "--may-exist", "--ip", "10.0.0.99/24", "tag=5")
    assert lab.db.read_text() == before
    assert lab.port("h1")["ip"] == ["10.0.0.1/24"] and "tag" not in lab.port("h1")
    r = lab.ctl("add-br", lab.br, check=False)
    assert r.returncode == 1 and "already exists" in r.stderr


def test_port_without_offloads_gets_segments_from_an_offloading_one(lab):
    h5 = PREFIX + "h5"
    lab.ctl("add-port", lab.br, "h5", "--netns", h5, "--ip", "10.0.0.5/24", "offload=false")
    assert lab.port("h5")["offload"] is False
    server = subprocess.Popen(["ip", "netns", "exec", h5, "iperf3", "-s", "-1", "-p", "5213"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = ns(PREFIX + "h1", "iperf3", "-c", "10.0.0.5", "-p", "5213", "-t", "2", "-J",
               timeout=30)
        import json
        assert json.loads(r.stdout)["end"]["sum_received"]["bytes"] > 10_000_000
    finally:
        server.wait(timeout=10)
    stats = {r["port"]: r for r in lab.call("port/stats", bridge=lab.br)}
    # h1 hands over 64 KB segments; h5 only ever receives MTU-sized frames
    assert stats["h1"]["rx_bytes"] / stats["h1"]["rx_packets"] > 3000
    assert stats["h5"]["tx_bytes"] / stats["h5"]["tx_packets"] <= 1514
    assert stats["h5"]["drops"]["no_gso"] == 0
