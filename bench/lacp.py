"""LACP bonds against Open vSwitch, measured: vswitch and Open vSwitch take
turns as the left switch, Open vSwitch 3.1 is always the right one.

    sudo .venv/bin/python -m bench.lacp [--runs 5] [--switches vswitch,ovs]

Topology, all in namespaces this run creates: the left switch in namespace
L (vswitchd started inside it, or a netdev-datapath ovs-vswitchd), the
right OVS in namespace R, two veth pairs between them bonded on both sides
(lacp=active, lacp-time=fast, bond_mode=balance-tcp), host HL behind the
left switch and HR behind the right one.  Per run:

- negotiation: from the right bond's creation until both bonds use both
  members;
- member down: `ping -i 0.01` from HL to HR, the left end of the link that
  carries the pings taken down: pings lost, the longest gap between
  replies, and the time until both switches left the link out;
- member back: the link up again, time until both use it again;
- silent link: the right OVS's LACPDUs on the link that carries the pings
  dropped as they leave (nftables in R; the link stays up): the time until
  the left switch stops distributing on it, and pings lost meanwhile.

Reported, not judged (timings are no pass/fail matter on this shared
machine); results in bench/results/lacp.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .proc import stop_popen

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
RESULTS = Path(__file__).resolve().parent / "results"
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
PREFIX = f"vlb{os.getpid() % 1000}-"
HL_IP, HR_IP = "10.63.0.1", "10.63.0.2"


def sh(*cmd: str, check: bool = True, input: str | None = None,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, input=input,
                          env=env, timeout=120)


def in_ns(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *cmd, check=check)


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():
            return time.monotonic() - start
        time.sleep(step)
    return None


class Ovs:
    """ovsdb-server + ovs-vswitchd (netdev datapath) inside namespace ns."""

    def __init__(self, workdir: Path, ns: str) -> None:
        self.dir, self.ns = workdir, ns
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "OVS_RUNDIR": str(workdir), "OVS_DBDIR": str(workdir),
                    "OVS_LOGDIR": str(workdir), "OVS_SYSCONFDIR": str(workdir)}
        self.procs: list[subprocess.Popen] = []
        self.bridges: list[str] = []

    def start(self) -> None:
        db = self.dir / "conf.db"
        sh("ovsdb-tool", "create", str(db), SCHEMA, env=self.env)
        self.procs.append(subprocess.Popen(
            ["ovsdb-server", str(db), f"--remote=punix:{self.dir}/db.sock",
             f"--unixctl={self.dir}/ovsdb.ctl", f"--log-file={self.dir}/ovsdb.log"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(lambda: (self.dir / "db.sock").exists(), 20)
        self.vsctl("--no-wait", "init")
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "ovs-vswitchd", f"unix:{self.dir}/db.sock",
             f"--unixctl={self.dir}/vswitchd.ctl", f"--log-file={self.dir}/vswitchd.log"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(lambda: (self.dir / "vswitchd.ctl").exists(), 20)

    def vsctl(self, *args: str) -> str:
        return sh("ovs-vsctl", f"--db=unix:{self.dir}/db.sock", "--timeout=30", *args,
                  env=self.env).stdout

    def appctl(self, *args: str) -> str:
        return sh("ovs-appctl", "-t", str(self.dir / "vswitchd.ctl"), *args,
                  env=self.env).stdout

    def add_bond(self, br: str, bond: str, members: list[str], host_port: str) -> None:
        if br not in self.bridges:
            self.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
            self.bridges.append(br)
            self.vsctl("add-port", br, host_port)
        self.vsctl("add-bond", br, bond, *members, "lacp=active", "bond_mode=balance-tcp",
                   "other_config:lacp-time=fast", "other_config:bond-rebalance-interval=1000")

    def using(self, bond: str) -> list[str]:
        return sorted(re.findall(r"^member (\S+): enabled", self.appctl("bond/show", bond),
                                 re.M))

    def stop(self) -> None:
        for br in self.bridges:
            sh("ovs-vsctl", f"--db=unix:{self.dir}/db.sock", "--timeout=30", "--if-exists",
               "del-br", br, env=self.env, check=False)
        for p in reversed(self.procs):
            stop_popen(p)


class VswitchLeft:
    name = "vswitch"

    def __init__(self, workdir: Path, ns: str) -> None:
        self.dir, self.ns = workdir, ns
        self.sock = workdir / "sock"
        self.pid: int | None = None

    def call(self, method: str, **params: Any) -> Any:
        # the control socket directly, not vswitchctl: a CLI start-up per
        # poll would blur the timings by a tenth of a second
        sys.path.insert(0, str(ROOT))
        from vswitch.client import Client
        with Client(str(self.sock), timeout=10) as c:
            return c.call(method, **params)

    def start(self, members: list[str], host_port: str) -> None:
        # the host port is a veth end in L, attached as a system port, as on the OVS side
        toml = (f'[bridge.{PREFIX}lbr.port."{host_port}"]\ntype = "system"\n'
                f'[bridge.{PREFIX}lbr.port.bond]\ntype = "bond"\n'
                f'interfaces = {json.dumps(members)}\nbond_mode = "balance-tcp"\n'
                'lacp = "active"\nlacp-time = "fast"\nbond-rebalance-interval = 1000\n'
                # OVS without userspace TSO takes no GSO frames
                'offload = false\n')
        cfg = self.dir / "left.toml"
        cfg.write_text(toml)
        in_ns(self.ns, str(BIN / "vswitchd"), "--config", str(cfg), "--db",
              str(self.dir / "db.json"), "--sock", str(self.sock), "--pidfile",
              str(self.dir / "pid"), "--log-file", str(self.dir / "log"), "--detach")
        self.pid = int((self.dir / "pid").read_text())

    def using(self) -> list[str]:
        shown = self.call("lacp/show", bond="bond")[0]
        return sorted(m["name"] for m in shown["members"] if m["distributing"])

    def stop(self) -> None:
        if self.pid and Path(f"/proc/{self.pid}").exists():
            os.kill(self.pid, signal.SIGTERM)
            wait_until(lambda: not Path(f"/proc/{self.pid}").exists(), 20)


class OvsLeft:
    name = "ovs"

    def __init__(self, workdir: Path, ns: str) -> None:
        self.ovs = Ovs(workdir, ns)

    def start(self, members: list[str], host_port: str) -> None:
        self.ovs.start()
        self.ovs.add_bond(PREFIX + "lbr", PREFIX + "lbd", members, host_port)

    def using(self) -> list[str]:
        return self.ovs.using(PREFIX + "lbd")

    def stop(self) -> None:
        self.ovs.stop()


class Topology:
    def __init__(self, workdir: Path, left_kind: str) -> None:
        self.dir = workdir
        self.L, self.R = PREFIX + "L", PREFIX + "R"
        self.HL, self.HR = PREFIX + "hl", PREFIX + "hr"
        self.left_links = [PREFIX + "l0", PREFIX + "l1"]
        self.right_links = [PREFIX + "r0", PREFIX + "r1"]
        self.left: VswitchLeft | OvsLeft = (VswitchLeft if left_kind == "vswitch" else OvsLeft)(
            workdir / "left", self.L)
        (workdir / "left").mkdir(exist_ok=True)
        self.right = Ovs(workdir / "right", self.R)

    def up(self) -> None:
        for n in (self.L, self.R, self.HL, self.HR):
            sh("ip", "netns", "add", n)
            in_ns(n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            in_ns(n, "ip", "link", "set", "lo", "up")
        for a, b in zip(self.left_links, self.right_links):
            sh("ip", "link", "add", a, "netns", self.L, "type", "veth", "peer", "name", b,
               "netns", self.R)
            in_ns(self.L, "ip", "link", "set", a, "up")
            in_ns(self.R, "ip", "link", "set", b, "up")
        for host, sw, ip in ((self.HL, self.L, HL_IP), (self.HR, self.R, HR_IP)):
            outer, inner = host + "x", host + "i"
            sh("ip", "link", "add", outer, "netns", sw, "type", "veth", "peer", "name", inner,
               "netns", host)
            in_ns(sw, "ip", "link", "set", outer, "up")
            in_ns(host, "ip", "addr", "add", f"{ip}/24", "dev", inner)
            in_ns(host, "ip", "link", "set", inner, "up")
            # OVS's netdev datapath passes partial checksums on: send finished ones
            in_ns(host, "ethtool", "-K", inner, "tx", "off")
        self.left.start(self.left_links, self.HL + "x")
        self.right.start()

    def bond_right(self) -> None:
        self.right.add_bond(PREFIX + "rbr", PREFIX + "rbd", self.right_links, self.HR + "x")

    def both_using(self, left: list[str], right: list[str]) -> bool:
        return self.left.using() == sorted(left) and \
            self.right.using(PREFIX + "rbd") == sorted(right)

    def all_up(self) -> bool:
        return self.both_using(self.left_links, self.right_links)

    def carrying_pings(self) -> int:
        def tx(i: int) -> int:
            return int(in_ns(self.L, "cat", f"/sys/class/net/{self.left_links[i]}/statistics/"
                                            "tx_packets").stdout)
        before = [tx(0), tx(1)]
        in_ns(self.HL, "ping", "-c", "20", "-i", "0.01", "-q", HR_IP, check=False)
        return 0 if tx(0) - before[0] >= tx(1) - before[1] else 1

    def down(self) -> None:
        self.left.stop()
        self.right.stop()
        for n in (self.L, self.R, self.HL, self.HR):
            sh("ip", "netns", "del", n, check=False)


def pings(ns: str, count: int) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-D", "-i", "0.01", "-W", "1",
                             "-c", str(count), HR_IP], stdout=subprocess.PIPE, text=True)


def ping_result(p: subprocess.Popen, count: int, since: float) -> tuple[int, float]:
    out, _ = p.communicate(timeout=120)
    replies = [(float(m.group(1)), int(m.group(2))) for m in
               re.finditer(r"^\[(\d+\.\d+)\].*icmp_seq=(\d+)", out, re.M)]
    lost = count - len({s for _, s in replies})
    gaps = [b[0] - a[0] for a, b in zip(replies, replies[1:]) if b[0] >= since - 1]
    return lost, round(max(gaps) * 1000, 1) if gaps else float("nan")


def one_run(kind: str, workdir: Path) -> dict[str, Any]:
    topo = Topology(workdir, kind)
    r: dict[str, Any] = {"left": kind}
    try:
        topo.up()
        topo.bond_right()
        took = wait_until(topo.all_up, 60)
        r["negotiation_s"] = round(took, 2) if took is not None else None
        if took is None:
            return r
        time.sleep(1)
        i = topo.carrying_pings()
        link = topo.left_links[i]
        others = ([topo.left_links[1 - i]], [topo.right_links[1 - i]])
        p = pings(topo.HL, 400)
        time.sleep(1.5)
        t_down = time.time()
        in_ns(topo.L, "ip", "link", "set", link, "down")
        left = wait_until(lambda: topo.both_using(*others), 10)
        r["down_lost"], r["down_max_gap_ms"] = ping_result(p, 400, t_down)
        r["down_left_both_s"] = round(left, 3) if left is not None else None
        in_ns(topo.L, "ip", "link", "set", link, "up")
        back = wait_until(topo.all_up, 30)
        r["back_s"] = round(back, 2) if back is not None else None
        time.sleep(12)          # OVS rebalances every second here; let flows settle
        i = topo.carrying_pings()
        silent = topo.right_links[i]
        rules = (f'add table netdev lacpsilence\n'
                 f'add chain netdev lacpsilence out {{ type filter hook egress device '
                 f'"{silent}" priority 0; }}\n'
                 f'add rule netdev lacpsilence out ether type 0x8809 drop\n')
        sh("ip", "netns", "exec", topo.R, "nft", "-f", "-", input=rules)
        t_cut = time.time()
        p = pings(topo.HL, 800)
        gone = wait_until(lambda: topo.left.using() == [topo.left_links[1 - i]], 15)
        r["silent_left_s"] = round(gone, 2) if gone is not None else None
        r["silent_lost"], r["silent_max_gap_ms"] = ping_result(p, 800, t_cut)
    finally:
        topo.down()
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--switches", default="vswitch,ovs")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench.lacp: run as root", file=sys.stderr)
        return 1
    if not shutil.which("ovs-vswitchd"):
        print("bench.lacp: needs openvswitch-switch (scripts/setup.sh --test)", file=sys.stderr)
        return 1
    kinds = args.switches.split(",")
    results: list[dict[str, Any]] = []
    for n in range(args.runs):
        for kind in kinds:                # taking turns, as the other benchmarks do
            with tempfile.TemporaryDirectory(prefix="vswitch-lacp-") as tmp:
                r = one_run(kind, Path(tmp))
            results.append(r)
            print(f"[{n + 1}/{args.runs}] {json.dumps(r)}", flush=True)
    keys = [("negotiation_s", "negotiation, s"), ("down_lost", "member down: pings lost"),
            ("down_max_gap_ms", "member down: longest reply gap, ms"),
            ("down_left_both_s", "member down: out of both bonds, s"),
            ("back_s", "member back: in both bonds again, s"),
            ("silent_left_s", "silent link: out of the left bond, s"),
            ("silent_lost", "silent link: pings lost")]
    summary: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        rs = [r for r in results if r["left"] == kind]
        summary[kind] = {}
        for key, _ in keys:
            vals = [r[key] for r in rs if r.get(key) is not None]
            summary[kind][key] = ({"median": statistics.median(vals), "min": min(vals),
                                   "max": max(vals), "n": len(vals)} if vals else None)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lacp.json").write_text(json.dumps(
        {"runs": results, "summary": summary, "date": time.strftime("%Y-%m-%d %H:%M")},
        indent=2) + "\n")
    lines = ["| left switch | " + " | ".join(label for _, label in keys) + " |",
             "|---" * (len(keys) + 1) + "|"]
    for kind in kinds:
        cells = []
        for key, _ in keys:
            s = summary[kind][key]
            cells.append("n/a" if s is None else f"{s['median']} ({s['min']}–{s['max']})")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (RESULTS / "lacp.md").write_text(
        f"LACP bonds (lacp=active, lacp-time=fast, balance-tcp) against Open vSwitch 3.1, "
        f"{args.runs} runs each, medians (min–max); pings every 10 ms.\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
