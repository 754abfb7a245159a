"""VXLAN ports as a user drives them with vswitchctl: clear one-line errors
that change nothing, live changes with `set port`, `reload`, what `show`
says about a local_ip that is not there yet, a UDP port already taken."""
from __future__ import annotations

import json

import pytest

from ..helpers import PREFIX, ns
from .underlay import Hosts, NsDaemon, subnet

pytestmark = pytest.mark.netns


@pytest.fixture
def d(tmp_path):
    hosts = Hosts()
    under = subnet()
    u, k = hosts.netns("vu"), hosts.netns("vk")
    hosts.veth(u, "u0", k, "k0", f"{under}.1/24", f"{under}.2/24")
    daemon = NsDaemon(tmp_path / "d", u)
    daemon.under, daemon.u = under, u
    daemon.br = PREFIX + "vbr"
    daemon.start_with({"bridge": {daemon.br: {}}})
    yield daemon
    daemon.stop()
    hosts.close()


def listening(netns: str) -> set[int]:
    out = ns(netns, "ss", "-Hnlu").stdout.split()
    return {int(w.rsplit(":", 1)[1]) for w in out if ":" in w and w.rsplit(":", 1)[1].isdigit()}


def test_errors_are_one_line_and_change_nothing(d):
    before = d.show()
    for args, needle in [
        (("type=vxlan",), "needs remote_ip"),
        (("type=vxlan", "remote_ip=10.1.2"), "not an IPv4 address"),
        (("type=vxlan", "remote_ip=10.1.0.2", "key=16777216"), "out of range"),
        (("type=vxlan", "remote_ip=10.1.0.2", "--netns", "x"), "no device of its own"),
        (("remote_ip=10.1.0.2",), "for vxlan ports"),
    ]:
        r = d.ctl("add-port", d.br, "vx", *args, check=False)
        assert r.returncode == 1 and needle in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1
    assert d.show() == before
    d.ctl("add-port", d.br, "vx", "type=vxlan", f"remote_ip={d.under}.2")
    r = d.ctl("add-port", d.br, "vy", "type=vxlan", f"remote_ip={d.under}.2", check=False)
    assert r.returncode == 1 and "already receives VNI 0" in r.stderr
    r = d.ctl("set", "port", "vx", "key=abc", check=False)
    assert r.returncode == 1 and "must be an integer" in r.stderr
    r = d.ctl("set", "port", "vx", "netns=x", check=False)
    assert r.returncode == 1
    assert [p["name"] for p in d.show()["bridges"][0]["ports"]] == ["vx"]
    assert "key" not in d.port("vx")   # the failed set changed nothing


def test_live_changes_show_and_reload(d, tmp_path):
    d.ctl("add-port", d.br, "vx", "type=vxlan", f"remote_ip={d.under}.2", "key=10",
          "local_ip=10.250.0.1")
    port = d.port("vx")
    assert port["state"] == "up" and "is on no interface" in port["warning"]
    assert "warning: local_ip 10.250.0.1 is on no interface" in d.ctl("show").stdout
    ns(d.u, "ip", "addr", "add", "10.250.0.1/32", "dev", "lo")
    assert "warning" not in d.port("vx")
    assert port["device_mtu"] == 1450 and port["mtu_from"] == "underlay"

    d.ctl("set", "port", "vx", f"remote_ip={d.under}.2,{d.under}.3")
    stats = next(r for r in d.call("port/stats") if r["port"] == "vx")
    assert [r["remote"] for r in stats["remotes"]] == [f"{d.under}.2", f"{d.under}.3"]
    d.ctl("set", "port", "vx", "key=11", "mtu=1400", "dst_port=8472")
    port = d.port("vx")
    assert (port["key"], port["device_mtu"], port["dst_port"]) == (11, 1400, 8472)
    assert 8472 in listening(d.u) and 4789 not in listening(d.u)
    text = d.ctl("show").stdout
    assert f"remote_ip: {d.under}.2,{d.under}.3, key: 11, local_ip: 10.250.0.1" in text

    # reload: only the differences, the tunnel changed in place
    cfg = tmp_path / "r.toml"
    data = json.loads(d.db.read_text())["config"]
    data["bridge"][d.br]["port"]["vx"]["key"] = 12
    from ..helpers import to_toml
    cfg.write_text(to_toml(data))
    r = d.ctl("reload", str(cfg))
    assert "ports changed: vx" in r.stdout
    assert d.port("vx")["key"] == 12
    d.restart()
    assert d.port("vx")["key"] == 12 and d.port("vx")["state"] == "up"
    d.ctl("del-port", "vx")
    assert 8472 not in listening(d.u)


def test_a_udp_port_already_taken(d):
    ns(d.u, "ip", "link", "add", "kvx", "type", "vxlan", "id", "1", "dstport", "4790",
       "local", f"{d.under}.1")
    ns(d.u, "ip", "link", "set", "kvx", "up")
    r = d.ctl("add-port", d.br, "vx", "type=vxlan", f"remote_ip={d.under}.2",
              "dst_port=4790", check=False)
    assert r.returncode == 1 and "Address already in use" in r.stderr, r.stderr
    assert d.show()["bridges"][0]["ports"] == []
