"""Port types on real devices: internal (a gateway in the daemon's
namespace) and system (an existing veth end over AF_PACKET)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ..helpers import PREFIX, name, ns, ping_eventually, sh

pytestmark = pytest.mark.netns


@pytest.fixture
def veth_host():
    """A namespace of the test's own, wired to the daemon's namespace by a
    veth pair: (root-side name, namespace)."""
    outer, inner, netns = name("va"), name("vb"), name("sys")
    sh("ip", "netns", "add", netns)
    sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
    sh("sysctl", "-qw", f"net.ipv6.conf.{outer}.disable_ipv6=1")
    sh("ip", "link", "set", inner, "netns", netns)
    ns(netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    ns(netns, "ip", "addr", "add", "10.0.0.50/24", "dev", inner)
    ns(netns, "ip", "link", "set", inner, "up")
    yield outer, inner, netns
    sh("ip", "link", "del", outer, check=False)
    sh("ip", "netns", "del", netns, check=False)


def _counter(netns: str | None, dev: str, which: str) -> int:
    path = f"/sys/class/net/{dev}/statistics/{which}"
    if netns:
        return int(ns(netns, "cat", path).stdout)
    return int(Path(path).read_text())


def test_internal_port_is_a_gateway_in_the_daemons_namespace(lab):
    gw = name("gw")
    lab.ctl("add-port", lab.br, gw, "type=internal", "--ip", "10.0.0.254/24")
    assert Path(f"/sys/class/net/{gw}").exists()
    assert ping_eventually(PREFIX + "h1", "10.0.0.254")
    lab.ctl("del-port", gw)
    assert not Path(f"/sys/class/net/{gw}").exists()


def test_system_port_forwards_and_never_hears_its_own_frames(lab, veth_host):
    outer, inner, netns = veth_host
    lab.ctl("add-port", lab.br, outer, "type=system")
    assert lab.port(outer)["state"] == "up"
    assert ping_eventually(netns, "10.0.0.1")
    assert ping_eventually(PREFIX + "h2", "10.0.0.50")
    ns(netns, "ping", "-c", "20", "-i", "0.01", "-W", "2", "10.0.0.3")
    sent_by_host = _counter(netns, inner, "tx_packets")
    stats = {r["port"]: r for r in lab.call("port/stats", bridge=lab.br)}
    # Every frame the switch read from the veth is one the host sent: none of
    # the frames the switch itself transmitted on it came back.
    assert stats[outer]["rx_packets"] == sent_by_host
    assert stats[outer]["tx_packets"] > 0


def test_system_port_tcp_with_checksum_offload(lab, veth_host):
    """veth hands over partial checksums; with PACKET_VNET_HDR they are
    described, not forwarded broken (ping works with broken TCP otherwise)."""
    import subprocess
    import time
    outer, inner, netns = veth_host
    lab.ctl("add-port", lab.br, outer, "type=system")
    server = subprocess.Popen(["ip", "netns", "exec", netns, "iperf3", "-s", "-1", "-p",
                               "5212"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = ns(PREFIX + "h1", "iperf3", "-c", "10.0.0.50", "-p", "5212", "-t", "2", "-J",
               timeout=30)
        import json
        assert json.loads(r.stdout)["end"]["sum_received"]["bytes"] > 10_000_000
    finally:
        server.wait(timeout=10)


def test_system_port_for_a_missing_interface_is_refused(lab):
    r = lab.ctl("add-port", lab.br, name("nope"), "type=system", check=False)
    assert r.returncode == 1
    assert "no interface" in r.stderr
    assert name("nope") not in lab.ctl("list-ports", lab.br).stdout
