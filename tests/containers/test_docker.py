"""vswitch as Docker's network driver, against Debian's dockerd 20.10.

One private dockerd and one vswitchd (with --docker-plugin) per module, in
one network and mount namespace of their own; the busybox image is made
from busybox-static and loaded, no registry involved.  The plugin's name
is private to the session, so nothing collides with a real `vswitch`.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from ..helpers import PREFIX, sh, wait_for
from . import image
from .runtimes import NetnsDaemon, PrivateDocker

pytestmark = pytest.mark.netns
PLUGIN = "vs" + PREFIX.strip("-")
PLUGIN_SOCK = f"/run/docker/plugins/{PLUGIN}.sock"    # as dockerd and vswitchd see it
HTTP_GET = ("import sys, urllib.request\n"
            "try:\n"
            "    print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')\n"
            "except OSError as e:\n"
            "    print(e, file=sys.stderr)\n")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    work = tmp_path_factory.mktemp("docker")
    dk = PrivateDocker()
    try:
        dk.start()
        dk.docker("load", "-i", str(image.build(work / "busybox.tar")))
        vs = NetnsDaemon(work, dk.in_netns(), ["--docker-plugin", PLUGIN_SOCK])
        vs.start()
        dk.vs = vs                       # type: ignore[attr-defined]
        yield dk
    finally:
        if getattr(dk, "vs", None):
            dk.vs.stop()                 # type: ignore[attr-defined]
        dk.stop()


def subnet() -> str:
    return f"10.{random.randint(128, 191)}.{random.randint(0, 255)}"


def host(env: PrivateDocker, *cmd: str, check: bool = True):
    """A command in the daemons' namespaces (the containers' host)."""
    return sh(*env.in_netns(), *cmd, check=check)


def run(env: PrivateDocker, net: str, name: str, *args: str, cmd: tuple[str, ...] = ()):
    env.docker("run", "-d", "--name", name, "--network", net, *args, image.IMAGE,
               *(cmd or ("sleep", "3600")))


def ip_of(env: PrivateDocker, container: str, net: str) -> str:
    return env.inspect(container)[0]["NetworkSettings"]["Networks"][net]["IPAddress"]


def ping(env: PrivateDocker, container: str, addr: str) -> bool:
    return env.docker("exec", container, "ping", "-c", "1", "-W", "2", addr,
                      check=False).returncode == 0


def ports(env: PrivateDocker) -> dict[str, dict[str, Any]]:
    """Every port but the bridges' own (gateway) ports."""
    return {p["name"]: p for b in env.vs.show()["bridges"]  # type: ignore[attr-defined]
            for p in b["ports"] if not p.get("local")}


def taps(env: PrivateDocker) -> list[str]:
    links = json.loads(host(env, "ip", "-j", "link", "show").stdout)
    return [ln["ifname"] for ln in links if ln["ifname"].startswith("vp")]


@pytest.fixture
def net(env):
    """A Docker network on vswitch, removed (with its containers) afterwards."""
    name, sn = PREFIX + "n" + str(random.randint(0, 99999)), subnet()
    env.docker("network", "create", "-d", PLUGIN, "--subnet", f"{sn}.0/24", name)
    env.created = []
    yield name, sn
    ids = env.docker("ps", "-aq", "--filter", f"network={name}", check=False).stdout.split()
    if ids:
        env.docker("rm", "-f", *ids, check=False)
    env.docker("network", "rm", name, check=False)


def test_two_containers_reach_each_other_and_inspect_agrees(env, net):
    name, sn = net
    run(env, name, "ca")
    run(env, name, "cb")
    assert wait_for(lambda: ping(env, "ca", ip_of(env, "cb", name)), 20)
    assert ping(env, "cb", ip_of(env, "ca", name))
    # docker network inspect and vswitchctl net/show say the same thing
    [info] = env.inspect("--type", "network", name)
    [bridge] = [b["name"] for b in env.vs.show()["bridges"]
                if b.get("external_ids", {}).get("docker-network-id") == info["Id"]]
    assert wait_for(lambda: all(p["netns"] for p in net_show(env, bridge)["ports"]), 20)
    ns = net_show(env, bridge)
    [ipam] = info["IPAM"]["Config"]
    assert (ns["subnet"], ns["gateway"]) == (ipam["Subnet"], ipam.get("Gateway", f"{sn}.1"))
    assert ns["external_ids"]["docker-network-id"] == info["Id"]
    by_ep = {p["external_ids"]["docker-endpoint-id"]: p for p in ns["ports"]}
    assert len(info["Containers"]) == 2 and set(by_ep) == {
        c["EndpointID"] for c in info["Containers"].values()}
    for cid, c in info["Containers"].items():
        p = by_ep[c["EndpointID"]]
        sandbox = env.inspect(cid)[0]["NetworkSettings"]["SandboxKey"]
        assert (p["mac"], p["ip"], p["netns"], p["state"]) == (
            c["MacAddress"], [c["IPv4Address"]], sandbox, "up")
        routes = env.docker("exec", cid, "ip", "route").stdout
        assert f"default via {sn}.1 dev eth0" in routes
    # the gateway answers
    assert ping(env, "ca", f"{sn}.1")


