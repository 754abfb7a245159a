"""Run the benchmark: every selected switch, every selected test, N rounds.

    python -m bench.suite [--runs 3] [--switches a,b,...] [--tests ...] [--quick]

Within a round the switches take turns (and the order rotates from round to
round), so that a slow spell of this shared machine hits all of them rather
than one; each figure is then the median of the rounds with its min–max.
Each (round, switch) gets fresh namespaces, a freshly started switch, and
everything is removed afterwards, also on errors and Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import cleanup, machine, report, topology
from .measure import Result, frames, iperf, sockperf, trafgen
from .peers import SWITCHES, Switch
from .proc import BenchError, alive, reap_strays
from .topology import Names, Topology

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SWITCHES = ["vswitch", "linux-bridge", "ovs", "ovs-tso", "vde", "bareloop"]
TESTS = ["tcp1", "tcp4", "udp64", "l2_64", "rr", "fdb"]  # run in this order; fdb last (it floods the FDB)
ALIASES = {"tcp": ["tcp1", "tcp4"], "udp": ["udp64"], "l2": ["l2_64"], "l2_64": ["l2_64"]}
TOOLS_FOR_TEST = {"tcp1": "iperf3", "tcp4": "iperf3", "udp64": "trafgen", "l2_64": "trafgen",
                  "fdb": "trafgen", "rr": "sockperf"}
TOOLS_FOR_SWITCH = {"ovs": "ovs-vswitchd", "ovs-tso": "ovs-vswitchd", "vde": "vde_switch",
                    "vde-plug": "vde_plug2tap", "bareloop": "gcc"}


@dataclass(frozen=True)
class Durations:
    tcp: float
    pps: float
    rr: float
    trafgen_procs: int = 1


@dataclass
class Ctx:
    topo: Topology
    switch: Switch
    workdir: Path
    dur: Durations


def _tcp(streams: int) -> Callable[[Ctx], Result]:
    def run(c: Ctx) -> Result:
        return iperf.run_tcp(ns_a=c.topo.ns_a, ns_b=c.topo.ns_b, pids=c.switch.pids(),
                             has_process=c.switch.has_process, workdir=c.workdir,
                             streams=streams, duration=c.dur.tcp)
    return run


def _pps(tag: str, build: Callable[[str, str], str]) -> Callable[[Ctx], Result]:
    def run(c: Ctx) -> Result:
        config = build(topology.mac(c.topo.ns_a), topology.mac(c.topo.ns_b))
        return trafgen.run_pps(ns_a=c.topo.ns_a, ns_b=c.topo.ns_b, config=config,
                               pids=c.switch.pids(), has_process=c.switch.has_process,
                               workdir=c.workdir, tag=tag, duration=c.dur.pps,
                               procs=c.dur.trafgen_procs)
    return run


def _rr(c: Ctx) -> Result:
    return sockperf.run_rr(ns_a=c.topo.ns_a, ns_b=c.topo.ns_b, workdir=c.workdir, duration=c.dur.rr)


RUNNERS: dict[str, Callable[[Ctx], Result]] = {
    "tcp1": _tcp(1),
    "tcp4": _tcp(4),
    "udp64": _pps("udp64", lambda a, b: frames.trafgen_bytes(
        frames.udp64(a, b, topology.IP_A, topology.IP_B))),
    "l2_64": _pps("l2_64", lambda a, b: frames.trafgen_bytes(frames.l2_64(a, b))),
    "rr": _rr,
    "fdb": _pps("fdb", lambda a, b: frames.trafgen_fdb(b)),
}


def headline(test: str, m: dict[str, Any]) -> str:
    """The one figure shown on the progress line."""
    if test.startswith("tcp"):
        return f"{m['gbps']:.2f} Gbit/s"
    if test == "rr":
        return f"p50 {m['p50_us']:.1f} us, p99 {m['p99_us']:.1f} us"
    cpu = f", switch {m['proc_us_per_frame']:.3f} us/frame" if m.get("proc_us_per_frame") else ""
    return f"{m['delivered_kpps']:.0f}/{m['offered_kpps']:.0f} kpps delivered/offered{cpu}"


def run_switch(name: str, rnd: int, runs: int, tests: list[str], names: Names, workdir: Path,
               dur: Durations, meta: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """One switch, one round: set up, run the tests, tear down."""
    records: list[dict[str, Any]] = []
    tag = f"[round {rnd + 1}/{runs}] {name}:"
    topo = Topology(names)
    sw = SWITCHES[name](names, workdir)

    def record(test: str, result: Result | None, error: str | None) -> None:
        records.append({"round": rnd + 1, "switch": name, "test": test,
                        "time": time.strftime("%H:%M:%S"), "error": error,
                        # other load on this shared machine shows here
                        "loadavg": Path("/proc/loadavg").read_text().split()[0],
                        "metrics": (result or {}).get("metrics", {}), "raw": (result or {}).get("raw", {})})

    try:
        print(f"{tag} starting ...", end="", flush=True)
        t0 = time.monotonic()
        try:
            topo.create()
            sw.start(topo.ns_a, topo.ns_b)
            topo.address()
            topo.check()
            if name not in meta:
                meta[name] = {"version": sw.version(), "describe": sw.describe()}
        except Exception as e:  # a switch that cannot start fails its round, not the suite
            print(f" FAILED: {e}", flush=True)
            for test in tests:
                record(test, None, f"start: {e}")
            return records
        print(f" up in {time.monotonic() - t0:.1f}s", flush=True)
        for i, test in enumerate(tests):
            print(f"{tag} {test} ...", end="", flush=True)
            try:
                topo.warm()
                time.sleep(0.5)  # let the pokes' ARP and ICMP pass before measuring
                result = RUNNERS[test](Ctx(topo, sw, workdir, dur))
                dead = [p for p in sw.pids() if not alive(p)]
                if dead:
                    raise BenchError(f"switch process {dead} died during {test}")
                record(test, result, None)
                print(f" {headline(test, result['metrics'])}", flush=True)
            except Exception as e:  # one failed test (tool error, bad output) is one error entry
                print(f" FAILED: {e}", flush=True)
                record(test, None, f"{type(e).__name__}: {e}" if not isinstance(e, BenchError) else str(e))
                if any(not alive(p) for p in sw.pids()):
                    for rest in tests[i + 1:]:
                        record(rest, None, "switch died earlier in this round")
                    break
    finally:
        try:
            sw.stop()
        except Exception as e:  # the namespaces must go all the same
            print(f"{tag} teardown failed: {e}", flush=True)
        finally:
            topo.close()
            reap_strays()
    return records


def parse_list(text: str, known: list[str], aliases: dict[str, list[str]] | None = None) -> list[str]:
    out: list[str] = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        expanded = (aliases or {}).get(item, [item])
        for x in expanded:
            if x not in known:
                raise SystemExit(f"unknown: {x} (choose from {', '.join(known)})")
            if x not in out:
                out.append(x)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=None, help="rounds (default 3; 1 with --quick)")
    ap.add_argument("--switches", default=",".join(DEFAULT_SWITCHES),
                    help=f"comma-separated, from {', '.join(SWITCHES)}")
    ap.add_argument("--tests", default="tcp,udp64,l2_64,rr,fdb",
                    help="comma-separated, from tcp (= tcp1,tcp4), " + ", ".join(TESTS))
    ap.add_argument("--quick", action="store_true", help="short durations: a smoke run")
    ap.add_argument("--tcp-time", type=float, help="seconds per iperf3 run (10; quick 3)")
    ap.add_argument("--pps-time", type=float, help="seconds per frame-rate window (5; quick 2)")
    ap.add_argument("--rr-time", type=float, help="seconds of sockperf ping-pong (5; quick 2)")
    ap.add_argument("--trafgen-procs", type=int, default=1,
                    help="trafgen processes (1; 2 = one per core, lets the kernel bridge use both)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output directory")
    ap.add_argument("--keep-workdir", action="store_true", help="keep logs and configs in the temp dir")
    args = ap.parse_args(argv)

    switches = parse_list(args.switches, list(SWITCHES))
    chosen = parse_list(args.tests, TESTS, ALIASES)
    tests = [t for t in TESTS if t in chosen]
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    dur = Durations(tcp=args.tcp_time or (3 if args.quick else 10),
                    pps=args.pps_time or (2 if args.quick else 5),
                    rr=args.rr_time or (2 if args.quick else 5), trafgen_procs=args.trafgen_procs)
    if os.geteuid() != 0:
        raise SystemExit("needs root (namespaces, TAP devices)")
    missing = sorted({TOOLS_FOR_TEST[t] for t in tests} | {TOOLS_FOR_SWITCH[s] for s in switches
                                                           if s in TOOLS_FOR_SWITCH})
    missing = [t for t in missing if not shutil.which(t)]
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)} (bench/run.sh installs them)")

    cleanup.install()
    names = Names(topology.allocate_prefix())
    workdir = Path(tempfile.mkdtemp(prefix=names.prefix))
    info = machine.info(REPO)
    print(f"vswitch bench: {runs} round(s) of {', '.join(switches)}; tests {', '.join(tests)}; "
          f"names {names.prefix}*; logs in {workdir}", flush=True)
    records: list[dict[str, Any]] = []
    meta: dict[str, dict[str, str]] = {}
    orders: list[list[str]] = []
    started = time.monotonic()
    interrupted = False
    try:
        for rnd in range(runs):
            k = rnd % len(switches)
            order = switches[k:] + switches[:k]  # rotate: nobody always goes first
            orders.append(order)
            for name in order:
                sw_dir = workdir / f"r{rnd + 1}-{name}"
                sw_dir.mkdir()
                records += run_switch(name, rnd, runs, tests, names, sw_dir, dur, meta)
                time.sleep(1)  # let RCU callbacks and deferred device frees settle
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM/SIGHUP
        print("\ninterrupted: cleaning up; partial results follow", file=sys.stderr)
        interrupted = True
    finally:
        cleanup.run_all()

    from . import stats
    errors = [{k: r[k] for k in ("round", "switch", "test", "error")} for r in records if r["error"]]
    result: dict[str, Any] = {
        "machine": info,
        "config": {"runs": runs, "switches": switches, "tests": tests, "quick": args.quick,
                   "interrupted": interrupted,
                   "durations": vars(dur), "orders": orders, "name_prefix": names.prefix,
                   "elapsed_s": round(time.monotonic() - started, 1)},
        "switches": meta,
        "runs": records,
        "summary": stats.aggregate(records),
        "errors": errors,
    }
    paths = report.write(result, args.out)
    print("\n" + paths[1].read_text())
    print("wrote " + ", ".join(str(p) for p in paths))
    if errors or args.keep_workdir:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        return 130
    return 1 if errors and len(errors) == len(records) else 0


if __name__ == "__main__":
    sys.exit(main())
