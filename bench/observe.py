"""What watching costs: TCP throughput between two namespaces with nothing
watching, with `vswitchctl capture` of the sender's port writing to
/dev/null (whole frames, and the first 128 bytes of each), and with a
select_all mirror to a third namespace; and how many frames each capture
got or lost.

    sudo .venv/bin/python -m bench.observe [--runs 3] [--seconds 5]

One vswitchd, namespaces A, B and MON on one bridge; the three modes take
turns in every round (this machine is shared and noisy: compare within a
round, read the spread).  Results go to bench/results/observe.{json,md}.
Reported, not judged.
"""
from __future__ import annotations

import argparse
import json
import os
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
PREFIX = f"vob{os.getpid() % 1000}-"
MODES = ("nothing", "capture", "capture --snaplen 128", "mirror")


def sh(*cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


class Topology:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.sock = workdir / "sock"
        self.pidfile = workdir / "pid"
        self.br = PREFIX + "br"
        self.a, self.b, self.mon = PREFIX + "a", PREFIX + "b", PREFIX + "mon"
        self.pid: int | None = None

    def ctl(self, *args: str) -> str:
        return sh(str(BIN / "vswitchctl"), "--sock", str(self.sock), *args).stdout

    def up(self) -> None:
        cfg = self.dir / "observe.toml"
        cfg.write_text(f"""
[bridge.{self.br}.port.a]
netns = "{self.a}"
ip = "10.98.0.1/24"
[bridge.{self.br}.port.b]
netns = "{self.b}"
ip = "10.98.0.2/24"
[bridge.{self.br}.port.mon]
netns = "{self.mon}"
""")
        sh(str(BIN / "vswitchd"), "--config", str(cfg), "--db", str(self.dir / "db.json"),
           "--sock", str(self.sock), "--pidfile", str(self.pidfile), "--log-file",
           str(self.dir / "log"), "--detach")
        self.pid = int(self.pidfile.read_text())
        for ns in (self.a, self.b, self.mon):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "netns", "exec", self.a, "ping", "-c", "3", "-i", "0.2", "10.98.0.2")

    def down(self) -> None:
        if self.pid and Path(f"/proc/{self.pid}").exists():
            os.kill(self.pid, signal.SIGTERM)
            while Path(f"/proc/{self.pid}").exists():
                time.sleep(0.05)


def iperf(topo: Topology, seconds: float) -> float:
    """Gbit/s B received from A (one TCP stream)."""
    server = subprocess.Popen(["ip", "netns", "exec", topo.b, "iperf3", "-s", "-1", "-B",
                               "10.98.0.2"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        out = sh("ip", "netns", "exec", topo.a, "iperf3", "-c", "10.98.0.2", "-t",
                 f"{seconds:g}", "-J", timeout=seconds + 60).stdout
    finally:
        server.wait(timeout=30)
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def one(topo: Topology, mode: str, seconds: float) -> dict:
    cap = None
    if mode.startswith("capture"):
        cap = subprocess.Popen([str(BIN / "vswitchctl"), "--sock", str(topo.sock), "capture",
                                "a", *mode.split()[1:]], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
    if mode == "mirror":
        topo.ctl("add-mirror", topo.br, "all", "select_all=true", "output_port=mon")
    try:
        gbps = iperf(topo, seconds)
    finally:
        out: dict = {"mode": mode}
        if cap:
            cap.send_signal(signal.SIGINT)
            _o, err = cap.communicate(timeout=60)
            out["capture"] = err.strip()
        if mode == "mirror":
            m = json.loads(topo.ctl("list-mirrors", topo.br, "--json"))[0]
            out["mirrored_frames"] = m["tx_packets"]
            topo.ctl("del-mirror", topo.br, "all")
    up = json.loads(topo.ctl("upcall/show", "--json"))
    out.update(gbps=round(gbps, 2), queue_dropped_total=up["dropped"]["capture"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench.observe: run as root", file=sys.stderr)
        return 1
    results = []
    with tempfile.TemporaryDirectory(prefix="vswitch-observe-") as tmp:
        topo = Topology(Path(tmp))
        try:
            topo.up()
            for i in range(args.runs):
                for mode in MODES:
                    r = one(topo, mode, args.seconds)
                    results.append(r)
                    print(f"[{i + 1}/{args.runs}] {json.dumps(r)}", flush=True)
        finally:
            topo.down()
    summary = {}
    for mode in MODES:
        g = [r["gbps"] for r in results if r["mode"] == mode]
        summary[mode] = {"gbps_median": statistics.median(g), "gbps_min": min(g),
                         "gbps_max": max(g)}
    base = summary["nothing"]["gbps_median"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "observe.json").write_text(json.dumps(
        {"seconds": args.seconds, "runs": results, "summary": summary,
         "date": time.strftime("%Y-%m-%d %H:%M")}, indent=2) + "\n")
    lines = ["| watching | TCP 1 stream Gbit/s, median (min-max) | ratio to nothing |",
             "|---|---|---|"]
    for mode, s in summary.items():
        lines.append(f"| {mode} | {s['gbps_median']:.2f} ({s['gbps_min']:.2f}-"
                     f"{s['gbps_max']:.2f}) | {s['gbps_median'] / base:.2f}x |")
    caps = [f"{r['mode']}: {r['capture']}" for r in results if "capture" in r]
    text = "\n".join(lines) + "\n\nWhat each capture said:\n\n" + \
        "\n".join(f"- {c}" for c in caps) + "\n"
    (RESULTS / "observe.md").write_text(
        f"iperf3, {args.seconds:g} s per run, {args.runs} rounds, modes taking turns.\n\n"
        + text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
