"""Shared pieces of the LACP namespace and interop tests: veth pairs,
link counters, 10 ms ping runs, and reading both switches' LACP state."""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from ..helpers import ns, sh


def veth(a: str, b: str, b_netns: str | None = None) -> None:
    """A veth pair, both ends up and without IPv6 chatter; b moved into
    b_netns when given."""
    sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
    sh("sysctl", "-qw", f"net.ipv6.conf.{a}.disable_ipv6=1")
    if b_netns:
        sh("ip", "link", "set", b, "netns", b_netns)
        ns(b_netns, "sysctl", "-qw", f"net.ipv6.conf.{b}.disable_ipv6=1")
        ns(b_netns, "ip", "link", "set", b, "up")
    else:
        sh("sysctl", "-qw", f"net.ipv6.conf.{b}.disable_ipv6=1")
        sh("ip", "link", "set", b, "up")
    sh("ip", "link", "set", a, "up")


def host(netns: str, outer: str, inner: str, cidr: str, outer_netns: str | None = None
         ) -> None:
    """A namespace with one veth end addressed; the other end stays in
    outer_netns (the daemon's namespace when None) for a switch to take."""
    sh("ip", "netns", "add", netns)
    ns(netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
    sh("ip", "link", "set", inner, "netns", netns)
    ns(netns, "ip", "addr", "add", cidr, "dev", inner)
    ns(netns, "ip", "link", "set", inner, "up")
    ns(netns, "ip", "link", "set", "lo", "up")
    if outer_netns:
        sh("ip", "link", "set", outer, "netns", outer_netns)
        ns(outer_netns, "ip", "link", "set", outer, "up")
    else:
        sh("ip", "link", "set", outer, "up")


def counter(dev: str, stat: str, netns: str | None = None) -> int:
    path = f"/sys/class/net/{dev}/statistics/{stat}"
    if netns:
        return int(ns(netns, "cat", path).stdout)
    with open(path) as f:
        return int(f.read())


@dataclass
class PingRun:
    sent: int
    received: int
    duplicates: int
    output: str

    @property
    def lost(self) -> int:
        return self.sent - self.received


def start_pings(netns: str, addr: str, count: int, interval: float = 0.01
                ) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", netns, "ping", "-i", str(interval),
                             "-c", str(count), "-W", "1", addr],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_pings(p: subprocess.Popen, timeout: float = 120) -> PingRun:
    out, _ = p.communicate(timeout=timeout)
    sent = re.search(r"(\d+) packets transmitted", out)
    got = re.search(r"(\d+) received", out)
    dup = re.search(r"\+(\d+) duplicates", out)
    assert sent and got, out
    return PingRun(int(sent.group(1)), int(got.group(1)), int(dup.group(1)) if dup else 0, out)


def our_lacp(d: Any, bond: str) -> dict[str, Any]:
    return d.call("lacp/show", bond=bond)[0]


def our_member(d: Any, bond: str, member: str) -> dict[str, Any]:
    return next(m for m in our_lacp(d, bond)["members"] if m["name"] == member)


def distributing(d: Any, bond: str) -> list[str]:
    return [m["name"] for m in our_lacp(d, bond)["members"] if m["distributing"]]


def wait_until(cond, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until cond() held, or None if it never did within timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():
            return time.monotonic() - start
        time.sleep(step)
    return time.monotonic() - start if cond() else None
