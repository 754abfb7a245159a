"""Mirrors on real namespaces: tcpdump in the mirror port's namespace sees
exactly the selected traffic -- every frame the selected port sent, nothing
else -- and nothing once del-mirror has run; the mirror survives a restart
and a reload, and its output port stays out of normal forwarding."""
from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from scapy.layers.inet import ICMP

from ..helpers import PREFIX, ns, ping_eventually, to_toml
from .test_capture import Tcpdump

pytestmark = pytest.mark.netns

MACS = {"h1": "02:00:00:00:e1:01", "h2": "02:00:00:00:e1:02", "h3": "02:00:00:00:e1:03"}


def config(net: str, mirrors: list | None = None) -> dict:
    ports = {p: {"netns": PREFIX + "m" + p[1], "ip": f"{net}.{p[1]}/24", "mac": mac}
             for p, mac in MACS.items()}
    ports["mon"] = {"netns": PREFIX + "mmon"}
    br: dict = {"port": ports}
    if mirrors:
        br["mirror"] = mirrors
    return {"bridge": {PREFIX + "mbr": br}}


@pytest.fixture
def mirrored(daemon):
    net = f"10.{random.randint(0, 255)}.{random.randint(0, 255)}"
    daemon.start_with(config(net))
    for n in ("m1", "m2", "m3", "mmon"):
        ns(PREFIX + n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    # ARP settled, so that the pings below are all the traffic there is
    assert ping_eventually(PREFIX + "m1", f"{net}.2")
    assert ping_eventually(PREFIX + "m3", f"{net}.2")
    daemon.net, daemon.br = net, PREFIX + "mbr"
    return daemon


def pings(d, src: str, dst: str, size: int, count: int = 4) -> None:
    ns(PREFIX + "m" + src[1], "ping", "-c", str(count), "-i", "0.1", "-s", str(size),
       f"{d.net}.{dst[1]}")


def test_mirror_port_sees_exactly_the_selected_traffic(mirrored, tmp_path):
    d = mirrored
    d.ctl("add-mirror", d.br, "m0", "select_src_port=h1", "output_port=mon")
    mon = Tcpdump(PREFIX + "mmon", tmp_path / "mon.pcap")
    sent = Tcpdump(PREFIX + "m1", tmp_path / "h1.pcap")
    pings(d, "h1", "h2", 301)          # selected: h1's requests (not h2's replies)
    pings(d, "h3", "h2", 303)          # not selected
    # an ARP broadcast from h3 would reach mon, were mon not a mirror port
    ns(PREFIX + "m3", "ping", "-c", "1", "-W", "1", f"{d.net}.77", check=False)
    time.sleep(0.3)
    got, h1_all = mon.stop(), sent.stop()
    h1_sent = Counter(bytes(f) for f in h1_all if f.src == MACS["h1"])
    assert Counter(bytes(f) for f in got) == h1_sent
    requests = [f for f in got if ICMP in f and f[ICMP].type == 8]
    assert len(requests) == 4 and all(len(f) == 14 + 20 + 8 + 301 for f in requests)
    m = d.call("list-mirrors", bridge=d.br)[0]
    assert m["tx_packets"] >= 4 and m["output_port"] == "mon"
    # gone: mon sees nothing of the same traffic
    d.ctl("del-mirror", d.br, "m0")
    mon = Tcpdump(PREFIX + "mmon", tmp_path / "mon2.pcap")
    pings(d, "h1", "h2", 301)
    time.sleep(0.3)
    assert [f for f in mon.stop() if ICMP in f] == []


def test_mirror_of_a_destination_and_persistence(mirrored, tmp_path):
    d = mirrored
    d.ctl("add-mirror", d.br, "to2", "select_dst_port=h2", "output_port=mon")
    d.restart()
    assert [m["name"] for m in d.call("list-mirrors", bridge=d.br)] == ["to2"]
    mon = Tcpdump(PREFIX + "mmon", tmp_path / "mon.pcap")
    pings(d, "h1", "h2", 401, count=2)   # requests leave by h2: selected
    pings(d, "h2", "h3", 402, count=2)   # replies from h3 to h2: selected
    time.sleep(0.3)
    got = [f for f in mon.stop() if ICMP in f]
    assert sorted((f.src, f[ICMP].type, len(f)) for f in got) == sorted(
        [(MACS["h1"], 8, 443)] * 2 + [(MACS["h3"], 0, 444)] * 2)
    # reload from a file that has the mirror as a [[bridge.BR.mirror]] table
    # with another selection: changed in place, the counters stay
    before = d.call("list-mirrors", bridge=d.br)[0]["tx_packets"]
    cfg = tmp_path / "reload.toml"
    cfg.write_text(to_toml(config(d.net)) + "\n" + "\n".join([
        f'[[bridge."{d.br}".mirror]]', 'name = "to2"', 'select_src_port = ["h3"]',
        'output_port = "mon"', ""]))
    r = d.ctl("reload", str(cfg))
    assert "mirrors changed" in r.stdout
    m = d.call("list-mirrors", bridge=d.br)[0]
    assert m["select_src_port"] == ["h3"] and m["tx_packets"] >= before   # not reset
    mon = Tcpdump(PREFIX + "mmon", tmp_path / "mon3.pcap")
    pings(d, "h1", "h2", 405, count=2)
    pings(d, "h3", "h2", 406, count=2)
    time.sleep(0.3)
    got = [f for f in mon.stop() if ICMP in f]
    assert sorted((f.src, f[ICMP].type) for f in got) == [(MACS["h3"], 8)] * 2
