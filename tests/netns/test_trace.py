"""`vswitchctl trace` against real forwarding: for a learned unicast, a
flood, a VLAN drop and a bond, the trace names exactly the ports (and
bond member, and tagging) where the same frame, then really sent from the
input port's namespace, comes out."""
from __future__ import annotations

import json
import secrets
import time

import pytest
from scapy.layers.l2 import Dot1Q, Ether

from ..helpers import PREFIX, name, sh
from ..l2 import RawPort

pytestmark = pytest.mark.netns

# How long a sent frame may take to come out anywhere (a generous bound: it
# takes well under a millisecond)
WINDOW = 0.5
ETYPE = 0x88B5          # local experimental: no stack in the namespaces answers it
MACS = {"h1": "02:00:00:00:d1:01", "h2": "02:00:00:00:d1:02", "h3": "02:00:00:00:d1:03",
        "far": "02:00:00:00:d1:0f"}


@pytest.fixture
def traced(daemon):
    """h1 trunk (all VLANs), h2 access VLAN 10, h3 trunk of 0 and 10, and an
    active-backup bond bd whose members' peers (vb0, vb1) we listen on."""
    pairs = [(name("ta0"), name("tb0")), (name("ta1"), name("tb1"))]
    for a, b in pairs:
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        for end in (a, b):
            sh("sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1")
        sh("ip", "link", "set", b, "up")
    br = PREFIX + "tbr"
    try:
        daemon.start_with({"bridge": {br: {"port": {
            "h1": {"netns": PREFIX + "t1"},
            "h2": {"netns": PREFIX + "t2", "tag": 10},
            "h3": {"netns": PREFIX + "t3", "trunks": "0,10"},
            "bd": {"type": "bond", "interfaces": [pairs[0][0], pairs[1][0]],
                   "bond_mode": "active-backup"}}}}})
        for n in ("t1", "t2", "t3"):
            sh("ip", "netns", "exec", PREFIX + n, "sysctl", "-qw",
               "net.ipv6.conf.all.disable_ipv6=1")
        listeners = {p: RawPort("eth0", PREFIX + n)
                     for p, n in (("h1", "t1"), ("h2", "t2"), ("h3", "t3"))}
        listeners[pairs[0][0]] = RawPort(pairs[0][1])
        listeners[pairs[1][0]] = RawPort(pairs[1][1])
        daemon.br, daemon.members = br, [pairs[0][0], pairs[1][0]]
        daemon.listeners = listeners
        yield daemon
        for lp in listeners.values():
            lp.close()
    finally:
        for a, _b in pairs:
            sh("ip", "link", "del", a, check=False)


def frame(src: str, dst: str, vlan: int | None, token: bytes) -> bytes:
    eth = Ether(src=src, dst=dst, type=0x8100 if vlan is not None else ETYPE)
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan, type=ETYPE)
    return bytes(eth / token.ljust(46, b"\0"))


def trace(d, in_port: str, src: str, dst: str, vlan: int | None = None) -> dict:
    args = ["trace", d.br, f"in_port={in_port}", f"dl_src={src}", f"dl_dst={dst}",
            f"dl_type=0x{ETYPE:04x}", "--json"]
    if vlan is not None:
        args.insert(-1, f"dl_vlan={vlan}")
    return json.loads(d.ctl(*args).stdout)


def really(d, in_port: str, src: str, dst: str, vlan: int | None = None) -> set:
    """Send the frame from in_port's side; {(where it came out, VLAN tag
    or None)}."""
    token = secrets.token_bytes(8)
    for lp in d.listeners.values():
        lp.drain()
    d.listeners[in_port].send(frame(src, dst, vlan, token))
    seen = set()
    time.sleep(WINDOW)
    for where, lp in d.listeners.items():
        if where == in_port:
            continue
        got = lp.expect(lambda raw: token in raw, timeout=0.05)
        if got is not None:
            e = Ether(got)
            seen.add((where, e[Dot1Q].vlan if Dot1Q in e else None))
    return seen


def predicted(t: dict) -> set:
    return {(o["interface"], o["vlan"] if o["tagged"] else None) for o in t["outputs"]}


def test_trace_agrees_with_real_forwarding(traced):
    d = traced
    m0, m1 = d.members
    # flood: unknown destination, untagged (VLAN 0) from h1
    t = trace(d, "h1", MACS["h1"], MACS["far"])
    assert predicted(t) == really(d, "h1", MACS["h1"], MACS["far"]) == \
        {("h3", None), (m0, None)}
    assert t["drop"] is None and any("flood" in s for s in t["steps"])
    # flood in VLAN 10: the access port gets it untagged, the others tagged
    t = trace(d, "h1", MACS["h1"], "ff:ff:ff:ff:ff:ff", vlan=10)
    assert predicted(t) == really(d, "h1", MACS["h1"], "ff:ff:ff:ff:ff:ff", vlan=10) == \
        {("h2", None), ("h3", 10), (m0, 10)}
    # learned unicast: h3 made itself known above? no: teach it now
    really(d, "h3", MACS["h3"], "ff:ff:ff:ff:ff:ff")
    t = trace(d, "h1", MACS["h1"], MACS["h3"])
    assert predicted(t) == really(d, "h1", MACS["h1"], MACS["h3"]) == {("h3", None)}
    assert any("is on port h3" in s for s in t["steps"])
    # VLAN drop: h2 is an access port; a tagged frame is not accepted
    t = trace(d, "h2", MACS["h2"], "ff:ff:ff:ff:ff:ff", vlan=20)
    assert t["drop"] == "vlan" and t["outputs"] == []
    assert really(d, "h2", MACS["h2"], "ff:ff:ff:ff:ff:ff", vlan=20) == set()
    # and a trunk port not carrying the VLAN
    t = trace(d, "h3", MACS["h3"], "ff:ff:ff:ff:ff:ff", vlan=20)
    assert t["drop"] == "vlan" and really(d, "h3", MACS["h3"], "ff:ff:ff:ff:ff:ff", 20) == set()


def test_trace_follows_the_bond(traced):
    d = traced
    m0, m1 = d.members
    # a station behind the bond, learned through the active member
    really(d, m0, MACS["far"], "ff:ff:ff:ff:ff:ff")
    t = trace(d, "h1", MACS["h1"], MACS["far"])
    assert t["outputs"] == [{"port": "bd", "interface": m0, "vlan": 0, "tagged": False}]
    assert really(d, "h1", MACS["h1"], MACS["far"]) == {(m0, None)}
    # failover: the trace and the frame both move to the other member
    d.ctl("bond/set-active-member", "bd", m1)
    t = trace(d, "h1", MACS["h1"], MACS["far"])
    assert predicted(t) == really(d, "h1", MACS["h1"], MACS["far"]) == {(m1, None)}
    # the backup member does not admit; tracing in_port=its name says so
    t = trace(d, m0, MACS["far"], "ff:ff:ff:ff:ff:ff")
    assert t["drop"] == "bond" and really(d, m0, MACS["far"], "ff:ff:ff:ff:ff:ff") == set()
    # in_port=the bond means its active member
    t = trace(d, "bd", MACS["far"], "ff:ff:ff:ff:ff:ff")
    assert t["drop"] is None and predicted(t) == \
        really(d, m1, MACS["far"], "ff:ff:ff:ff:ff:ff") == {("h1", None), ("h3", None)}
