"""VLAN semantics of Open vSwitch ("VLAN Configuration" in vswitch.xml),
row by row: what each mode accepts, which VLAN it assigns, where a frame
may go and how it leaves."""
from __future__ import annotations

import struct

import pytest
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from .frames import BCAST, frame, mac

ALL: tuple[int, ...] = ()
MODES = {
    "access10": ("access", 10, ALL),
    "trunk-all": ("trunk", None, ALL),
    "trunk-10-20": ("trunk", None, (10, 20)),
    "trunk-0-10": ("trunk", None, (0, 10)),
    "native-tagged10": ("native-tagged", 10, (20,)),
    "native-untagged10": ("native-untagged", 10, (20,)),
}

# Frames offered at ingress: (description, builder).
INPUTS = {
    "untagged": lambda: frame(mac(1), BCAST),
    "prio5": lambda: frame(mac(1), BCAST, vlan=0, prio=5),
    "tag10": lambda: frame(mac(1), BCAST, vlan=10, prio=3),
    "tag20": lambda: frame(mac(1), BCAST, vlan=20),
    "tag30": lambda: frame(mac(1), BCAST, vlan=30),
    "qinq10": lambda: frame(mac(1), BCAST, vlan=10, outer_ad=True, inner=99),
}

# VLAN assigned (and PCP kept) per ingress mode and input; None = dropped.
INGRESS = {
    "access10": {"untagged": (10, 0), "prio5": (10, 5), "tag10": None, "tag20": None,
                 "tag30": None, "qinq10": None},
    "trunk-all": {"untagged": (0, 0), "prio5": (0, 5), "tag10": (10, 3), "tag20": (20, 0),
                  "tag30": (30, 0), "qinq10": (10, 0)},
    "trunk-10-20": {"untagged": None, "prio5": None, "tag10": (10, 3), "tag20": (20, 0),
                    "tag30": None, "qinq10": (10, 0)},
    "trunk-0-10": {"untagged": (0, 0), "prio5": (0, 5), "tag10": (10, 3), "tag20": None,
                   "tag30": None, "qinq10": (10, 0)},
    "native-tagged10": {"untagged": (10, 0), "prio5": (10, 5), "tag10": (10, 3),
                        "tag20": (20, 0), "tag30": None, "qinq10": (10, 0)},
    "native-untagged10": {"untagged": (10, 0), "prio5": (10, 5), "tag10": (10, 3),
                          "tag20": (20, 0), "tag30": None, "qinq10": (10, 0)},
}

# How a frame of VLAN v leaves a port of each mode: "untagged", "tagged", None.
EGRESS = {
    "access10": {0: None, 10: "untagged", 20: None, 30: None},
    "trunk-all": {0: "untagged", 10: "tagged", 20: "tagged", 30: "tagged"},
    "trunk-10-20": {0: None, 10: "tagged", 20: "tagged", 30: None},
    "trunk-0-10": {0: "untagged", 10: "tagged", 20: None, 30: None},
    "native-tagged10": {0: None, 10: "tagged", 20: "tagged", 30: None},
    "native-untagged10": {0: None, 10: "untagged", 20: "tagged", 30: None},
}


def configure(engine, tp, mode_name):
    mode, tag, trunks = MODES[mode_name]
    engine.dp.set_vlan(tp.port, mode, tag, trunks)


def outer_tag(raw: bytes):
    """(vid, pcp) of the outer tag, or None when untagged."""
    e = Ether(raw)
    layer = e.getlayer(Dot1AD) if e.type == 0x88A8 else e.getlayer(Dot1Q)
    if e.type not in (0x8100, 0x88A8):
        return None
    return layer.vlan, layer.prio


@pytest.mark.parametrize("mode_name", list(MODES))
@pytest.mark.parametrize("input_name", list(INPUTS))
def test_ingress(engine, mode_name, input_name):
    """Seen from a trunk-all output, which tags every VLAN but 0."""
    src, out = engine.add_port(), engine.add_port()
    configure(engine, src, mode_name)
    engine.send(src, INPUTS[input_name]())
    got = engine.recv_all(out)
    expected = INGRESS[mode_name][input_name]
    if expected is None:
        assert got == []
        assert engine.stats(src).drops["vlan"] == 1
        return
    vlan, pcp = expected
    assert len(got) == 1
    if vlan == 0:
        assert outer_tag(got[0]) is None
    else:
        assert outer_tag(got[0]) == (vlan, pcp)
    assert engine.dp.fdb_lookup(engine.br, vlan, mac(1)) == src.port


@pytest.mark.parametrize("mode_name", list(MODES))
@pytest.mark.parametrize("vlan", [0, 10, 20, 30])
@pytest.mark.parametrize("pcp", [0, 6])
def test_egress(engine, mode_name, vlan, pcp):
    src, out = engine.add_port(), engine.add_port()
    configure(engine, out, mode_name)
    sent = frame(mac(1), BCAST, vlan=vlan if vlan or pcp else None, prio=pcp)
    engine.send(src, sent)
    got = engine.recv_all(out)
    how = EGRESS[mode_name][vlan]
    if how is None:
        assert got == []
        assert sum(engine.stats(src).drops.values()) == 0   # not a drop: not flooded there
        return
    assert len(got) == 1
    payload = Ether(sent)
    while payload.type in (0x8100, 0x88A8):
        payload = payload.payload
    if how == "untagged":
        assert outer_tag(got[0]) is None
        assert bytes(Ether(got[0]).payload) == bytes(payload.payload)
    else:
        assert outer_tag(got[0]) == (vlan, pcp)


