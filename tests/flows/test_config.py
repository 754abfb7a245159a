"""Flow export as a user configures it: `set bridge` keys, persistence across
restarts, reload, bad input refused whole, a collector that is down, port
numbers that stay."""
from __future__ import annotations

import json

import pytest

from ..helpers import PREFIX, ns, wait_for
from .collectors import Nfcapd, free_udp_port

pytestmark = pytest.mark.netns

BR = PREFIX + "cbr"


@pytest.fixture
def two(daemon):
    daemon.start_with({"bridge": {BR: {"port": {
        "a": {"netns": PREFIX + "ca", "ip": "10.62.0.1/24"},
        "b": {"netns": PREFIX + "cb", "ip": "10.62.0.2/24"}}}}})
    return daemon


def bridge(d) -> dict:
    return next(b for b in d.show()["bridges"] if b["name"] == BR)


def test_set_persist_restart_and_turn_off(two):
    port = free_udp_port()
    two.ctl("set", "bridge", BR, f"netflow=127.0.0.1:{port}", "netflow_active_timeout=30",
            "ipfix=127.0.0.1:4739", "ipfix_sampling=64", f"sflow=[::1]:{port}")
    fe = bridge(two)["flow_export"]
    assert fe["netflow"] == {"targets": [f"127.0.0.1:{port}"], "active_timeout": 30,
                             "idle_timeout": 15, "engine_type": 0, "engine_id": 0}
    assert fe["ipfix"]["sampling"] == 64 and fe["sflow"]["targets"] == [f"[::1]:{port}"]
    assert "netflow: 127.0.0.1" in two.ctl("show").stdout
    stats = two.call("flow/stats", bridge=BR)
    assert stats["netflow"]["cache"]["max_flows"] == 65536
    assert stats["ipfix"]["cache"]["flows"] == 0
    two.restart()
    assert bridge(two)["flow_export"] == fe
    assert set(two.call("flow/stats", bridge=BR)) >= {"netflow", "ipfix", "sflow"}
    # empty value: that export is off, the others untouched
    two.ctl("set", "bridge", BR, "ipfix=", "sflow=")
    assert set(bridge(two)["flow_export"]) == {"netflow"}
    two.ctl("set", "bridge", BR, "netflow=")
    assert "flow_export" not in bridge(two)
    text = two.ctl("flow/stats", BR).stdout
    assert "off" in text
    two.restart()
    assert "flow_export" not in bridge(two)
    db = json.loads(two.db.read_text())
    assert not any(k.startswith(("netflow", "ipfix", "sflow"))
                   for k in db["config"]["bridge"][BR])


@pytest.mark.parametrize("setting,message", [
    ("netflow=collector.example:2055", "not an IP address"),
    ("ipfix_sampling=0", "out of range"),
    ("sflow_polling=-1", "out of range"),
    ("netflow_bogus=1", "unknown bridge setting"),
])
def test_bad_value_changes_nothing(two, setting, message):
    two.ctl("set", "bridge", BR, "netflow=127.0.0.1:2055")
    before = two.db.read_text()
    r = two.ctl("set", "bridge", BR, "ipfix=127.0.0.1:4739", setting, check=False)
    assert r.returncode == 1 and message in r.stderr and len(r.stderr.splitlines()) == 1
    assert two.db.read_text() == before
    assert set(bridge(two)["flow_export"]) == {"netflow"}


def test_collector_down_costs_a_counter(two):
    port = free_udp_port()   # nobody listens there
    two.ctl("set", "bridge", BR, f"netflow=127.0.0.1:{port}", "netflow_idle_timeout=1")

    def sent() -> dict:
        return two.call("flow/stats", bridge=BR)["netflow"]["collectors"][f"127.0.0.1:{port}"]
    # The first datagram goes out; the ICMP port unreachable it earns makes
    # the next send fail with ECONNREFUSED.  Each round is a flow that goes
    # idle and is exported.
    for _ in range(6):
        before = sent()
        assert ns(PREFIX + "ca", "ping", "-c", "2", "-i", "0.2", "10.62.0.2").returncode == 0
        wait_for(lambda: sent() != before, 10)
        if sent()["refused"]:
            break
    st = sent()
    assert st["refused"] > 0 and st["datagrams"] >= 1 and st["errors"] == 0, st
    assert ns(PREFIX + "ca", "ping", "-c", "1", "10.62.0.2").returncode == 0


def test_turning_off_sends_what_was_counted(two, tmp_path):
    nf = Nfcapd(tmp_path / "nf")
    try:
        # long timeouts: nothing would leave for ten minutes
        two.ctl("set", "bridge", BR, f"netflow={nf.target}", "netflow_idle_timeout=600")
        ns(PREFIX + "ca", "ping", "-c", "3", "-i", "0.2", "10.62.0.2")
        assert two.call("flow/stats", bridge=BR)["netflow"]["cache"]["flows"] >= 2
        two.ctl("set", "bridge", BR, "netflow=")
    finally:
        nf.stop()
    pings = [r for r in nf.rows() if r.src == "10.62.0.1" and r.proto == "ICMP"]
    assert sum(r.packets for r in pings) == 3


def test_reload_turns_export_on_and_off(two, tmp_path):
    cfg = tmp_path / "r.toml"
    base = (f'[bridge.{BR}]\n'
            f'[bridge.{BR}.port.a]\nnetns = "{PREFIX}ca"\nip = "10.62.0.1/24"\n'
            f'[bridge.{BR}.port.b]\nnetns = "{PREFIX}cb"\nip = "10.62.0.2/24"\n')
    cfg.write_text(base.replace(f"[bridge.{BR}]\n",
                                f'[bridge.{BR}]\nipfix = "127.0.0.1:4739"\n'
                                'ipfix_cache_max_flows = 100\n'))
    r = two.ctl("reload", str(cfg))
    assert BR in r.stdout
    assert two.call("flow/stats", bridge=BR)["ipfix"]["cache"]["max_flows"] == 100
    cfg.write_text(base)
    two.ctl("reload", str(cfg))
    assert "flow_export" not in bridge(two)
    assert "ipfix" not in two.call("flow/stats", bridge=BR)


def test_port_numbers_stay_and_are_freed(two):
    nums = {p["name"]: p["ofport"] for p in bridge(two)["ports"]}
    assert sorted(nums.values()) == [1, 2]
    two.ctl("add-port", BR, "c", "--netns", PREFIX + "cc")
    assert {p["name"]: p["ofport"] for p in bridge(two)["ports"]}["c"] == 3
    two.ctl("del-port", BR, "a")
    two.restart()
    after = {p["name"]: p["ofport"] for p in bridge(two)["ports"]}
    assert after == {"b": nums["b"], "c": 3}
    two.ctl("add-port", BR, "d", "--netns", PREFIX + "cd")   # takes the freed number
    assert {p["name"]: p["ofport"] for p in bridge(two)["ports"]}["d"] == nums["a"]
    stats = {r["port"]: r["ofport"] for r in two.call("port/stats", bridge=BR)}
    assert stats == {"b": nums["b"], "c": 3, "d": nums["a"]}
    assert "ofport: 3" in two.ctl("port/stats", BR).stdout
