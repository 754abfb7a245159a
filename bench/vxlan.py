"""TCP through VXLAN: vswitch's tunnel port against the kernel's vxlan device
and Open vSwitch's userspace VXLAN, in the same run, both directions.

    sudo .venv/bin/python -m bench.vxlan [--runs 3] [--time 10]
         [--setups kernel-gso,kernel-seg,vswitch,vswitch-udpgso,ovs]

Every setup has the same right-hand side, the kernel's way: namespace K2
holds a vxlan device and a Linux bridge with a veth to host namespace HB.
The left-hand side is the switch under test, joined to K2 by a veth pair
(the underlay), with host namespace HA behind it:

  kernel-gso      K1: a kernel vxlan device + Linux bridge (defaults: 64 KB
                  segments cross the veth underlay whole, "tunnel GSO")
  kernel-seg      the same with tx-udp_tnl-segmentation off on both underlay
                  ends: one UDP datagram per TCP segment on the wire
  vswitch         vswitchd (in namespace U) with a TAP port for HA and a
                  vxlan port: one datagram per segment, built in C, sent in
                  batches on a raw socket
  vswitch-udpgso  the same with udp_gso=true: one UDP_SEGMENT send per 64 KB
  ovs             Open vSwitch 3.1, userspace datapath: br-phy holds the
                  underlay address, br-int the vxlan port and a veth to HA
                  (offloads off there; userspace TSO off, see the README);
                  K2's underlay veth computes its checksums in software for
                  it (OVS drops the partial ones a veth hands over)

Inner MTU 1450 everywhere (underlay 1500).  "fwd" is HA -> HB (the switch
under test encapsulates), "rev" HB -> HA (it decapsulates).  Each figure is
the median of the rounds with min-max; setups take turns, their order
rotating per round.  Switch CPU is the switch process's (vswitchd,
ovs-vswitchd) user+sys seconds per GB received; the kernel's setups have
no process (n/a).  Results: bench/results/vxlan.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import cleanup
from .proc import stop_popen

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
RESULTS = Path(__file__).resolve().parent / "results"
PREFIX = f"vxb{os.getpid() % 1000}-"
SETUPS = ("kernel-gso", "kernel-seg", "vswitch", "vswitch-udpgso", "ovs")
VNI = 4100
MTU = 1450
PORT = 5251
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sh(*cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def ns(netns: str, *cmd: str, check: bool = True, timeout: float = 120
       ) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", netns, *cmd, check=check, timeout=timeout)


class Lab:
    """Namespaces and processes of one (round, setup); all removed at close."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.dir = Path(tempfile.mkdtemp(prefix="vxbench-"))
        self.tokens.append(cleanup.push("rm " + str(self.dir),
                                        lambda: shutil.rmtree(self.dir, True)))
        a, b = random.randint(64, 127), random.randint(0, 255)
        self.under, self.over = f"10.{a}.{b}", f"10.{a}.{(b + 1) % 256}"
        self.pids: list[int] = []     # the switch's processes (CPU)

    def netns(self, base: str) -> str:
        n = PREFIX + base
        sh("ip", "netns", "add", n)
        self.tokens.append(cleanup.push("netns " + n,
                                        lambda: sh("ip", "netns", "del", n, check=False)))
        for key in ("all", "default"):
            ns(n, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
        ns(n, "ip", "link", "set", "lo", "up")
        return n

    def veth(self, a: str, a_if: str, b: str, b_if: str) -> None:
        sh("ip", "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if,
           "netns", b)

    def up(self, n: str, dev: str, ip: str | None = None, mtu: int | None = None) -> None:
        if mtu:
            ns(n, "ip", "link", "set", dev, "mtu", str(mtu))
        if ip:
            ns(n, "ip", "addr", "add", ip, "dev", dev)
        ns(n, "ip", "link", "set", dev, "up")

    def kernel_side(self, k: str, local: str, remote: str, host: str, host_ip: str) -> None:
        ns(k, "ip", "link", "add", "vx0", "type", "vxlan", "id", str(VNI), "local", local,
           "remote", remote, "dstport", "4789")
        ns(k, "ip", "link", "add", "br0", "type", "bridge")
        self.veth(k, "kh", host, "eth0")
        for dev in ("vx0", "kh"):
            ns(k, "ip", "link", "set", dev, "mtu", str(MTU))
            ns(k, "ip", "link", "set", dev, "master", "br0")
            ns(k, "ip", "link", "set", dev, "up")
        ns(k, "ip", "link", "set", "br0", "up")
        self.up(host, "eth0", host_ip, MTU)

    def spawn(self, argv: list[str], log: str) -> subprocess.Popen:
        with open(self.dir / log, "w") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)

        self.tokens.append(cleanup.push(f"process {p.pid}", lambda: stop_popen(p)))
        return p

    def close(self) -> None:
        for t in reversed(self.tokens):
            cleanup.release(t)
        self.tokens.clear()


