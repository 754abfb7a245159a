"""The two-namespace topology every switch is measured in, and the names of
everything the harness creates.

    ns A (10.77.0.1/24) eth0 ── switch under test ── eth0 (10.77.0.2/24) ns B

Each switch's adapter (bench/peers/) only has to leave one interface called
``eth0`` in each namespace; addressing and checks are done here, the same for
all.  Every namespace and interface name starts with a per-run prefix such as
``vsb123-`` so that nothing else on the machine is ever touched.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cleanup
from .proc import BenchError, run, wait_until

IFACE = "eth0"
IP_A = "10.77.0.1"
IP_B = "10.77.0.2"
PREFIXLEN = 24
IFNAMSIZ = 15  # usable characters in a Linux interface name


def _netns_names() -> set[str]:
    return {p.name for p in Path("/run/netns").glob("*")} if Path("/run/netns").exists() else set()


def _link_names() -> set[str]:
    return {p.name for p in Path("/sys/class/net").iterdir()}


def allocate_prefix() -> str:
    """``vsbNNN-`` from our pid, skipping any number already in use by a
    concurrent run (namespaces or root-namespace links with that prefix)."""
    taken = _netns_names() | _link_names()
    base = os.getpid() % 1000
    for i in range(1000):
        prefix = f"vsb{(base + i) % 1000}-"
        if not any(n.startswith(prefix) for n in taken):
            return prefix
    raise BenchError("no free vsbNNN- prefix")


@dataclass(frozen=True)
class Names:
    """Hands out names under the run's prefix, checked against IFNAMSIZ."""
    prefix: str

    def __call__(self, suffix: str) -> str:
        name = self.prefix + suffix
        if len(name) > IFNAMSIZ:
            raise ValueError(f"interface name too long: {name}")
        return name


def create_ns(name: str) -> int:
    """Create a namespace with IPv6 off (no router solicitations or MLD in the
    way) and lo up; returns the cleanup token that deletes it."""
    if name in _netns_names():
        raise BenchError(f"namespace {name} already exists; not touching it")
    run(["ip", "netns", "add", name])
    token = cleanup.push(f"netns {name}", lambda: delete_ns(name))
    # 'default' also covers interfaces moved in later: a device entering a
    # namespace gets that namespace's defaults.
    run(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
         "net.ipv6.conf.default.disable_ipv6=1"], ns=name)
    run(["ip", "-n", name, "link", "set", "lo", "up"])
    return token


def delete_ns(name: str) -> None:
    if name in _netns_names():
        run(["ip", "netns", "del", name], check=False)


def link_exists(name: str, ns: str | None = None) -> bool:
    if ns is None:
        return Path("/sys/class/net", name).exists()
    return run(["ip", "-n", ns, "link", "show", "dev", name], check=False).returncode == 0


def wait_link(name: str, ns: str | None = None, timeout: float = 10.0) -> None:
    wait_until(lambda: link_exists(name, ns), timeout,
               f"interface {name}" + (f" in {ns}" if ns else ""), 0.05)


def move_link(name: str, ns: str, new_name: str = IFACE) -> None:
    """Move a root-namespace interface into ``ns`` and rename it there."""
    run(["ip", "link", "set", "dev", name, "netns", ns])
    run(["ip", "-n", ns, "link", "set", "dev", name, "name", new_name])


def configure(ns: str, ip: str) -> None:
    """Address and bring up eth0; idempotent, so a switch that already did it
    (vswitchd configures its ports itself) is left as it was."""
    run(["ip", "-n", ns, "addr", "replace", f"{ip}/{PREFIXLEN}", "dev", IFACE])
    run(["ip", "-n", ns, "link", "set", "dev", IFACE, "up"])


def link_info(ns: str) -> dict[str, Any]:
    out = run(["ip", "-n", ns, "-j", "-s", "link", "show", "dev", IFACE]).stdout
    info: dict[str, Any] = json.loads(out)[0]
    return info


def mac(ns: str) -> str:
    return str(link_info(ns)["address"])


def counters(ns: str) -> dict[str, int]:
    """eth0's kernel counters in ``ns``: rx/tx packets and drops."""
    s = link_info(ns)["stats64"]
    return {"rx_packets": s["rx"]["packets"], "rx_dropped": s["rx"]["dropped"],
            "tx_packets": s["tx"]["packets"], "tx_dropped": s["tx"]["dropped"]}


_POKE = ("import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
         "s.sendto(b'warm',(sys.argv[1],9))")


def poke(ns: str, dst_ip: str) -> None:
    """One UDP datagram from ``ns`` to ``dst_ip``: makes the sender resolve
    the peer's MAC (ARP both ways) and so teaches a learning switch both
    hosts' ports.  Port 9 has no listener; the answer is at most one ICMP."""
    run([sys.executable, "-c", _POKE, dst_ip], ns=ns)


def neighbour_mac(ns: str, ip: str) -> str | None:
    out = run(["ip", "-n", ns, "-j", "neigh", "show", ip], check=False).stdout
    for entry in json.loads(out or "[]"):
        if entry.get("lladdr") and "FAILED" not in entry.get("state", []):
            return str(entry["lladdr"])
    return None


@dataclass
class Topology:
    """Namespaces A and B for one switch run; ``close`` deletes them."""
    names: Names
    ns_a: str = field(init=False)
    ns_b: str = field(init=False)
    _tokens: list[int] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.ns_a = self.names("a")
        self.ns_b = self.names("b")

    def create(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            self._tokens.append(create_ns(ns))

    def close(self) -> None:
        while self._tokens:
            cleanup.release(self._tokens.pop())

    def address(self) -> None:
        wait_link(IFACE, self.ns_a)
        wait_link(IFACE, self.ns_b)
        configure(self.ns_a, IP_A)
        configure(self.ns_b, IP_B)

    def check(self, timeout: float = 10.0) -> None:
        """A resolves B through the switch (ARP request and reply crossed it)."""
        mac_b = mac(self.ns_b)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            poke(self.ns_a, IP_B)
            if neighbour_mac(self.ns_a, IP_B) == mac_b:
                poke(self.ns_b, IP_A)
                return
            time.sleep(0.2)
        raise BenchError(f"no connectivity: {self.ns_a} cannot resolve {IP_B} ({mac_b})")

    def warm(self) -> None:
        """Refresh the switch's learned entries for both hosts."""
        poke(self.ns_a, IP_B)
        poke(self.ns_b, IP_A)


def listening(ns: str, proto: str, port: int) -> bool:
    """A socket in ``ns`` bound to ``port`` (TCP in LISTEN, or any UDP)."""
    table = run(["cat", f"/proc/net/{proto}"], ns=ns).stdout.splitlines()[1:]
    for line in table:
        fields = line.split()
        local, state = fields[1], fields[3]
        if int(local.rsplit(":", 1)[1], 16) == port and (proto == "udp" or state == "0A"):
            return True
    return False


def wait_listen(ns: str, proto: str, port: int, timeout: float = 10.0) -> None:
    wait_until(lambda: listening(ns, proto, port), timeout, f"{proto} port {port} in {ns}", 0.05)
