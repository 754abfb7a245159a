"""Round-trip latency: sockperf UDP ping-pong, server in B, client in A.

One message in flight at a time (ping-pong mode sends the next one when the
reply arrives); ``--full-rtt`` reports the whole round trip, which crosses
the switch twice, instead of half of it.
"""
from __future__ import annotations

import re
from pathlib import Path

from .. import topology
from ..proc import BenchError, Spawned, run
from . import Result

PORT = 11111


def parse(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for pct, value in re.findall(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)", text):
        out[f"p{float(pct):g}"] = float(value)
    m = re.search(r"avg-rtt=([\d.]+)", text) or re.search(r"avg-lat=([\d.]+)", text)
    if m:
        out["avg"] = float(m.group(1))
    return out


def run_rr(*, ns_a: str, ns_b: str, workdir: Path, duration: float) -> Result:
    server = Spawned(["sockperf", "server", "-i", topology.IP_B, "-p", str(PORT)],
                     workdir / "sockperf-server.log", ns=ns_b)
    try:
        topology.wait_listen(ns_b, "udp", PORT)
        res = run(["sockperf", "ping-pong", "-i", topology.IP_B, "-p", str(PORT),
                   "-t", f"{duration:g}", "--full-rtt"], ns=ns_a, check=False, timeout=duration + 60)
    finally:
        server.stop()
    stats = parse(res.stdout + res.stderr)
    if "p50" not in stats or "p99" not in stats:
        raise BenchError(f"sockperf gave no percentiles ({res.returncode}): "
                         f"{(res.stderr or res.stdout).strip()[-400:]}")
    return {
        "metrics": {"p50_us": stats["p50"], "p99_us": stats["p99"], "avg_us": stats.get("avg")},
        "raw": {"percentiles_us": stats},
    }
