"""Soak: minutes of mixed traffic with port churn, watching the daemon for
growth.

    sudo .venv/bin/python -m bench.soak [--minutes 10] [--churn-every 3]

One vswitchd, one bridge: hosts S1..S4 (iperf3 TCP between S1 and S2, pings
S3 -> S4 every 50 ms), a namespace sending random frames with trafgen at a
moderate rate, and a port added and deleted every few seconds (a TAP in its
own namespace, with a ping through it each time).  Every 10 s it samples the
daemon's resident memory and open file descriptors; after a warm-up minute
they must not grow.  Every configuration change must be answered; the
slowest answer is reported.  Results go to bench/results/soak.{json,md}.
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
PREFIX = f"vsk{os.getpid() % 1000}-"
BR = PREFIX + "br"
RANDOM_FRAMES = """\
{ drnd(6), drnd(6), drnd(2), drnd(46) }
{ drnd(6), drnd(6), c16(0x8100), drnd(2), drnd(2), drnd(300) }
{ drnd(6), drnd(6), c16(0x88a8), drnd(2), c16(0x8100), drnd(2), drnd(2), drnd(1000) }
{ drnd(6), drnd(6), c16(0x8100), drnd(1) }
"""


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


def ns(netns: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", netns, *cmd, **kw)


def sample(pid: int) -> tuple[int, int]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
               .splitlines() if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--churn-every", type=float, default=3.0, help="seconds between changes")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench.soak: run as root", file=sys.stderr)
        return 1
    procs: list[subprocess.Popen] = []
    pid = None
    with tempfile.TemporaryDirectory(prefix="vswitch-soak-") as tmp:
        work = Path(tmp)
        sock = work / "sock"

        def ctl(*a: str) -> float:
            t0 = time.monotonic()
            sh(str(BIN / "vswitchctl"), "--sock", str(sock), *a, timeout=30)
            return time.monotonic() - t0

        hosts = {f"s{i}": f"10.55.0.{i}/24" for i in range(1, 5)}
        toml = f'[bridge."{BR}"]\nmac_table_size = 2048\n'
        for h, ip in hosts.items():
            toml += f'[bridge."{BR}".port.{h}]\nnetns = "{PREFIX}{h}"\nip = "{ip}"\n'
        toml += f'[bridge."{BR}".port.noise]\nnetns = "{PREFIX}noise"\n'
        (work / "soak.toml").write_text(toml)
        try:
            sh(str(BIN / "vswitchd"), "--config", str(work / "soak.toml"), "--db",
               str(work / "db.json"), "--sock", str(sock), "--pidfile", str(work / "pid"),
               "--log-file", str(work / "log"), "--detach")
            pid = int((work / "pid").read_text())
            ns(PREFIX + "s1", "ping", "-c", "2", "10.55.0.2")
            procs.append(subprocess.Popen(["ip", "netns", "exec", PREFIX + "s2", "iperf3", "-s",
                                           "-p", "5400"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            time.sleep(0.5)
            seconds = int(args.minutes * 60)
            procs.append(subprocess.Popen(["ip", "netns", "exec", PREFIX + "s1", "iperf3", "-c",
                                           "10.55.0.2", "-p", "5400", "-t", str(seconds + 30),
                                           "-b", "2G"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            pinger = subprocess.Popen(["ip", "netns", "exec", PREFIX + "s3", "ping", "-i", "0.05",
                                       "10.55.0.4"], stdout=subprocess.PIPE, text=True)
            procs.append(pinger)
            (work / "random.cfg").write_text(RANDOM_FRAMES)
            procs.append(subprocess.Popen(["ip", "netns", "exec", PREFIX + "noise", "trafgen", "-i",
                                           str(work / "random.cfg"), "-o", "eth0", "-P", "1",
                                           "-t", "50us", "--no-sock-mem", "--notouch-irq", "-q"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            samples, answers, churn_pings = [], [], [0, 0]
            start = time.monotonic()
            next_sample = start
            n = 0
            while time.monotonic() - start < seconds:
                now = time.monotonic()
                if now >= next_sample:
                    rss, fds = sample(pid)
                    samples.append({"t": round(now - start), "rss_kib": rss, "fds": fds})
                    print(f"[{now - start:5.0f}s] rss {rss} KiB, fds {fds}, "
                          f"changes {len(answers)}", flush=True)
                    next_sample += 10
                n += 1
                port = f"c{n % 4}"
                answers.append(ctl("add-port", BR, port, "--netns", f"{PREFIX}c{n % 4}",
                                   "--ip", f"10.55.0.{100 + n % 4}/24"))
                r = ns(f"{PREFIX}c{n % 4}", "ping", "-c", "1", "-W", "2", "10.55.0.1", check=False)
                churn_pings[0 if r.returncode == 0 else 1] += 1
                answers.append(ctl("del-port", BR, port))
                time.sleep(args.churn_every)
            shown = json.loads(sh(str(BIN / "vswitchctl"), "--sock", str(sock), "show",
                                  "--json").stdout)
            stuck = [p["name"] for b in shown["bridges"] for p in b["ports"] if p["state"] != "up"]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
            if pid and Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGTERM)
                while Path(f"/proc/{pid}").exists():
                    time.sleep(0.05)
    out = pinger.stdout.read() if pinger.stdout else ""
    sent = out.count("icmp_seq=")
    warm = [s for s in samples if s["t"] >= 60] or samples
    result = {
        "minutes": args.minutes, "changes": len(answers),
        "answer_s_median": round(statistics.median(answers), 3),
        "answer_s_max": round(max(answers), 3),
        "churn_pings_ok": churn_pings[0], "churn_pings_failed": churn_pings[1],
        "steady_pings_answered": sent, "stuck_ports": stuck,
        "rss_kib_after_warmup": [warm[0]["rss_kib"], warm[-1]["rss_kib"]],
        "fds_after_warmup": [warm[0]["fds"], warm[-1]["fds"]],
        "samples": samples, "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    summary = (f"{args.minutes:g} min, {len(answers)} configuration changes (all answered; "
               f"median {result['answer_s_median']} s, slowest {result['answer_s_max']} s), "
               f"pings through churned ports {churn_pings[0]} ok / {churn_pings[1]} failed, "
               f"RSS after warm-up {warm[0]['rss_kib']} -> {warm[-1]['rss_kib']} KiB, "
               f"fds {warm[0]['fds']} -> {warm[-1]['fds']}, stuck ports: {stuck or 'none'}")
    (RESULTS / "soak.md").write_text(summary + "\n")
    print(summary)
    return 0 if not stuck and warm[-1]["fds"] == warm[0]["fds"] else 1


if __name__ == "__main__":
    sys.exit(main())
