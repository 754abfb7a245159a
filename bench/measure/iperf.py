"""TCP bulk throughput: iperf3 server in B, client in A.

Throughput is what the server received.  Switch CPU is reported per GB
received, so that a slower switch is not made to look frugal by moving less.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import topology
from ..proc import BenchError, Spawned, run
from . import Result, cpu

PORT = 5201


def run_tcp(*, ns_a: str, ns_b: str, pids: list[int], has_process: bool, workdir: Path,
            streams: int, duration: float) -> Result:
    # -1: serve one test and exit, so nothing lingers in B.
    server = Spawned(["iperf3", "-s", "-1", "-B", topology.IP_B, "-p", str(PORT)],
                     workdir / f"iperf3-server-{streams}.log", ns=ns_b)
    try:
        topology.wait_listen(ns_b, "tcp", PORT)
        c0 = cpu.sample(pids)
        res = run(["iperf3", "-c", topology.IP_B, "-p", str(PORT), "-t", f"{duration:g}",
                   "-P", str(streams), "-J"], ns=ns_a, check=False, timeout=duration + 60)
        c1 = cpu.sample(pids)
    finally:
        server.stop()
    try:
        report = json.loads(res.stdout)
    except json.JSONDecodeError as e:
        raise BenchError(f"iperf3 gave no JSON ({res.returncode}): {res.stderr.strip()}") from e
    if "error" in report:
        raise BenchError(f"iperf3: {report['error']}")
    received = report["end"]["sum_received"]
    sent = report["end"]["sum_sent"]
    gb = received["bytes"] / 1e9
    use = cpu.usage(c0, c1)

    def per_gb(seconds: float) -> float | None:
        return seconds / gb if gb > 0 else None

    return {
        "metrics": {
            "gbps": received["bits_per_second"] / 1e9,
            "retransmits": sent.get("retransmits"),
            "proc_user_s_per_gb": per_gb(use.proc_user) if has_process else None,
            "proc_sys_s_per_gb": per_gb(use.proc_sys) if has_process else None,
            "proc_cpu_pct": 100 * use.proc_total / use.wall if has_process else None,
            "machine_s_per_gb": per_gb(use.cpu_busy),
        },
        "raw": {"bytes": received["bytes"], "seconds": received["seconds"], "cpu": use.to_json()},
    }
