"""A private "host" for tests of a daemon that changes host-wide state
(nftables, net.ipv4.ip_forward): a network namespace of the test's own in
which vswitchd runs, and an "outside machine" joined to it by a veth pair.

The daemon enters only the host's network namespace (nsenter --net), not a
mount namespace of its own as `ip netns exec` would give it: namespaces it
creates for its ports must stay visible to the test's `ip netns exec`.
/proc/sys/net and nft act on the namespace of the process that uses them,
so the machine's own ruleset and sysctls are never touched.
"""
from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .helpers import Daemon, name, ns, sh


def random_net24(first: int = 10) -> str:
    """A random 10.x.y.0/24 (prefix of three octets, no length)."""
    return f"{first}.{random.randint(100, 250)}.{random.randint(0, 255)}"


@dataclass
class Host:
    netns: str            # the host's namespace (the daemon runs here)
    outside: str          # the outside machine's namespace
    uplink_ip: str        # the host's address facing the outside
    outside_ip: str       # the outside machine's address

    @property
    def nsenter(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}"]

    def run(self, *cmd: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        return sh(*self.nsenter, *cmd, check=check, timeout=timeout, input=input)

    def ruleset(self) -> str:
        return self.run("nft", "list", "ruleset").stdout

    def sysctl(self, key: str) -> str:
        return self.run("sysctl", "-n", key).stdout.strip()


def make_host(tag: str = "") -> Host:
    """The host namespace and an outside namespace joined by a veth pair;
    the outside has no route to anything but the link between them."""
    host, out = name("host" + tag), name("out" + tag)
    for n in (host, out):
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
        # quieter: no router solicitations or MLD in the way (KERNEL-NOTES)
        ns(n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    a, b = name("upa" + tag), name("upb" + tag)
    sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
    sh("ip", "link", "set", a, "netns", host)
    sh("ip", "link", "set", b, "netns", out)
    link = random_net24()
    sh("ip", "-n", host, "addr", "add", f"{link}.1/24", "dev", a)
    sh("ip", "-n", out, "addr", "add", f"{link}.2/24", "dev", b)
    sh("ip", "-n", host, "link", "set", a, "up")
    sh("ip", "-n", out, "link", "set", b, "up")
    return Host(host, out, f"{link}.1", f"{link}.2")


def enable_ipv6(h: Host, prefix: str) -> tuple[str, str]:
    """IPv6 on the host and the outside (make_host turns it off), with
    PREFIX::1 and PREFIX::2 on their link; returns those two addresses."""
    for n in (h.netns, h.outside):
        for scope in ("all", "default"):
            ns(n, "sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=0")
    a, b = f"{prefix}::1", f"{prefix}::2"
    up_host = json.loads(sh("ip", "-n", h.netns, "-j", "link", "show", "type", "veth").stdout)
    up_out = json.loads(sh("ip", "-n", h.outside, "-j", "link", "show", "type", "veth").stdout)
    ns(h.netns, "sysctl", "-qw", f"net.ipv6.conf.{up_host[0]['ifname']}.disable_ipv6=0")
    ns(h.outside, "sysctl", "-qw", f"net.ipv6.conf.{up_out[0]['ifname']}.disable_ipv6=0")
    sh("ip", "-n", h.netns, "addr", "add", f"{a}/64", "dev", up_host[0]["ifname"], "nodad")
    sh("ip", "-n", h.outside, "addr", "add", f"{b}/64", "dev", up_out[0]["ifname"], "nodad")
    return a, b


def remove_host(h: Host) -> None:
    for n in (h.netns, h.outside):
        sh("ip", "netns", "del", n, check=False)


class HostDaemon(Daemon):
    """vswitchd inside the host namespace."""

    def __init__(self, workdir: Path, host: Host) -> None:
        super().__init__(workdir)
        self.host = host
        self.env: dict[str, str] = {}     # extra environment of the daemon

    def argv(self, config: Path | None = None) -> list[str]:
        env = ["env", *(f"{k}={v}" for k, v in self.env.items())] if self.env else []
        return self.host.nsenter + env + super().argv(config)


def root_state() -> tuple[bool, str, str]:
    """What the tests must never change in the machine's own namespace:
    whether it has a table of ours, and its ip_forward."""
    tables = sh("nft", "list", "tables").stdout if _has_nft() else ""
    v6 = Path("/proc/sys/net/ipv6/conf/all/forwarding")
    return ("inet vswitch" in tables,
            Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
            v6.read_text().strip() if v6.exists() else "no IPv6")


def _has_nft() -> bool:
    return subprocess.run(["which", "nft"], capture_output=True).returncode == 0


def strip_counters(text: str) -> str:
    return re.sub(r"counter packets \d+ bytes \d+", "counter", text)


def nft_json(h: Host, *what: str) -> dict:
    return json.loads(h.run("nft", "-j", "list", *what).stdout)


# --- small servers and clients, run with the test's own Python ----------------------

WHOAMI = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
"""

WHOAMI6 = WHOAMI.replace("socket.socket()", "socket.socket(socket.AF_INET6)").replace(
    '("0.0.0.0", int(sys.argv[1]))', '("::", int(sys.argv[1]))')

TCP_ASK = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
print(s.recv(100).decode())
"""

HTTP_GET = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
    print(r.status, r.read().decode())
"""

UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048); s.sendto(data, peer)
"""

UDP_ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[3]))
for _ in range(3):
    s.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(100)[0].decode()); break
    except socket.timeout:
        pass
else:
    sys.exit(1)
"""


class Servers:
    """Background processes of a test (servers in namespaces)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], ready: str | None = "ready") -> subprocess.Popen:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(p)
        if ready is not None:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert ready in line, f"{argv} did not start: {line}"
        return p

    def python_in(self, netns: str, code: str, *args: str) -> subprocess.Popen:
        return self.start(["ip", "netns", "exec", netns, sys.executable, "-u", "-c", code,
                           *args])

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


def python_in(netns: str | None, code: str, *args: str, timeout: float = 30
              ) -> subprocess.CompletedProcess:
    """Run a snippet with the test's Python in a namespace (None: here)."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, sys.executable, "-c", code, *args],
                          capture_output=True, text=True, timeout=timeout)