def net_show(env: PrivateDocker, bridge: str) -> dict[str, Any]:
    r = env.vs.ctl("net/show", bridge, "--json")   # type: ignore[attr-defined]
    return json.loads(r.stdout)


def test_mac_address_and_vlan_tag_options(env):
    name, sn = PREFIX + "tg", subnet()
    env.docker("network", "create", "-d", PLUGIN, "--subnet", f"{sn}.0/24",
               "-o", "vswitch.tag=42", "-o", f"vswitch.bridge={PREFIX}tbr", name)
    try:
        run(env, name, "t1", "--mac-address", "02:42:00:00:00:2a")
        [b] = [b for b in env.vs.show()["bridges"] if b["name"] == PREFIX + "tbr"]
        [p] = [p for p in b["ports"] if not p.get("local")]
        assert p["tag"] == 42 and p["vlan_mode"] == "access"
        assert p["mac"] == "02:42:00:00:00:2a"
        out = env.docker("exec", "t1", "cat", "/sys/class/net/eth0/address").stdout.strip()
        assert out == "02:42:00:00:00:2a"
        r = env.docker("network", "create", "-d", PLUGIN, "-o", "vswitch.color=red",
                       name + "x", check=False)
        assert r.returncode != 0 and "unknown option 'vswitch.color'" in r.stderr
    finally:
        env.docker("rm", "-f", "t1", check=False)
        env.docker("network", "rm", name, check=False)
    assert PREFIX + "tbr" not in [b["name"] for b in env.vs.show()["bridges"]]


def test_rm_and_network_rm_leave_nothing_behind(env):
    name, sn = PREFIX + "rm", subnet()
    env.docker("network", "create", "-d", PLUGIN, "--subnet", f"{sn}.0/24", name)
    run(env, name, "r1")
    run(env, name, "r2")
    assert len(taps(env)) == 0 and len(ports(env)) == 2     # the TAPs are in the containers
    env.docker("rm", "-f", "r1", "r2")
    assert ports(env) == {} and taps(env) == []
    env.docker("network", "rm", name)
    assert env.vs.show()["bridges"] == []
    links = json.loads(host(env, "ip", "-j", "link", "show").stdout)
    assert [ln["ifname"] for ln in links] == ["lo"]
    assert env.vs.call("list-br") == []
    # no rule either: the daemons' namespace has an empty ruleset again
    assert "table" not in host(env, "nft", "list", "ruleset").stdout


def test_container_keeps_connectivity_across_kill_9(env, net):
    name, sn = net
    run(env, name, "k1")
    run(env, name, "k2")
    b_ip = ip_of(env, "k2", name)
    assert wait_for(lambda: ping(env, "k1", b_ip), 20)
    assert wait_for(lambda: all(p.get("netns") for p in ports(env).values()), 20)
    routes_before = env.docker("exec", "k1", "ip", "route").stdout
    env.vs.stop(signal.SIGKILL)
    assert not ping(env, "k1", b_ip)               # the TAPs went with the daemon
    env.vs.start()
    assert wait_for(lambda: ping(env, "k1", b_ip), 20)
    assert env.docker("exec", "k1", "ip", "route").stdout == routes_before
    # and Docker can still take it all down through the restarted plugin
    env.docker("rm", "-f", "k1", "k2")
    assert ports(env) == {}


def plugin_sock(env: PrivateDocker) -> Path:
    """The plugin socket as this test reaches it (bind-mounted from here)."""
    return env.dir / "plugins" / f"{PLUGIN}.sock"


