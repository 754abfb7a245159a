"""The CNI plugin under real runtimes: Podman 4.3 with its CNI backend, and
containerd 1.6's `ctr run --cni`.  Containers get addresses from the
bridge's subnet and reach each other, the gateway and a plain vswitch
namespace port on the same bridge."""
from __future__ import annotations

import json
import random
import sys

import pytest

from ..helpers import PREFIX, ping_eventually, sh, wait_for
from . import image
from .test_docker import HTTP_GET
from .runtimes import PrivateContainerd, PrivatePodman

pytestmark = pytest.mark.netns


@pytest.fixture
def bridge(switch_ns):
    """A subnet bridge with one ordinary namespace port (`peer`).  The peer's
    namespace is made here, in the host's mount namespace, so that the test
    sees it too (one vswitchd creates lives in the daemon's own mounts)."""
    peer = PREFIX + "peer"
    sh("ip", "netns", "add", peer)
    switch_ns.start()
    sn = f"10.{random.randint(192, 223)}.{random.randint(0, 255)}"
    br = PREFIX + "cn"
    switch_ns.ctl("add-br", br, f"subnet={sn}.0/24")
    switch_ns.ctl("add-port", br, "peer", "--netns", peer, "--ip", f"{sn}.200/24")
    yield switch_ns, br, sn
    switch_ns.stop()
    sh("ip", "netns", "del", peer, check=False)


def container_ports(d) -> list[dict]:
    return [p for b in d.show()["bridges"] for p in b["ports"]
            if "cni-container-id" in p.get("external_ids", {})]


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    pm = PrivatePodman()
    try:
        pm.podman("load", "-i", str(image.build(tmp_path_factory.mktemp("img") / "bb.tar")))
        yield pm
    finally:
        pm.stop()


def test_podman_containers_on_a_vswitch_bridge(podman, bridge):
    d, br, sn = bridge
    net = PREFIX + "pm"
    (podman.netconf / f"{net}.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": net,
        "plugins": [{"type": "vswitch", "bridge": br, "socket": str(d.sock),
                     "capabilities": {"portMappings": True}}]}))
    try:
        for c in ("p1", "p2"):
            podman.podman("run", "-d", "--name", c, "--network", net, image.IMAGE,
                          "sleep", "3600")
        ports = container_ports(d)
        assert len(ports) == 2 and all(p["state"] == "up" for p in ports)
        addrs = {p["external_ids"]["cni-container-id"]: p["ip"][0].split("/")[0]
                 for p in ports}
        assert all(a.startswith(sn + ".") for a in addrs.values())
        p2 = podman.podman("inspect", "p2", "--format", "{{.Id}}").stdout.strip()
        show = podman.podman("exec", "p1", "ip", "-4", "addr", "show", "eth0").stdout
        assert any(f"inet {a}/24" in show for a in addrs.values())
        for target in (addrs[p2], f"{sn}.1", f"{sn}.200"):
            assert wait_for(lambda: podman.podman(
                "exec", "p1", "ping", "-c1", "-W2", target, check=False).returncode == 0, 20)
        assert ping_eventually(PREFIX + "peer", addrs[p2])
        # podman run -p: the portMappings capability, published by vswitch
        hostport = str(random.randint(30000, 39999))
        podman.podman("run", "-d", "--name", "p3", "--network", net, "-p", f"{hostport}:80",
                      image.IMAGE, "httpd", "-f", "-p", "80", "-h", "/www")
        [p3] = [p for p in container_ports(d) if p.get("publish")]
        assert p3["publish"] == [f"{hostport}:80/tcp"]
        assert wait_for(lambda: sh("ip", "netns", "exec", d.netns, sys.executable, "-c",
                                   HTTP_GET, f"http://{sn}.1:{hostport}/",
                                   check=False).stdout == "hello from vswitch\n", 20)
        podman.podman("rm", "-f", "-t", "0", "p3")
        assert hostport not in sh("ip", "netns", "exec", d.netns, "nft", "list",
                                  "ruleset").stdout
        podman.podman("rm", "-f", "-t", "0", "p1")
        assert [p["external_ids"]["cni-container-id"] for p in container_ports(d)] == [p2]
        podman.podman("rm", "-f", "-t", "0", "p2")
        assert container_ports(d) == []
    finally:
        podman.podman("rm", "-f", "-t", "0", "p1", "p2", "p3", check=False)


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    ct = PrivateContainerd()
    try:
        ct.start()
        tar = image.build(tmp_path_factory.mktemp("img") / "bb.tar")
        ct.ctr("images", "import", "--snapshotter", "native", str(tar))
        yield ct
    finally:
        ct.stop()


def test_ctr_run_cni_on_a_vswitch_bridge(containerd, bridge):
    d, br, sn = bridge
    (containerd.dir / "netd" / "10-vswitch.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": PREFIX + "ct",
        "plugins": [{"type": "vswitch", "bridge": br, "socket": str(d.sock)}]}))
    containerd.ctr("run", "-d", "--snapshotter", "native", "--cni", image.IMAGE, "t1",
                   "sleep", "3600")
    [port] = container_ports(d)
    assert port["state"] == "up" and port["netns"].startswith("/proc/")
    assert port["netns"].endswith("/ns/net")
    t1 = port["ip"][0].split("/")[0]
    assert t1.startswith(sn + ".")
    # a second container, in the foreground, reaches the first, the gateway
    # and the namespace port; ctr run --rm --cni DELs it when it exits
    r = containerd.ctr("run", "--rm", "--snapshotter", "native", "--cni", image.IMAGE, "t2",
                       "sh", "-c", f"ping -c1 -W3 {t1} && ping -c1 -W3 {sn}.1 && "
                                   f"ping -c1 -W3 {sn}.200", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p["name"] for p in container_ports(d)] == [port["name"]]
    assert ping_eventually(PREFIX + "peer", t1)
    containerd.ctr("task", "kill", "-s", "KILL", "t1")
    # the namespace went with the task: the port says so
    assert wait_for(lambda: container_ports(d)[0]["state"] == "down", 20)
