"""latest.json, latest.md and latest.png from the runs of one suite."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import stats
from .stats import Table

NA = "n/a"


@dataclass(frozen=True)
class Col:
    """One figure of the report: a metric of a test."""
    header: str
    test: str
    metric: str
    digits: int = 1
    better: str = "higher"   # or "lower"


# The headline figures, also the columns of the ratio tables.
HEADLINE = [
    Col("TCP 1 stream Gbit/s", "tcp1", "gbps", 2),
    Col("TCP 4 streams Gbit/s", "tcp4", "gbps", 2),
    Col("UDP64 delivered kpps", "udp64", "delivered_kpps", 0),
    Col("UDP64 offered kpps", "udp64", "offered_kpps", 0),
    Col("UDP64 loss %", "udp64", "loss_pct", 1, "lower"),
    Col("L2-64 delivered kpps", "l2_64", "delivered_kpps", 0),
    Col("RR p50 us", "rr", "p50_us", 1, "lower"),
    Col("RR p99 us", "rr", "p99_us", 1, "lower"),
    Col("FDB-64k delivered kpps", "fdb", "delivered_kpps", 0),
]
RATIO_COLS = [c for c in HEADLINE if c.metric not in ("offered_kpps", "loss_pct")] + [
    Col("L2-64 switch CPU us/frame", "l2_64", "proc_us_per_frame", 3, "lower"),
    Col("L2-64 machine CPU us/frame", "l2_64", "machine_us_per_frame", 3, "lower"),
    Col("TCP 4 machine CPU s/GB", "tcp4", "machine_s_per_gb", 3, "lower"),
]
# (header, test, unit) of the CPU table: user/sys split of the switch process, machine-wide total.
CPU_TESTS = [("TCP 1 stream", "tcp1", "s/GB"), ("TCP 4 streams", "tcp4", "s/GB"),
             ("UDP64", "udp64", "us/frame"), ("L2-64", "l2_64", "us/frame"),
             ("FDB-64k", "fdb", "us/frame")]


def _fmt(v: float | None, digits: int) -> str:
    return NA if v is None else f"{v:,.{digits}f}"


def cell(table: Table, sw: str, test: str, metric: str, digits: int) -> str:
    """Median with its min–max spread over the rounds."""
    s = table.get(sw, {}).get(test, {}).get(metric)
    if s is None:
        return NA
    if s["n"] == 1:
        return _fmt(s["median"], digits)
    return f"{_fmt(s['median'], digits)} ({_fmt(s['min'], digits)}–{_fmt(s['max'], digits)})"


def _med(table: Table, sw: str, test: str, metric: str) -> float | None:
    return stats.median(table, sw, test, metric)


def _cpu_split(table: Table, sw: str, test: str, unit: str) -> str:
    kind = "s_per_gb" if unit == "s/GB" else "us_per_frame"
    digits = 3
    u, s = _med(table, sw, test, f"proc_user_{kind}"), _med(table, sw, test, f"proc_sys_{kind}")
    m = _med(table, sw, test, f"machine_{kind}")
    proc = NA if u is None or s is None else f"{u:.{digits}f}/{s:.{digits}f}"
    return f"{proc} · {_fmt(m, digits)}"


def markdown(result: dict[str, Any]) -> str:
    table: Table = result["summary"]
    switches: list[str] = [s for s in result["config"]["switches"] if s in table] + \
        [s for s in result["config"]["switches"] if s not in table]
    mach = result["machine"]
    cfg = result["config"]
    out: list[str] = []
    out.append("# vswitch benchmark\n")
    out.append(f"{mach['date']} · kernel {mach['kernel']} · {mach['cpu_model']} × {mach['cpus']} · "
               f"{cfg['runs']} round(s), switches alternated in each round · durations: "
               f"TCP {cfg['durations']['tcp']:g} s, frame tests {cfg['durations']['pps']:g} s, "
               f"RR {cfg['durations']['rr']:g} s{' (--quick)' if cfg['quick'] else ''} · "
               f"trafgen processes: {cfg['durations'].get('trafgen_procs', 1)}\n")
    if cfg.get("interrupted"):
        out.append("**Interrupted: partial results.**\n")
    out.append("Each cell: median of the rounds (min–max). 64-byte frames = 60 bytes + FCS. "
               "See bench/README.md for what each figure means.\n")

    out.append("## Results\n")
    out.append("| switch | " + " | ".join(h for h, _ in RESULT_COLS) + " |")
    out.append("|---" * (len(RESULT_COLS) + 1) + "|")
    for sw in switches:
        out.append(f"| {sw} | " + " | ".join(f(table, sw) for _, f in RESULT_COLS) + " |")

    out.append("\n## CPU\n")
    out.append("Switch process CPU user/sys · machine-wide CPU (all cores, every process and "
               "softirq, the traffic generator included). Process CPU is n/a for the Linux "
               "bridge: it forwards in the kernel, in softirq context.\n")
    out.append("| switch | " + " | ".join(f"{h} {u}" for h, _, u in CPU_TESTS) +
               " | switch CPU % during L2-64 |")
    out.append("|---" * (len(CPU_TESTS) + 2) + "|")
    for sw in switches:
        out.append(f"| {sw} | " + " | ".join(_cpu_split(table, sw, t, u) for _, t, u in CPU_TESTS) +
                   f" | {cell(table, sw, 'l2_64', 'proc_cpu_pct', 0)} |")

    for base in stats.BASELINES:
        if base not in table:
            continue
        out.append(f"\n## Relative to {base}\n")
        out.append(f"Median, and in parentheses median ÷ {base}'s median "
                   "(↑ higher is better, ↓ lower is better).\n")
        out.append("| switch | " + " | ".join(f"{c.header} {'↑' if c.better == 'higher' else '↓'}"
                                            for c in RATIO_COLS) + " |")
        out.append("|---" * (len(RATIO_COLS) + 1) + "|")
        for sw in switches:
            cells = []
            for c in RATIO_COLS:
                v = _med(table, sw, c.test, c.metric)
                r = stats.ratio(table, sw, base, c.test, c.metric)
                cells.append(NA if v is None else f"{_fmt(v, c.digits)} ({NA if r is None else f'{r:.2f}×'})")
            out.append(f"| {sw} | " + " | ".join(cells) + " |")

    out.append("\n## Setup\n")
    for sw in switches:
        meta = result["switches"].get(sw, {})
        out.append(f"- **{sw}**: {meta.get('describe', '')} — {meta.get('version', '')}")
    out.append("\nTools: " + ", ".join(f"{k}: {v}" for k, v in mach["tools"].items()))
    out.append(f"\nRevision: {mach['repo_revision']} · load average at start: "
               f"{' '.join(mach['loadavg_at_start'])}")
    if result["errors"]:
        out.append("\n## Errors\n")
        for e in result["errors"]:
            out.append(f"- round {e['round']} {e['switch']} {e['test']}: {e['error'].splitlines()[0]}")
    return "\n".join(out) + "\n"


def _split_only(table: Table, sw: str, test: str) -> str:
    u = _med(table, sw, test, "proc_user_us_per_frame")
    s = _med(table, sw, test, "proc_sys_us_per_frame")
    return NA if u is None or s is None else f"{u:.3f}/{s:.3f}"


def _median_cell(col: Col) -> Callable[[Table, str], str]:
    return lambda table, sw: cell(table, sw, col.test, col.metric, col.digits)


def _split_cell(test: str) -> Callable[[Table, str], str]:
    return lambda table, sw: _split_only(table, sw, test)


_H = {c.test + "." + c.metric: c for c in HEADLINE}
# The main table: headline figures with their spread, CPU user/sys beside the frame rates.
RESULT_COLS: list[tuple[str, Callable[[Table, str], str]]] = [
    (_H["tcp1.gbps"].header, _median_cell(_H["tcp1.gbps"])),
    (_H["tcp4.gbps"].header, _median_cell(_H["tcp4.gbps"])),
    (_H["udp64.delivered_kpps"].header, _median_cell(_H["udp64.delivered_kpps"])),
    (_H["udp64.offered_kpps"].header, _median_cell(_H["udp64.offered_kpps"])),
    (_H["udp64.loss_pct"].header, _median_cell(_H["udp64.loss_pct"])),
    ("UDP64 switch CPU us/frame user/sys", _split_cell("udp64")),
    (_H["l2_64.delivered_kpps"].header, _median_cell(_H["l2_64.delivered_kpps"])),
    ("L2-64 switch CPU us/frame user/sys", _split_cell("l2_64")),
    (_H["rr.p50_us"].header, _median_cell(_H["rr.p50_us"])),
    (_H["rr.p99_us"].header, _median_cell(_H["rr.p99_us"])),
    (_H["fdb.delivered_kpps"].header, _median_cell(_H["fdb.delivered_kpps"])),
    ("FDB-64k switch CPU us/frame user/sys", _split_cell("fdb")),
]


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")  # no display here
    import matplotlib.pyplot as plt

    table: Table = result["summary"]
    switches = [s for s in result["config"]["switches"] if s in table]
    panels = [
        ("TCP throughput, Gbit/s", [("1 stream", "tcp1", "gbps"), ("4 streams", "tcp4", "gbps")]),
        ("UDP 64-byte frames, kpps", [("delivered", "udp64", "delivered_kpps"),
                                      ("offered", "udp64", "offered_kpps")]),
        ("L2 64-byte frames, kpps", [("delivered", "l2_64", "delivered_kpps"),
                                     ("offered", "l2_64", "offered_kpps")]),
        ("65536 source MACs, kpps", [("delivered", "fdb", "delivered_kpps")]),
        ("L2-64 CPU, us/frame: switch user, sys; machine", [("user", "l2_64", "proc_user_us_per_frame"),
                                        ("sys", "l2_64", "proc_sys_us_per_frame"),
                                        ("machine", "l2_64", "machine_us_per_frame")]),
        ("UDP round trip, us (lower is better)", [("p50", "rr", "p50_us"), ("p99", "rr", "p99_us")]),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    for ax, (title, series) in zip(axes.flat, panels):
        width = 0.8 / len(series)
        for i, (label, test, metric) in enumerate(series):
            meds, lo, hi = [], [], []
            for sw in switches:
                s = table.get(sw, {}).get(test, {}).get(metric)
                m = s["median"] if s else 0.0
                meds.append(m)
                lo.append(m - s["min"] if s else 0.0)
                hi.append(s["max"] - m if s else 0.0)
            xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(switches))]
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3, label=label)
        ax.set_title(title, fontsize=11)
        ax.set_xticks(range(len(switches)))
        ax.set_xticklabels(switches, rotation=30, ha="right", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    mach = result["machine"]
    fig.suptitle(f"vswitch benchmark — median of {result['config']['runs']} round(s), bars = min/max · "
                 f"{mach['kernel']}, {mach['cpu_model']} × {mach['cpus']}, {mach['date'][:10]}", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict[str, Any], outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    result["ratios"] = stats.ratios(result["summary"])
    paths = [outdir / "latest.json", outdir / "latest.md", outdir / "latest.png"]
    text = json.dumps(result, indent=1, sort_keys=False)
    paths[0].write_text(text + "\n")
    paths[1].write_text(markdown(result))
    chart(result, paths[2])
    # Every run's raw record also kept apart (gitignored), latest.* are overwritten.
    raw = outdir / "raw"
    raw.mkdir(exist_ok=True)
    (raw / f"{result['machine']['date'].replace(':', '')}.json").write_text(text + "\n")
    return paths