def raw_call(env: PrivateDocker, path: str, body: bytes, method: str = "POST"
             ) -> tuple[int, dict[str, Any]]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(plugin_sock(env)))
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: plugin\r\nContent-Length: {len(body)}\r\n"
              "Connection: close\r\n\r\n".encode() + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_plugin_socket_is_root_only_and_malformed_calls_change_nothing(env, net):
    mode = os.stat(plugin_sock(env)).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    name, _ = net
    [info] = env.inspect("--type", "network", name)
    nid = info["Id"]
    before = env.vs.show()
    cases = [
        ("/NetworkDriver.CreateEndpoint", b"{not json"),
        ("/NetworkDriver.CreateEndpoint", b"[]"),
        ("/NetworkDriver.CreateEndpoint", json.dumps({"NetworkID": nid}).encode()),
        ("/NetworkDriver.CreateEndpoint", json.dumps(
            {"NetworkID": "0" * 64, "EndpointID": "e" * 64}).encode()),
        ("/NetworkDriver.CreateEndpoint", json.dumps(
            {"NetworkID": nid, "EndpointID": "e" * 64,
             "Interface": {"Address": "not-an-address"}}).encode()),
        ("/NetworkDriver.CreateEndpoint", json.dumps(
            {"NetworkID": nid, "EndpointID": "../../etc"}).encode()),
        ("/NetworkDriver.Join", json.dumps(
            {"NetworkID": nid, "EndpointID": "f" * 64, "SandboxKey": "/x"}).encode()),
        ("/NetworkDriver.CreateNetwork", json.dumps(
            {"NetworkID": "a" * 64, "IPv4Data": [{"Pool": "10.1.0.0/24",
                                                  "Gateway": "10.2.0.1/24"}]}).encode()),
        ("/NetworkDriver.ProgramExternalConnectivity", json.dumps(
            {"NetworkID": nid, "EndpointID": "e" * 64,
             "Options": {"com.docker.network.portmap": [{"Proto": 132}]}}).encode()),
        ("/NetworkDriver.Nonsense", b"{}"),
    ]
    for path, body in cases:
        status, reply = raw_call(env, path, body)
        assert status != 200 and isinstance(reply.get("Err"), str) and reply["Err"], (path, body)
    status, reply = raw_call(env, "/NetworkDriver.GetCapabilities", b"", method="GET")
    assert status == 405 and reply["Err"]
    assert env.vs.show() == before                 # nothing half-made
    assert raw_call(env, "/Plugin.Activate", b"") == (200, {"Implements": ["NetworkDriver"]})
    assert raw_call(env, "/NetworkDriver.GetCapabilities", b"") == (
        200, {"Scope": "local", "ConnectivityScope": "local"})


def test_published_port_reaches_busybox_httpd_and_goes_with_the_container(env, net):
    name, sn = net
    hostport = str(random.randint(20000, 29999))
    env.docker("run", "-d", "--name", "web", "--network", name, "-p", f"{hostport}:80",
               image.IMAGE, "httpd", "-f", "-p", "80", "-h", "/www")
    web_ip = ip_of(env, "web", name)
    assert wait_for(lambda: any(p.get("publish") == [f"{hostport}:80/tcp"]
                                for p in ports(env).values()), 20)
    # from the host (the daemons' namespace), by the host's own address: the
    # gateway's, as a neighbour would reach it
    def fetch() -> str:
        r = host(env, sys.executable, "-c", HTTP_GET, f"http://{sn}.1:{hostport}/",
                 check=False)
        return r.stdout
    assert wait_for(lambda: fetch() == "hello from vswitch\n", 20)
    rules = host(env, "nft", "list", "table", "inet", "vswitch").stdout
    assert f"{web_ip}" in rules and hostport in rules
    env.docker("rm", "-f", "web")
    assert ports(env) == {}
    rules = host(env, "nft", "list", "table", "inet", "vswitch", check=False).stdout
    assert hostport not in rules


