"""Addresses handed out on a subnet bridge: allocation, persistence, reuse,
refusals that change nothing, default routes, the bridge's own port."""
from __future__ import annotations

import ipaddress
import json

import pytest

from ..helpers import PREFIX, name, ns, our_netns, sh
from ..hostns import HostDaemon, random_net24

pytestmark = pytest.mark.netns


def addr_in_netns(netns: str, dev: str = "eth0") -> list[str]:
    out = json.loads(ns(netns, "ip", "-j", "-4", "addr", "show", "dev", dev).stdout)
    return [f"{a['local']}/{a['prefixlen']}" for link in out for a in link["addr_info"]]


def default_routes(netns: str) -> list[dict]:
    return json.loads(ns(netns, "ip", "-j", "-4", "route", "show", "default").stdout)


def net_show(d: HostDaemon, br: str) -> dict:
    return json.loads(d.ctl("net/show", br, "--json").stdout)


def port_ips(d: HostDaemon, br: str) -> dict[str, str]:
    return {p["name"]: p["ipv4"] for p in net_show(d, br)["ports"]}


def refused(d: HostDaemon, *args: str, needle: str) -> None:
    """A one-line error, and nothing changed (configuration, database,
    namespaces)."""
    before = (json.dumps(d.show(), sort_keys=True), d.db.read_text(), our_netns())
    r = d.ctl(*args, check=False)
    assert r.returncode == 1, (args, r.stdout)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("vswitchctl: "), r.stderr
    assert needle in r.stderr, r.stderr
    assert (json.dumps(d.show(), sort_keys=True), d.db.read_text(), our_netns()) == before


def test_addresses_allocated_kept_across_restart_and_reused(hd):
    hd.start()
    br, net = name("br"), random_net24()
    hd.ctl("add-br", br, f"subnet={net}.0/24")
    p1, p2 = name("p1"), name("p2")
    hd.ctl("add-port", br, "p1", "--netns", p1)
    hd.ctl("add-port", br, "p2", "--netns", p2)
    ips = port_ips(hd, br)
    assert ips == {"p1": f"{net}.2/24", "p2": f"{net}.3/24"}
    info = net_show(hd, br)
    assert info["gateway"] == f"{net}.1" and info["gateway_port"] == br
    assert info["subnet"] == f"{net}.0/24" and info["masquerade"] is True
    # the namespaces have them, and a default route through the gateway
    assert addr_in_netns(p1) == [ips["p1"]] and addr_in_netns(p2) == [ips["p2"]]
    for n in (p1, p2):
        routes = default_routes(n)
        assert [(r["gateway"], r["dev"]) for r in routes] == [(f"{net}.1", "eth0")]
    # the bridge's own port holds the gateway in the daemon's namespace
    gw = json.loads(hd.host.run("ip", "-j", "-4", "addr", "show", "dev", br).stdout)
    assert [a["local"] for a in gw[0]["addr_info"]] == [f"{net}.1"]
    shown = hd.show()["bridges"][0]["ports"]
    assert shown[0]["name"] == br and shown[0]["local"] and shown[0]["state"] == "up"
    assert sh("ip", "netns", "exec", p1, "ping", "-c1", "-W2", f"{net}.1").returncode == 0

    hd.restart()
    assert port_ips(hd, br) == ips
    assert addr_in_netns(p1) == [ips["p1"]]

    hd.ctl("del-port", br, "p1")
    hd.ctl("add-port", br, "p3", "--netns", name("p3"))
    assert port_ips(hd, br) == {"p2": f"{net}.3/24", "p3": f"{net}.2/24"}   # reused


