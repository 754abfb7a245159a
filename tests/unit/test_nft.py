"""The nftables batch built from a configuration (vswitch/nft.py), against
golden structures.  The real nft takes these batches in tests/networks."""
from __future__ import annotations

from vswitch import nft
from vswitch.config import parse_switch
from vswitch.netconfig import assign_addresses

T = {"family": "inet", "name": "vswitch"}


def rule(chain, comment, *expr):
    return {"add": {"rule": {"family": "inet", "table": "vswitch", "chain": chain,
                             "comment": comment, "expr": list(expr)}}}


def m(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


IIF = {"meta": {"key": "iifname"}}
OIF = {"meta": {"key": "oifname"}}
LOCAL = m({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
IPV4 = m({"meta": {"key": "nfproto"}}, "ipv4")
LOOPBACK = {"prefix": {"addr": "127.0.0.0", "len": 8}}


def test_no_subnet_no_table():
    cfg = parse_switch({"bridge": {"br0": {"port": {"h1": {"netns": "h1"}}}}})
    assert not nft.needed(cfg)
    assert nft.batch(cfg) == {"nftables": [{"add": {"table": T}}, {"delete": {"table": T}}]}
    assert nft.batch(cfg) == nft.removal()


def test_a_docker_like_network():
    cfg = assign_addresses(parse_switch({"bridge": {
        "br0": {"subnet": "10.88.0.0/24", "port": {
            "web": {"netns": "web", "publish": ["8080:80", "5353:53/udp"]},
            "db": {"netns": "db"}}},
        "iso": {"subnet": "10.89.0.0/24", "masquerade": False},
        "l2": {"port": {"x": {"netns": "x"}}}}}))
    batch = nft.batch(cfg)["nftables"]
    assert batch[:3] == [{"add": {"table": T}}, {"delete": {"table": T}}, {"add": {"table": T}}]
    assert batch[3:7] == [
        {"add": {"chain": {"family": "inet", "table": "vswitch", "name": name, "type": t,
                           "hook": hook, "prio": prio, "policy": "accept"}}}
        for name, t, hook, prio in (("raw_prerouting", "filter", "prerouting", -300),
                                    ("prerouting", "nat", "prerouting", -100),
                                    ("output", "nat", "output", -100),
                                    ("postrouting", "nat", "postrouting", 100))]

    def dnat(chain, spec, proto, hport, addr, port):
        return rule(chain, f"br0: port web publishes {spec}", IPV4, LOCAL,
                    m({"payload": {"protocol": proto, "field": "dport"}}, hport),
                    {"dnat": {"family": "ip", "addr": addr, "port": port}})

    def common(br, net, masq):
        out = []
        if masq:
            out.append(rule("postrouting", f"{br}: {net} to the outside",
                            m({"payload": {"protocol": "ip", "field": "saddr"}},
                              {"prefix": {"addr": net.split("/")[0], "len": 24}}),
                            m(OIF, br, "!="), {"masquerade": None}))
        return out + [
            rule("postrouting", f"{br}: hairpin to published ports", m(IIF, br), m(OIF, br),
                 m({"ct": {"key": "status"}}, "dnat", "in"), {"masquerade": None}),
            rule("postrouting", f"{br}: 127.0.0.1:HOSTPORT from the host", m(OIF, br),
                 m({"payload": {"protocol": "ip", "field": "saddr"}}, LOOPBACK),
                 {"masquerade": None})]

    def drop(br):
        return rule("raw_prerouting", f"{br}: no way in to the host's loopback", m(IIF, br),
                    m({"payload": {"protocol": "ip", "field": "daddr"}}, LOOPBACK),
                    {"counter": None}, {"drop": None})

    assert batch[7:] == [
        drop("br0"),
        dnat("prerouting", "8080:80/tcp", "tcp", 8080, "10.88.0.2", 80),
        dnat("output", "8080:80/tcp", "tcp", 8080, "10.88.0.2", 80),
        dnat("prerouting", "5353:53/udp", "udp", 5353, "10.88.0.2", 53),
        dnat("output", "5353:53/udp", "udp", 5353, "10.88.0.2", 53),
        *common("br0", "10.88.0.0/24", True),
        drop("iso"),
        *common("iso", "10.89.0.0/24", False),
    ]