# --- the left-hand sides ----------------------------------------------------------

def left_kernel(lab: Lab, ha: str, k2: str, segmented: bool) -> None:
    k1 = lab.netns("k1")
    lab.veth(k1, "u0", k2, "u0")
    lab.up(k1, "u0", f"{lab.under}.1/24")
    lab.up(k2, "u0", f"{lab.under}.2/24")
    lab.kernel_side(k1, f"{lab.under}.1", f"{lab.under}.2", ha, f"{lab.over}.1/24")
    if segmented:
        for n in (k1, k2):
            ns(n, "ethtool", "-K", "u0", "tx-udp_tnl-segmentation", "off",
               "tx-udp_tnl-csum-segmentation", "off")


def left_vswitch(lab: Lab, ha: str, k2: str, udp_gso: bool) -> None:
    u = lab.netns("u")
    lab.veth(u, "u0", k2, "u0")
    lab.up(u, "u0", f"{lab.under}.1/24")
    lab.up(k2, "u0", f"{lab.under}.2/24")
    vx = {"type": "vxlan", "remote_ip": f"{lab.under}.2", "key": VNI}
    if udp_gso:
        vx["udp_gso"] = True
    cfg = {"bridge": {"br0": {"port": {
        "ha": {"netns": ha, "ip": f"{lab.over}.1/24", "mtu": MTU}, "vx": vx}}}}
    conf = lab.dir / "vswitch.toml"
    conf.write_text(to_toml(cfg))
    pidfile = lab.dir / "vswitchd.pid"
    sh("nsenter", f"--net=/run/netns/{u}", str(BIN / "vswitchd"), "--config", str(conf),
       "--db", str(lab.dir / "conf.json"), "--sock", str(lab.dir / "vswitchd.sock"),
       "--pidfile", str(pidfile), "--log-file", str(lab.dir / "vswitchd.log"), "--detach")
    pid = int(pidfile.read_text())
    lab.pids.append(pid)

    def stop() -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    # before the namespaces go (registered later: undone first)
    lab.tokens.append(cleanup.push(f"vswitchd {pid}", stop))


def left_ovs(lab: Lab, ha: str, k2: str) -> None:
    o = lab.netns("o")
    lab.veth(o, "u0", k2, "u0")
    lab.up(o, "u0")
    lab.up(k2, "u0", f"{lab.under}.2/24")
    lab.veth(o, "oh", ha, "eth0")
    lab.up(o, "oh", mtu=MTU)
    lab.up(ha, "eth0", f"{lab.over}.1/24", MTU)
    ns(ha, "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off")
    d = lab.dir / "ovs"
    d.mkdir()
    env = {**os.environ, "OVS_RUNDIR": str(d), "OVS_DBDIR": str(d), "OVS_LOGDIR": str(d),
           "OVS_SYSCONFDIR": str(d)}
    db = d / "conf.db"
    subprocess.run(["ovsdb-tool", "create", str(db),
                    "/usr/share/openvswitch/vswitch.ovsschema"], check=True, env=env)
    lab.spawn(["ovsdb-server", str(db), f"--remote=punix:{d}/db.sock",
               f"--unixctl={d}/ovsdb.ctl", f"--log-file={d}/ovsdb.log"], "ovsdb.out")
    wait_path(d / "db.sock")

    def vsctl(*args: str) -> None:
        subprocess.run(["ovs-vsctl", f"--db=unix:{d}/db.sock", "--timeout=30", *args],
                       check=True, env=env, capture_output=True)
    vsctl("--no-wait", "init")
    p = lab.spawn(["ip", "netns", "exec", o, "ovs-vswitchd", f"unix:{d}/db.sock",
                   f"--unixctl={d}/vswitchd.ctl", f"--log-file={d}/vswitchd.log"],
                  "ovs-vswitchd.out")
    wait_path(d / "vswitchd.ctl")
    lab.pids.append(p.pid)
    bridges = []
    for br in ("br-phy", "br-int"):
        vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
        bridges.append(br)
    lab.tokens.append(cleanup.push("ovs bridges", lambda: [
        subprocess.run(["ovs-vsctl", f"--db=unix:{d}/db.sock", "--timeout=10",
                        "--if-exists", "del-br", b], env=env, capture_output=True)
        for b in bridges]))
    vsctl("add-port", "br-phy", "u0")
    ns(o, "ip", "addr", "add", f"{lab.under}.1/24", "dev", "br-phy")
    ns(o, "ip", "link", "set", "br-phy", "up")
    vsctl("add-port", "br-int", "vxlan0", "--", "set", "interface", "vxlan0", "type=vxlan",
          f"options:remote_ip={lab.under}.2", f"options:key={VNI}")
    vsctl("add-port", "br-int", "oh")


