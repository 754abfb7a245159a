"""The way out (masquerade) and the ways in (published ports, hairpin,
127.0.0.1 on the host), against a real outside machine and real nftables."""
from __future__ import annotations

import json
import random
import re
import select

import pytest

from ..helpers import ROOT, name, ping, ping_eventually, privatize_config, sh
from ..hostns import (HTTP_GET, TCP_ASK, UDP_ASK, UDP_ECHO, WHOAMI, HostDaemon, python_in,
                      random_net24)

pytestmark = pytest.mark.netns


def network(hd: HostDaemon, *ports: str, **br_settings: str) -> tuple[str, str]:
    """A subnet bridge with a port in a namespace of each name; returns
    (bridge, subnet prefix)."""
    hd.start()
    br, net = name("br"), random_net24()
    hd.ctl("add-br", br, f"subnet={net}.0/24", *(f"{k}={v}" for k, v in br_settings.items()))
    for p in ports:
        hd.ctl("add-port", br, p, "--netns", name(p))
    return br, net


def test_outside_sees_the_hosts_address_and_not_without_masquerade(hd, servers):
    h = hd.host
    br, net = network(hd, "h1")
    servers.python_in(h.outside, WHOAMI, "7000")
    assert ping_eventually(name("h1"), h.outside_ip)
    r = python_in(name("h1"), TCP_ASK, h.outside_ip, "7000", "5")
    assert r.returncode == 0 and r.stdout.strip() == h.uplink_ip, r.stderr
    assert h.sysctl("net.ipv4.ip_forward") == "1"

    hd.ctl("set", "bridge", br, "masquerade=false")
    assert "to the outside" not in hd.host.ruleset()
    assert not ping(name("h1"), h.outside_ip)      # the outside has no route back
    r = python_in(name("h1"), TCP_ASK, h.outside_ip, "7000", "2")
    assert r.returncode != 0

    hd.ctl("set", "bridge", br, "masquerade=true")
    assert ping_eventually(name("h1"), h.outside_ip)


def test_published_ports_answer_from_outside_host_and_bridge(hd, servers, tmp_path, request):
    h = hd.host
    hp, up = random.randint(20000, 29999), random.randint(30000, 39999)
    # the server's namespace is the test's own, so it (and the server in it)
    # outlives the daemon's restart below
    sh("ip", "netns", "add", name("web"))
    request.addfinalizer(lambda: sh("ip", "netns", "del", name("web"), check=False))
    br, net = network(hd)
    hd.ctl("add-port", br, "web", "--netns", name("web"), "--publish", f"{hp}:80",
           "--publish", f"{up}:5300/udp")
    hd.ctl("add-port", br, "h2", "--netns", name("h2"))
    web_ip = f"{net}.2"
    token = f"hello-{random.randint(0, 1 << 30)}"
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "t.txt").write_text(token)
    servers.start(["ip", "netns", "exec", name("web"), "python3", "-u", "-m", "http.server",
                   "80", "--bind", "0.0.0.0", "--directory", str(tmp_path / "www")],
                  ready="Serving HTTP")
    servers.python_in(name("web"), UDP_ECHO, "0.0.0.0", "5300")

    def get(netns: str, host_addr: str) -> str:
        r = python_in(netns, HTTP_GET, f"http://{host_addr}:{hp}/t.txt", "5")
        assert r.returncode == 0, f"{netns} -> {host_addr}:{hp}: {r.stderr[-300:]}"
        return r.stdout.strip()

    assert get(h.outside, h.uplink_ip) == f"200 {token}"          # another machine
    for addr in ("127.0.0.1", h.uplink_ip, f"{net}.1"):           # the host itself
        assert get(h.netns, addr) == f"200 {token}", addr
    for addr in (h.uplink_ip, f"{net}.1"):                        # hairpin
        assert get(name("h2"), addr) == f"200 {token}", addr
    assert get(name("web"), h.uplink_ip) == f"200 {token}"       # itself, through the host
    r = python_in(h.outside, UDP_ASK, h.uplink_ip, str(up), "2")
    assert r.returncode == 0 and r.stdout.strip() == "hello", r.stderr
    info = json.loads(hd.ctl("net/show", br, "--json").stdout)
    web = next(p for p in info["ports"] if p["name"] == "web")
    assert web["publish"] == [f"{hp}:80/tcp", f"{up}:5300/udp"]
    assert web["ipv4"] == f"{web_ip}/24" and web["netns"] == name("web") and web["mac"]

    # a second port cannot take the same host port; the answer names the holder
    r = hd.ctl("add-port", br, "dup", "--netns", name("dup"), "--publish", f"{hp}:81",
               check=False)
    assert r.returncode == 1
    assert r.stderr.strip().endswith(f"host port {hp}/tcp is already published by port web")

    # published ports change live, and survive a restart
    hd.ctl("set", "port", "web", "publish=")
    r = python_in(h.outside, HTTP_GET, f"http://{h.uplink_ip}:{hp}/t.txt", "3")
    assert r.returncode != 0
    hd.ctl("set", "port", "web", f"publish={hp}:80/tcp")
    hd.restart()
    assert get(h.outside, h.uplink_ip) == f"200 {token}"
    # without masquerade: the answer still leaves through the host, de-NATed
    hd.ctl("set", "bridge", br, "masquerade=false")
    assert get(h.outside, h.uplink_ip) == f"200 {token}"