def test_a_small_subnet_fills_up_and_refusals_change_nothing(hd):
    hd.start()
    br, net = name("br"), random_net24()
    hd.ctl("add-br", br, f"subnet={net}.0/29")     # .1 gateway, .2-.6 for ports
    for i in range(5):
        hd.ctl("add-port", br, f"f{i}", "--netns", name(f"f{i}"))
    assert sorted(port_ips(hd, br).values()) == [f"{net}.{i}/29" for i in range(2, 7)]
    refused(hd, "add-port", br, "f5", "--netns", name("f5"),
            needle=f"subnet {net}.0/29 is full (5 addresses for ports, all taken)")
    hd.ctl("del-port", br, "f4")
    refused(hd, "add-port", br, "x", "--netns", name("x"), "--ip", "10.254.254.9/24",
            needle=f"10.254.254.9 is outside the subnet {net}.0/29")
    refused(hd, "add-port", br, "x", "--netns", name("x"), "--ip", f"{net}.2",
            needle=f"{net}.2 is already port f0's address")
    refused(hd, "add-port", br, "x", "--netns", name("x"), "--ip", f"{net}.1",
            needle=f"{net}.1 is the gateway's address")
    refused(hd, "add-port", br, "x", "--netns", name("x"), "--ip", f"{net}.6/24",
            needle=f"the subnet is {net}.0/29")
    refused(hd, "del-port", br, br, needle=f"port {br} is bridge {br}'s own port")
    refused(hd, "set", "port", br, "tag=5", needle=f"port {br} is bridge {br}'s own port")
    refused(hd, "add-port", br, br, "--netns", name("x"), needle="already exists")
    refused(hd, "add-br", name("b2"), f"subnet={net}.0/24", needle="overlaps bridge")
    refused(hd, "add-br", name("b2"), f"subnet={net}.1/24", needle="host bits set")
    # --ip inside the subnet reserves that address
    hd.ctl("add-port", br, "r", "--netns", name("r"), "--ip", f"{net}.6")
    assert port_ips(hd, br)["r"] == f"{net}.6/29"
    assert addr_in_netns(name("r")) == [f"{net}.6/29"]


def test_a_users_default_route_is_kept_and_shown(hd):
    hd.start()
    br, net = name("br"), random_net24()
    hd.ctl("add-br", br, f"subnet={net}.0/24")
    own = name("own")
    sh("ip", "netns", "add", own)
    try:
        # the user's own uplink and default route in that namespace
        a, b = name("owa"), name("owb")
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", own)
        sh("ip", "link", "set", b, "netns", hd.host.outside)
        ns(own, "ip", "addr", "add", "10.253.7.2/24", "dev", a)
        ns(own, "ip", "link", "set", a, "up")
        ns(own, "ip", "route", "add", "default", "via", "10.253.7.1")
        hd.ctl("add-port", br, "o", "--netns", own)
        routes = default_routes(own)
        assert [r["gateway"] for r in routes] == ["10.253.7.1"]
        port = net_show(hd, br)["ports"][0]
        assert port["default_route"].startswith("the namespace's own, via 10.253.7.1")
        assert "default route: the namespace's own" in hd.ctl("show").stdout
    finally:
        hd.stop()
        sh("ip", "netns", "del", own, check=False)


def test_subnet_and_gateway_change_live(hd):
    hd.start()
    br, n1, n2 = name("br"), random_net24(), random_net24()
    while n2 == n1:
        n2 = random_net24()
    hd.ctl("add-br", br, f"subnet={n1}.0/24")
    p = name("p")
    hd.ctl("add-port", br, "p", "--netns", p)
    hd.ctl("add-port", br, "q", "--netns", name("q"), "--ip", f"{n1}.50")
    hd.ctl("set", "bridge", br, f"subnet={n2}.0/24")
    # every address of the old subnet moves to the new one, in port order
    assert port_ips(hd, br) == {"p": f"{n2}.2/24", "q": f"{n2}.3/24"}
    assert addr_in_netns(p) == [f"{n2}.2/24"]
    assert [r["gateway"] for r in default_routes(p)] == [f"{n2}.1"]
    hd.ctl("set", "bridge", br, f"gateway={n2}.254")
    assert [r["gateway"] for r in default_routes(p)] == [f"{n2}.254"]
    assert sh("ip", "netns", "exec", p, "ping", "-c1", "-W2", f"{n2}.254").returncode == 0
    hd.restart()
    assert port_ips(hd, br) == {"p": f"{n2}.2/24", "q": f"{n2}.3/24"}
    assert [r["gateway"] for r in default_routes(p)] == [f"{n2}.254"]
    # cleared: the bridge's own port and our routes go, the addresses stay
    hd.ctl("set", "bridge", br, "subnet=")
    assert default_routes(p) == [] and addr_in_netns(p) == [f"{n2}.2/24"]
    assert [x["name"] for x in hd.show()["bridges"][0]["ports"]] == ["p", "q"]
    assert hd.host.run("ip", "link", "show", br, check=False).returncode != 0
    assert "inet vswitch" not in hd.host.ruleset()