def wait_path(p: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not p.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{p} did not appear")
        time.sleep(0.05)


def to_toml(data: dict[str, Any], table: tuple[str, ...] = ()) -> str:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    out = ["[" + ".".join(json.dumps(t) for t in table) + "]"] if table and scalars else []
    out += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in scalars.items()]
    text = "\n".join(out) + ("\n\n" if out else "")
    for k, v in tables.items():
        text += to_toml(v, table + (k,))
    return text


# --- measuring ----------------------------------------------------------------------

def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def iperf(lab: Lab, ha: str, hb: str, seconds: float, reverse: bool) -> dict[str, Any]:
    server = lab.spawn(["ip", "netns", "exec", hb, "iperf3", "-s", "-1", "-p", str(PORT)],
                       f"iperf3-server-{'rev' if reverse else 'fwd'}.log")
    time.sleep(0.5)
    argv = ["iperf3", "-c", f"{lab.over}.2", "-p", str(PORT), "-t", f"{seconds:g}", "-J"]
    if reverse:
        argv.append("-R")
    c0 = cpu_ticks(lab.pids)
    r = ns(ha, *argv, check=False, timeout=seconds + 60)
    c1 = cpu_ticks(lab.pids)
    server.wait(timeout=20)
    try:
        rep = json.loads(r.stdout)
        recv = rep["end"]["sum_received"]
    except (json.JSONDecodeError, KeyError):
        raise RuntimeError(f"iperf3 failed: {r.stdout[-300:]} {r.stderr[-300:]}") from None
    gb = recv["bytes"] / 1e9
    cpu_s = (c1 - c0) / CLK_TCK
    return {"gbps": recv["bits_per_second"] / 1e9,
            "retransmits": rep["end"]["sum_sent"].get("retransmits"),
            "switch_cpu_s_per_gb": cpu_s / gb if lab.pids and gb > 0 else None}


def run_setup(setup: str, seconds: float) -> dict[str, Any]:
    lab = Lab()
    try:
        ha, hb, k2 = lab.netns("ha"), lab.netns("hb"), lab.netns("k2")
        if setup in ("kernel-gso", "kernel-seg"):
            left_kernel(lab, ha, k2, segmented=setup == "kernel-seg")
        elif setup in ("vswitch", "vswitch-udpgso"):
            # the daemon creates HA itself (its TAP's namespace)
            sh("ip", "netns", "del", ha)
            left_vswitch(lab, ha, k2, udp_gso=setup == "vswitch-udpgso")
        else:
            left_ovs(lab, ha, k2)
        lab.kernel_side(k2, f"{lab.under}.2", f"{lab.under}.1", hb, f"{lab.over}.2/24")
        if setup == "ovs":
            # OVS drops datagrams whose UDP checksum a veth left unfinished:
            # the kernel side finishes its own in software for it
            ns(k2, "ethtool", "-K", "u0", "tx", "off")
        deadline = time.monotonic() + 30
        while ns(ha, "ping", "-c1", "-W1", f"{lab.over}.2", check=False).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("no ping through the tunnel")
        return {"fwd": iperf(lab, ha, hb, seconds, False),
                "rev": iperf(lab, ha, hb, seconds, True)}
    finally:
        lab.close()