RECORD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    print(data.decode(), peer[0], flush=True)
"""

SEND_TO_LOOPBACK = """
import sys
from scapy.all import Ether, IP, UDP, sendp, get_if_hwaddr
gw_mac, src, port, word = sys.argv[1:5]
frame = (Ether(src=get_if_hwaddr("eth0"), dst=gw_mac) / IP(src=src, dst="127.0.0.1")
         / UDP(sport=40000, dport=int(port)) / word.encode())
sendp(frame, iface="eth0", count=3, verbose=False)
"""


def test_the_bridge_cannot_reach_the_hosts_loopback(hd, servers):
    """route_localnet is on for the bridge's own interface (127.0.0.1:HOSTPORT
    works from the host); a namespace sending to 127.0.0.1 through the
    gateway must still not reach the host's loopback services."""
    h = hd.host
    br, net = network(hd, "h2")
    assert h.sysctl(f"net.ipv4.conf.{br}.route_localnet") == "1"
    port = str(random.randint(40000, 49999))
    listener = servers.python_in(h.netns, RECORD, port)
    info = json.loads(hd.ctl("net/show", br, "--json").stdout)
    src = info["ports"][0]["ipv4"].split("/")[0]

    def send(word: str) -> None:
        r = python_in(name("h2"), SEND_TO_LOOPBACK, info["gateway_mac"], src, port, word)
        assert r.returncode == 0, r.stderr

    send("blocked")
    # the check can fail: without our rule the same frames reach the service
    listing = h.run("nft", "-a", "list", "chain", "inet", "vswitch", "raw_prerouting").stdout
    m = re.search(r"drop comment .*# handle (\d+)", listing)
    assert m, listing
    assert re.search(r"counter packets [1-9]", listing), listing   # it did drop them
    h.run("nft", "delete", "rule", "inet", "vswitch", "raw_prerouting", "handle", m.group(1))
    send("through")
    assert listener.stdout is not None
    readable, _, _ = select.select([listener.stdout], [], [], 15)
    assert readable, "nothing arrived even without the drop rule: the check proves nothing"
    line = listener.stdout.readline()
    assert line.split()[0] == "through", line     # and "blocked" never arrived


def test_configs_nat_toml(hd, servers, tmp_path, request):
    """configs/nat.toml as the README describes it: out to the outside
    machine, and its published port in from there."""
    h = hd.host
    data = privatize_config(ROOT / "configs" / "nat.toml")
    web = data["bridge"][name("br-nat")]["port"]["web"]["netns"]
    sh("ip", "netns", "add", web)       # ours, so the server in it can start first
    request.addfinalizer(lambda: sh("ip", "netns", "del", web, check=False))
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("nat.toml works")
    servers.start(["ip", "netns", "exec", web, "python3", "-u", "-m", "http.server", "80",
                   "--bind", "0.0.0.0", "--directory", str(tmp_path / "www")],
                  ready="Serving HTTP")
    hd.start_with(data)
    info = json.loads(hd.ctl("net/show", name("br-nat"), "--json").stdout)
    assert (info["subnet"], info["gateway"], info["masquerade"]) == \
        ("10.88.0.0/24", "10.88.0.1", True)
    ips = {p["name"]: p["ipv4"] for p in info["ports"]}
    assert ips == {"web": "10.88.0.2/24", "client": "10.88.0.3/24", "fixed": "10.88.0.100/24"}
    servers.python_in(h.outside, WHOAMI, "7000")
    r = python_in(data["bridge"][name("br-nat")]["port"]["client"]["netns"], TCP_ASK,
                  h.outside_ip, "7000", "5")
    assert r.returncode == 0 and r.stdout.strip() == h.uplink_ip, r.stderr
    r = python_in(h.outside, HTTP_GET, f"http://{h.uplink_ip}:8080/", "5")
    assert r.returncode == 0 and r.stdout.strip() == "200 nat.toml works", r.stderr