def test_native_untagged_keeps_pcp_only_on_tagged_vlans(engine):
    src, out = engine.add_port(), engine.add_port()
    configure(engine, out, "native-untagged10")
    engine.send(src, frame(mac(1), BCAST, vlan=20, prio=7))
    assert outer_tag(engine.recv_all(out)[0]) == (20, 7)


def test_double_tagged_frame_loses_only_its_outer_tag_on_an_access_port(engine):
    src, out = engine.add_port(), engine.add_port()
    configure(engine, out, "access10")
    engine.send(src, frame(mac(1), BCAST, vlan=10, outer_ad=True, inner=99))
    (got,) = engine.recv_all(out)
    assert outer_tag(got) == (99, 0)


def test_priority_tag_on_access_port_becomes_the_access_vlan_on_a_trunk(engine):
    a, t = engine.add_port(), engine.add_port()
    configure(engine, a, "access10")
    engine.send(a, frame(mac(1), BCAST, vlan=0, prio=5))
    (got,) = engine.recv_all(t)
    assert outer_tag(got) == (10, 5)
    e = Ether(got)
    assert e.type == 0x8100 and bytes(e.payload.payload) == bytes(Ether(frame(mac(1), BCAST)).payload)


def test_independent_vlan_learning(engine):
    a, b, t = engine.add_port(), engine.add_port(), engine.add_port()
    engine.dp.set_vlan(a.port, "access", 10, ())
    engine.dp.set_vlan(b.port, "access", 20, ())
    engine.send(a, frame(mac(1), BCAST))   # mac(1) in VLAN 10 on a
    engine.send(b, frame(mac(1), BCAST))   # mac(1) in VLAN 20 on b
    assert engine.dp.fdb_lookup(engine.br, 10, mac(1)) == a.port
    assert engine.dp.fdb_lookup(engine.br, 20, mac(1)) == b.port
    assert engine.dp.fdb_stats(engine.br).moved == 0
    for p in (a, b, t):
        engine.recv_all(p)
    engine.send(t, frame(mac(9), mac(1), vlan=20))
    assert engine.recv_all(b) and not engine.recv_all(a)
    engine.send(t, frame(mac(9), mac(1), vlan=10))
    assert engine.recv_all(a) and not engine.recv_all(b)
    rows = {(e.vlan, e.mac): e.port for e in engine.dp.fdb_dump(engine.br)}
    assert rows[(10, mac(1))] == a.port and rows[(20, mac(1))] == b.port


def test_unicast_never_leaves_a_port_without_its_vlan(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.dp.set_vlan(b.port, "access", 20, ())
    engine.dp.fdb_add_static(engine.br, b.port, 10, mac(2))   # a misconfiguration
    engine.send(a, frame(mac(1), mac(2), vlan=10))
    assert engine.recv_all(b) == []
    assert engine.stats(a).drops["vlan"] == 1


def test_changing_a_ports_vlan_flushes_its_learned_entries(engine):
    a, b = engine.add_port(), engine.add_port()
    engine.send(a, frame(mac(1), BCAST, vlan=10))
    engine.send(b, frame(mac(2), BCAST, vlan=10))
    engine.dp.set_vlan(a.port, "access", 10, ())
    assert engine.dp.fdb_lookup(engine.br, 10, mac(1)) is None
    assert engine.dp.fdb_lookup(engine.br, 10, mac(2)) == b.port


def _vnet(flags=0, gso=0, hdr_len=0, gso_size=0, start=0, off=0) -> bytes:
    return struct.pack("<BBHHHH", flags, gso, hdr_len, gso_size, start, off)


@pytest.mark.parametrize("push", [True, False])
def test_vlan_push_and_pop_move_the_virtio_checksum_offsets(engine, push):
    src = engine.add_port(vnet=True)
    out = engine.add_port(vnet=True)
    if push:
        engine.dp.set_vlan(src.port, "access", 10, ())
        f, delta = frame(mac(1), BCAST), 4
    else:
        engine.dp.set_vlan(out.port, "access", 10, ())
        f, delta = frame(mac(1), BCAST, vlan=10), -4
    l4 = len(f) - 8 - 0            # UDP header at the end (no payload)
    hdr = _vnet(flags=1, hdr_len=l4 + 8, start=l4, off=6)
    engine.dp.inject(src.iface, hdr + f)
    raw = out.sock.recv(70000)
    flags, gso, hdr_len, gso_size, start, off = struct.unpack("<BBHHHH", raw[:10])
    assert (flags, start, off, hdr_len) == (1, l4 + delta, 6, l4 + 8 + delta)
    assert len(raw) - 10 == len(f) + delta