def summarize(vals: list[float]) -> dict[str, float] | None:
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def report(records: list[dict[str, Any]], setups: list[str]) -> tuple[dict, str]:
    table: dict[str, dict[str, Any]] = {}
    for s in setups:
        runs = [r for r in records if r["setup"] == s and "error" not in r]
        row: dict[str, Any] = {}
        for d in ("fwd", "rev"):
            row[d] = summarize([r[d]["gbps"] for r in runs])
            row[d + "_cpu"] = summarize([r[d]["switch_cpu_s_per_gb"] for r in runs
                                         if r[d]["switch_cpu_s_per_gb"] is not None])
            row[d + "_retx"] = summarize([r[d]["retransmits"] for r in runs
                                          if r[d]["retransmits"] is not None])
        table[s] = row

    def cell(x: dict | None, fmt: str = "{:.2f}") -> str:
        if not x:
            return "n/a"
        return f"{fmt.format(x['median'])} ({fmt.format(x['min'])}–{fmt.format(x['max'])})"

    def ratio(s: str, base: str, d: str) -> str:
        a, b = table.get(s, {}).get(d), table.get(base, {}).get(d)
        if not a or not b or not b["median"]:
            return "n/a"
        return f"{a['median'] / b['median']:.2f}×"

    lines = ["| setup | fwd Gbit/s | rev Gbit/s | fwd switch CPU s/GB | rev switch CPU s/GB "
             "| fwd retransmits | rev retransmits |", "|---|---|---|---|---|---|---|"]
    for s in setups:
        r = table[s]
        lines.append(f"| {s} | {cell(r['fwd'])} | {cell(r['rev'])} | {cell(r['fwd_cpu'], '{:.3f}')}"
                     f" | {cell(r['rev_cpu'], '{:.3f}')} | {cell(r['fwd_retx'], '{:.0f}')}"
                     f" | {cell(r['rev_retx'], '{:.0f}')} |")
    lines += ["", "Ratios of medians (absolute Gbit/s in the table above):", "",
              "| setup | fwd / kernel-gso | rev / kernel-gso | fwd / kernel-seg "
              "| rev / kernel-seg | fwd / ovs | rev / ovs |", "|---|---|---|---|---|---|---|"]
    for s in setups:
        lines.append(f"| {s} | {ratio(s, 'kernel-gso', 'fwd')} | {ratio(s, 'kernel-gso', 'rev')}"
                     f" | {ratio(s, 'kernel-seg', 'fwd')} | {ratio(s, 'kernel-seg', 'rev')}"
                     f" | {ratio(s, 'ovs', 'fwd')} | {ratio(s, 'ovs', 'rev')} |")
    errors = [r for r in records if "error" in r]
    if errors:
        lines += ["", "Errors:", ""] + [f"- round {r['round']} {r['setup']}: {r['error']}"
                                        for r in errors]
    return table, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.vxlan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--time", type=float, default=10, help="seconds per iperf3 run")
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.vxlan: run as root", file=sys.stderr)
        return 1
    setups = [s for s in args.setups.split(",") if s]
    bad = [s for s in setups if s not in SETUPS]
    if bad:
        print(f"bench.vxlan: unknown setup {bad[0]} (one of {', '.join(SETUPS)})",
              file=sys.stderr)
        return 1
    cleanup.install()
    records = []
    for rnd in range(args.runs):
        order = setups[rnd % len(setups):] + setups[:rnd % len(setups)]
        for s in order:
            print(f"[round {rnd + 1}/{args.runs}] {s} ...", end=" ", flush=True)
            try:
                rec = {"round": rnd + 1, "setup": s, **run_setup(s, args.time),
                       "loadavg": os.getloadavg()[0]}
                print(f"fwd {rec['fwd']['gbps']:.2f} rev {rec['rev']['gbps']:.2f} Gbit/s")
            except Exception as e:   # recorded, and the others still run
                rec = {"round": rnd + 1, "setup": s, "error": str(e)}
                print(f"error: {e}")
            records.append(rec)
    table, md = report(records, setups)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kernel = os.uname().release
    head = (f"# TCP through VXLAN ({time.strftime('%Y-%m-%d')}, kernel {kernel}, "
            f"{os.cpu_count()} CPUs, {args.runs} rounds of {args.time:g} s)\n\n")
    (out / "vxlan.md").write_text(head + md + "\n")
    (out / "vxlan.json").write_text(json.dumps({"args": vars(args), "records": records,
                                                "summary": table}, indent=2) + "\n")
    print(head + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
