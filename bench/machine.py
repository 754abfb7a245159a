"""What the numbers were measured on: kernel, CPU, tool versions, load."""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

TOOLS = {
    "iperf3": ["iperf3", "--version"],
    "sockperf": ["sockperf", "--version"],
    "trafgen": ["trafgen", "--version"],
    "ovs-vswitchd": ["ovs-vswitchd", "--version"],
    "vde_switch": ["vde_switch", "--version"],
    "gcc": ["gcc", "--version"],
}


def _first_line(argv: list[str]) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    for line in (res.stdout + res.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "?"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def info(repo: Path) -> dict[str, object]:
    mem_kb = next((int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                   if l.startswith("MemTotal:")), 0)
    rev = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kb / 2**20, 1),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "repo_revision": rev,
        "tools": {name: _first_line(argv) for name, argv in TOOLS.items()},
    }
