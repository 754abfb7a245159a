"""Bond failover outage, measured: pings every 10 ms across an active-backup
bond while its active link goes down.

    sudo .venv/bin/python -m bench.failover [--runs 5] [--updelay 0] [--downdelay 0]

Topology (one vswitchd): bridge A holds host namespace HA and a bond of two
veth ends; the veths' other ends are plain system ports of bridge B, which
holds host namespace HB (a bond meeting an upstream switch).  Each run puts
the bond back on link 0, starts `ping -i 0.01` from HA to HB, takes link 0
down (either our end, `ip link set va0 down`, or the far end, which reaches
the bond as a carrier loss), and counts the pings lost and the longest gap
between replies.  Reported, not judged: timings do not belong in pass/fail
tests on this shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
RESULTS = Path(__file__).resolve().parent / "results"
PREFIX = f"vfo{os.getpid() % 1000}-"
INTERVAL_MS = 10


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


class Topology:
    def __init__(self, workdir: Path, updelay: int, downdelay: int) -> None:
        self.dir = workdir
        self.sock = workdir / "sock"
        self.pidfile = workdir / "pid"
        self.va = [PREFIX + "va0", PREFIX + "va1"]
        self.vb = [PREFIX + "vb0", PREFIX + "vb1"]
        self.ha, self.hb = PREFIX + "ha", PREFIX + "hb"
        self.updelay, self.downdelay = updelay, downdelay
        self.pid: int | None = None

    def ctl(self, *args: str) -> str:
        return sh(str(BIN / "vswitchctl"), "--sock", str(self.sock), *args).stdout

    def up(self) -> None:
        for a, b in zip(self.va, self.vb):
            sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            for end in (a, b):
                sh("sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1")
        toml = f"""
[bridge.{PREFIX}a.port.ha]
netns = "{self.ha}"
ip = "10.99.0.1/24"
[bridge.{PREFIX}a.port.bond]
type = "bond"
interfaces = ["{self.va[0]}", "{self.va[1]}"]
bond_updelay = {self.updelay}
bond_downdelay = {self.downdelay}
[bridge.{PREFIX}b.port.hb]
netns = "{self.hb}"
ip = "10.99.0.2/24"
[bridge.{PREFIX}b.port."{self.vb[0]}"]
type = "system"
[bridge.{PREFIX}b.port."{self.vb[1]}"]
type = "system"
"""
        cfg = self.dir / "failover.toml"
        cfg.write_text(toml)
        sh(str(BIN / "vswitchd"), "--config", str(cfg), "--db", str(self.dir / "db.json"),
           "--sock", str(self.sock), "--pidfile", str(self.pidfile), "--log-file",
           str(self.dir / "log"), "--detach")
        self.pid = int(self.pidfile.read_text())
        sh("ip", "netns", "exec", self.ha, "ping", "-c", "3", "-i", "0.2", "10.99.0.2")

    def down(self) -> None:
        if self.pid and Path(f"/proc/{self.pid}").exists():
            os.kill(self.pid, signal.SIGTERM)
            while Path(f"/proc/{self.pid}").exists():
                time.sleep(0.05)
        for a in self.va:
            sh("ip", "link", "del", a, check=False)

    def reset(self) -> None:
        for link in self.va + self.vb:
            sh("ip", "link", "set", link, "up")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            members = json.loads(self.ctl("bond/show", "bond", "--json"))[0]["members"]
            if all(m["enabled"] for m in members):
                break
            time.sleep(0.05)
        self.ctl("bond/set-active-member", "bond", self.va[0])
        time.sleep(0.3)


def one_run(topo: Topology, where: str) -> dict:
    count = 400
    ping = subprocess.Popen(["ip", "netns", "exec", topo.ha, "ping", "-D", "-i",
                             str(INTERVAL_MS / 1000), "-W", "1", "-c", str(count),
                             "10.99.0.2"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    link = topo.va[0] if where == "own end" else topo.vb[0]
    t_down = time.time()
    sh("ip", "link", "set", link, "down")
    out, _ = ping.communicate(timeout=60)
    replies = [(float(m.group(1)), int(m.group(2))) for m in
               re.finditer(r"^\[(\d+\.\d+)\].*icmp_seq=(\d+)", out, re.M)]
    seqs = {s for _, s in replies}
    lost = count - len(seqs)
    dups = len(replies) - len(seqs)
    gaps = [b[0] - a[0] for a, b in zip(replies, replies[1:]) if b[0] >= t_down - 1]
    max_gap_ms = max(gaps) * 1000 if gaps else float("nan")
    active = json.loads(topo.ctl("bond/show", "bond", "--json"))[0]["active_member"]
    return {"where": where, "lost": lost, "duplicates": dups,
            "outage_ms": lost * INTERVAL_MS, "max_reply_gap_ms": round(max_gap_ms, 1),
            "active_after": active}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--updelay", type=int, default=0)
    ap.add_argument("--downdelay", type=int, default=0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench.failover: run as root", file=sys.stderr)
        return 1
    results = []
    with tempfile.TemporaryDirectory(prefix="vswitch-failover-") as tmp:
        topo = Topology(Path(tmp), args.updelay, args.downdelay)
        try:
            topo.up()
            for i in range(args.runs):
                for where in ("own end", "far end"):
                    topo.reset()
                    r = one_run(topo, where)
                    results.append(r)
                    print(f"[{i + 1}/{args.runs}] {where}: lost {r['lost']} pings "
                          f"(~{r['outage_ms']} ms), longest reply gap "
                          f"{r['max_reply_gap_ms']} ms, duplicates {r['duplicates']}, "
                          f"active now {r['active_after']}", flush=True)
        finally:
            topo.down()
    summary = {}
    for where in ("own end", "far end"):
        rs = [r for r in results if r["where"] == where]
        summary[where] = {
            "runs": len(rs),
            "lost_median": statistics.median(r["lost"] for r in rs),
            "lost_max": max(r["lost"] for r in rs),
            "gap_ms_median": statistics.median(r["max_reply_gap_ms"] for r in rs),
            "gap_ms_max": max(r["max_reply_gap_ms"] for r in rs),
            "duplicates": sum(r["duplicates"] for r in rs),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "failover.json").write_text(json.dumps(
        {"updelay": args.updelay, "downdelay": args.downdelay, "interval_ms": INTERVAL_MS,
         "runs": results, "summary": summary, "date": time.strftime("%Y-%m-%d %H:%M")},
        indent=2) + "\n")
    lines = ["| link taken down | runs | pings lost (median / max) | longest gap between "
             "replies, ms (median / max) | duplicates |", "|---|---|---|---|---|"]
    for where, s in summary.items():
        lines.append(f"| {where} | {s['runs']} | {s['lost_median']} / {s['lost_max']} | "
                     f"{s['gap_ms_median']} / {s['gap_ms_max']} | {s['duplicates']} |")
    table = "\n".join(lines)
    (RESULTS / "failover.md").write_text(
        f"Pings every {INTERVAL_MS} ms across an active-backup bond, "
        f"updelay {args.updelay} ms, downdelay {args.downdelay} ms.\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