def test_reload_keeps_addresses_the_file_leaves_open(hd, tmp_path):
    br, net = name("br"), random_net24()
    a, b = PREFIX + "ra", PREFIX + "rb"
    conf = tmp_path / "net.toml"
    conf.write_text(f'[bridge.{br}]\nsubnet = "{net}.0/24"\n'
                    f'[bridge.{br}.port.a]\nnetns = "{a}"\n'
                    f'[bridge.{br}.port.b]\nnetns = "{b}"\n')
    hd.start(conf)
    ips = port_ips(hd, br)
    assert set(ips.values()) == {f"{net}.2/24", f"{net}.3/24"}
    # a reload (and a restart from the same file) hands out the same ones
    r = hd.ctl("reload", str(conf))
    assert r.stdout.strip() == "nothing changed"
    hd.stop()
    hd.start(conf)
    assert port_ips(hd, br) == ips
    # the file takes b's address for a new port: b moves, a keeps its own
    conf.write_text(conf.read_text() + f'[bridge.{br}.port.c]\nnetns = "{PREFIX}rc"\n'
                    f'ip = "{ips["b"]}"\n')
    hd.ctl("reload")
    after = port_ips(hd, br)
    assert after["a"] == ips["a"] and after["c"] == ips["b"]
    assert after["b"] not in (ips["a"], ips["b"])
    assert ipaddress.ip_interface(after["b"]) in ipaddress.ip_network(f"{net}.0/24")
    assert addr_in_netns(b) == [after["b"]]


def test_a_rebuilt_port_gets_its_address_and_route_back(hd):
    """--may-exist on a port whose namespace was deleted builds it again
    (issue 14's path): the same address, and the default route too."""
    hd.start()
    br, net = name("br"), random_net24()
    hd.ctl("add-br", br, f"subnet={net}.0/24")
    p = name("p")
    hd.ctl("add-port", br, "p", "--netns", p)
    sh("ip", "netns", "del", p)
    hd.ctl("add-port", br, "p", "--netns", p, "--may-exist")
    assert addr_in_netns(p) == [f"{net}.2/24"]
    assert [r["gateway"] for r in default_routes(p)] == [f"{net}.1"]
    assert net_show(hd, br)["ports"][0]["default_route"] == f"via {net}.1"
    assert "subnet: " + f"{net}.0/24, gateway: {net}.1, masquerade: true" in hd.ctl("show").stdout


def test_reload_of_a_new_subnet_readdresses_live(hd, tmp_path):
    br, n1, n2 = name("br"), random_net24(), random_net24()
    while n2 == n1:
        n2 = random_net24()
    a = PREFIX + "sa"
    conf = tmp_path / "net.toml"
    conf.write_text(f'[bridge.{br}]\nsubnet = "{n1}.0/24"\n[bridge.{br}.port.a]\nnetns = "{a}"\n')
    hd.start(conf)
    assert addr_in_netns(a) == [f"{n1}.2/24"]
    conf.write_text(conf.read_text().replace(n1, n2))
    r = hd.ctl("reload")
    assert "bridges changed" in r.stdout and br in r.stdout, r.stdout
    assert addr_in_netns(a) == [f"{n2}.2/24"]
    assert [r["gateway"] for r in default_routes(a)] == [f"{n2}.1"]
    gw = json.loads(hd.host.run("ip", "-j", "-4", "addr", "show", "dev", br).stdout)
    assert [x["local"] for x in gw[0]["addr_info"]] == [f"{n2}.1"]
    assert f"{n2}.0/24" in hd.host.ruleset() and f"{n1}.0/24" not in hd.host.ruleset()