def test_internal_network_and_what_cannot_be_published(env, net):
    name, sn = net
    internal = PREFIX + "in"
    env.docker("network", "create", "-d", PLUGIN, "--internal", "--subnet",
               f"{subnet()}.0/24", internal)
    try:
        run(env, internal, "i1")
        [b] = [b for b in env.vs.show()["bridges"]
               if b.get("external_ids", {}).get("docker-internal") == "true"]
        assert "subnet" not in b and not any(p.get("local") for p in b["ports"])
        assert wait_for(lambda: all(p.get("netns") for p in ports(env).values()), 20)
        assert "default" not in env.docker("exec", "i1", "ip", "route").stdout
        assert not ping(env, "i1", f"{sn}.1")          # nothing beyond the bridge
    finally:
        env.docker("rm", "-f", "i1", check=False)
        env.docker("network", "rm", internal, check=False)
    # -p without a host port: refused with vswitch's reason, nothing left
    r = env.docker("run", "-d", "--name", "np", "--network", name, "-p", "80", image.IMAGE,
                   "sleep", "3600", check=False)
    assert r.returncode != 0 and "needs a host port" in r.stderr, r.stderr
    env.docker("rm", "-f", "np", check=False)
    assert ports(env) == {}


def test_reload_of_a_file_keeps_dockers_networks(env, net, tmp_path):
    name, sn = net
    run(env, name, "r1")
    run(env, name, "r2")
    other = tmp_path / "other.toml"
    other.write_text(f'[bridge."{PREFIX}own"]\n')
    env.vs.ctl("reload", str(other))
    names = [b["name"] for b in env.vs.show()["bridges"]]
    assert PREFIX + "own" in names and len(names) == 2
    assert len(ports(env)) == 2
    assert wait_for(lambda: ping(env, "r1", ip_of(env, "r2", name)), 20)
    env.vs.ctl("del-br", PREFIX + "own")


def test_ipv6_network(env):
    """--ipv6: the bridge gets the IPv6 pool too (subnet6, gateway6), and the
    containers their IPv6 addresses and default route, also after kill -9."""
    name, sn = PREFIX + "v6", subnet()
    six = f"fd{random.randint(0, 255):02x}:{random.randint(0, 65535):x}::"
    env.docker("network", "create", "-d", PLUGIN, "--ipv6", "--subnet", f"{sn}.0/24",
               "--subnet", f"{six}/64", name)
    try:
        run(env, name, "s1")
        run(env, name, "s2")
        s2 = env.inspect("s2")[0]["NetworkSettings"]["Networks"][name]["GlobalIPv6Address"]
        [b] = [b for b in env.vs.show()["bridges"] if b.get("subnet6")]
        assert b["subnet6"] == f"{six}/64"
        assert wait_for(lambda: all(p.get("netns") for p in ports(env).values()), 20)
        assert any(f"{s2}/64" in p["ip"] for p in ports(env).values())

        def ping6() -> bool:
            return env.docker("exec", "s1", "ping", "-6", "-c", "1", "-W", "2", s2,
                              check=False).returncode == 0
        assert wait_for(ping6, 20)
        env.vs.stop(signal.SIGKILL)
        env.vs.start()
        assert wait_for(ping6, 20)
        assert "default" in env.docker("exec", "s1", "ip", "-6", "route").stdout
    finally:
        env.docker("rm", "-f", "s1", "s2", check=False)
        env.docker("network", "rm", name, check=False)


def test_a_docker_network_on_a_bridge_of_the_users_own(env):
    br, sn, name = PREFIX + "ub", subnet(), PREFIX + "un"
    env.vs.ctl("add-br", br, f"subnet={sn}.0/24")
    try:
        r = env.docker("network", "create", "-d", PLUGIN, "--subnet", f"{subnet()}.0/24",
                       "-o", f"vswitch.bridge={br}", name, check=False)
        assert r.returncode != 0 and f"create it with --subnet {sn}.0/24" in r.stderr
        env.docker("network", "create", "-d", PLUGIN, "--subnet", f"{sn}.0/24",
                   "-o", f"vswitch.bridge={br}", name)
        run(env, name, "u1")
        assert wait_for(lambda: ping(env, "u1", f"{sn}.1"), 20)
        env.docker("rm", "-f", "u1")
        env.docker("network", "rm", name)
        [b] = [b for b in env.vs.show()["bridges"] if b["name"] == br]
        assert b["subnet"] == f"{sn}.0/24" and "external_ids" not in b   # kept, untagged
    finally:
        env.docker("rm", "-f", "u1", check=False)
        env.docker("network", "rm", name, check=False)
        env.vs.ctl("del-br", br, check=False)
