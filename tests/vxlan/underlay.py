"""Two (or more) "hosts" on one machine for the VXLAN tests.

Each host is a network namespace of the test's own.  The daemon under test
runs inside one (`ip netns exec`), so the underlay addresses it needs are
never added to the machine's own namespace; peers (a kernel vxlan device
behind a Linux bridge, another vswitchd, Open vSwitch) live in others,
joined by veth pairs.  Addresses are drawn at random from 10.64.0.0/10 so
parallel runs do not collide; every namespace carries the session prefix
and goes away at the end (its veths with it).
"""
from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path
from typing import Any

from ..helpers import Daemon, name, ns, sh


def subnet() -> str:
    """A random /24 of 10.0.0.0/8 as 'a.b.c' (its hosts: .1, .2, ...)."""
    return f"10.{random.randint(64, 127)}.{random.randint(0, 255)}"


class Hosts:
    def __init__(self) -> None:
        self.made: list[str] = []

    def netns(self, base: str) -> str:
        n = name(base)
        sh("ip", "netns", "add", n)
        self.made.append(n)
        ns(n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        ns(n, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        ns(n, "ip", "link", "set", "lo", "up")
        return n

    def veth(self, a: str, a_if: str, b: str, b_if: str, a_ip: str | None = None,
             b_ip: str | None = None, mtu: int | None = None) -> None:
        """A veth pair between namespaces a and b, addressed and up."""
        sh("ip", "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if,
           "netns", b)
        for n, ifname, ip in ((a, a_if, a_ip), (b, b_if, b_ip)):
            if mtu:
                ns(n, "ip", "link", "set", ifname, "mtu", str(mtu))
            if ip:
                ns(n, "ip", "addr", "add", ip, "dev", ifname)
            ns(n, "ip", "link", "set", ifname, "up")

    def close(self) -> None:
        for n in reversed(self.made):
            sh("ip", "netns", "del", n, check=False)
        self.made.clear()


def kernel_vtep(k: str, local: str, remotes: list[str], vni: int, host: str,
                host_ip: str, mtu: int = 1450, vx_mtu: int | None = None,
                host_mac: str | None = None) -> None:
    """The Linux way, in namespace k: a vxlan device (flooding to every
    remote through all-zero FDB entries, learning on) and a veth to the
    namespace `host` enslaved to a Linux bridge."""
    ns(k, "ip", "link", "add", "vx0", "type", "vxlan", "id", str(vni), "local", local,
       "dstport", "4789")
    for r in remotes:
        ns(k, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", r)
    ns(k, "ip", "link", "set", "vx0", "mtu", str(vx_mtu or mtu))
    ns(k, "ip", "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", k, "link", "add", "kh", "type", "veth", "peer", "name", "eth0",
       "netns", host)
    ns(k, "ip", "link", "set", "kh", "mtu", str(vx_mtu or mtu))
    for dev in ("vx0", "kh"):
        ns(k, "ip", "link", "set", dev, "master", "br0")
        ns(k, "ip", "link", "set", dev, "up")
    ns(k, "ip", "link", "set", "br0", "up")
    ns(host, "ip", "link", "set", "eth0", "mtu", str(mtu))
    if host_mac:
        ns(host, "ip", "link", "set", "eth0", "address", host_mac)
    ns(host, "ip", "addr", "add", host_ip, "dev", "eth0")
    ns(host, "ip", "link", "set", "eth0", "up")


def link_stats(netns: str, dev: str) -> dict[str, int]:
    out = json.loads(ns(netns, "ip", "-s", "-j", "link", "show", dev).stdout)[0]
    return {"rx": out["stats64"]["rx"]["packets"], "tx": out["stats64"]["tx"]["packets"]}


class NsDaemon(Daemon):
    """A vswitchd started inside a namespace of the test's own."""

    def __init__(self, workdir: Path, netns: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)
        self.netns = netns

    def argv(self, config: Path | None = None) -> list[str]:
        # nsenter switches the network namespace only: namespaces the daemon
        # creates (bind mounts in /run/netns) stay visible to the test, which
        # `ip netns exec` (a mount namespace of its own) would hide.
        return ["nsenter", f"--net=/run/netns/{self.netns}"] + super().argv(config)


def iperf(client_ns: str, server_ns: str, server_ip: str, port: int, reverse: bool = False,
          seconds: int = 2) -> dict[str, Any]:
    """One iperf3 TCP run; its JSON result."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        argv = ["iperf3", "-c", server_ip, "-p", str(port), "-t", str(seconds), "-J"]
        if reverse:
            argv.append("-R")
        r = ns(client_ns, *argv, check=False, timeout=seconds + 30)
        return json.loads(r.stdout) if r.stdout else {"error": r.stderr}
    finally:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def received_bytes(result: dict[str, Any]) -> int:
    try:
        return int(result["end"]["sum_received"]["bytes"])
    except KeyError:
        raise AssertionError(f"iperf3 failed: {result.get('error', result)}") from None
