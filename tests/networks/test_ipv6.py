"""IPv6 on a network: a /64 beside the IPv4 subnet, addresses handed out
from it, a default route, and no NAT: the outside, given a route to the
/64 through the host, sees each namespace's own address."""
from __future__ import annotations

import json
import random

import pytest

from ..helpers import name, ns, wait_for
from ..hostns import WHOAMI6, TCP_ASK, enable_ipv6, python_in, random_net24

pytestmark = pytest.mark.netns


def test_an_ipv6_subnet_is_routed_without_nat(hd, servers):
    h = hd.host
    link6 = f"fd{random.randint(0, 255):02x}:{random.randint(1, 0xffff):x}:1"
    sub6 = f"fd{random.randint(0, 255):02x}:{random.randint(1, 0xffff):x}:2"
    host6, out6 = enable_ipv6(h, link6)
    ns(h.outside, "ip", "-6", "route", "add", f"{sub6}::/64", "via", host6)
    hd.start()
    br, net = name("br"), random_net24()
    hd.ctl("add-br", br, f"subnet={net}.0/24", f"subnet6={sub6}::/64")
    p = name("p")
    hd.ctl("add-port", br, "p", "--netns", p)
    hd.ctl("add-port", br, "q", "--netns", name("q"), "--ip", f"{sub6}::99")
    info = json.loads(hd.ctl("net/show", br, "--json").stdout)
    assert (info["subnet6"], info["gateway6"]) == (f"{sub6}::/64", f"{sub6}::1")
    ports = {x["name"]: x for x in info["ports"]}
    assert ports["p"]["ipv4"] == f"{net}.2/24" and ports["p"]["ipv6"] == f"{sub6}::2/64"
    assert ports["q"]["ipv6"] == f"{sub6}::99/64"
    assert ports["p"]["default_route6"] == f"via {sub6}::1"
    routes = json.loads(ns(p, "ip", "-j", "-6", "route", "show", "default").stdout)
    assert [(r["gateway"], r["dev"]) for r in routes] == [(f"{sub6}::1", "eth0")]
    assert h.sysctl("net.ipv6.conf.all.forwarding") == "1"
    gw = json.loads(h.run("ip", "-j", "-6", "addr", "show", "dev", br, "scope", "global").stdout)
    assert [a["local"] for a in gw[0]["addr_info"] if "local" in a] == [f"{sub6}::1"]

    servers.python_in(h.outside, WHOAMI6, "7006")

    def ask() -> str | None:
        r = python_in(p, TCP_ASK, out6, "7006", "2")
        return r.stdout.strip() if r.returncode == 0 else None
    # (the addresses go through duplicate address detection first)
    assert wait_for(lambda: ask() is not None, 15)
    assert ask() == f"{sub6}::2"          # its own address: routed, not NATed
    assert "ip6" not in h.ruleset()

    hd.restart()
    info = json.loads(hd.ctl("net/show", br, "--json").stdout)
    assert {x["name"]: x["ipv6"] for x in info["ports"]} == \
        {"p": f"{sub6}::2/64", "q": f"{sub6}::99/64"}
    hd.ctl("set", "bridge", br, "subnet6=")
    assert json.loads(ns(p, "ip", "-j", "-6", "route", "show", "default").stdout) == []
    assert hd.show()["bridges"][0]["ports"][0]["ip"] == [f"{net}.1/24"]   # its own port
