"""Medians, ratios and the Markdown table, on made-up runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import report, stats
from bench.measure import cpu, sockperf


def runs() -> list[dict[str, Any]]:
    out = []
    for rnd, (a, b) in enumerate([(10.0, 20.0), (12.0, 18.0), (11.0, 22.0)], 1):
        out.append({"round": rnd, "switch": "vswitch", "test": "tcp1", "error": None,
                    "metrics": {"gbps": a, "proc_user_s_per_gb": 0.1}})
        out.append({"round": rnd, "switch": "linux-bridge", "test": "tcp1", "error": None,
                    "metrics": {"gbps": b, "proc_user_s_per_gb": None}})
    out.append({"round": 1, "switch": "ovs-tso", "test": "tcp1", "error": "start: boom", "metrics": {}})
    return out


def test_aggregate_median_and_spread() -> None:
    t = stats.aggregate(runs())
    s = t["vswitch"]["tcp1"]["gbps"]
    assert (s["median"], s["min"], s["max"], s["n"]) == (11.0, 10.0, 12.0, 3)
    assert "proc_user_s_per_gb" not in t["linux-bridge"]["tcp1"]  # n/a everywhere: no summary
    assert "ovs-tso" not in t  # failed runs are not figures


def test_ratio() -> None:
    t = stats.aggregate(runs())
    assert stats.ratio(t, "vswitch", "linux-bridge", "tcp1", "gbps") == 11.0 / 20.0
    assert stats.ratio(t, "vswitch", "ovs-tso", "tcp1", "gbps") is None
    assert stats.ratios(t)["linux-bridge"]["vswitch"]["tcp1.gbps"] == 11.0 / 20.0


def test_markdown_and_chart(tmp_path: Path) -> None:
    recs = runs()
    result = {
        "machine": {"date": "2025-01-01T00:00:00+00:00", "kernel": "6.x", "cpu_model": "cpu", "cpus": 2,
                    "tools": {"iperf3": "3"}, "repo_revision": "abc", "loadavg_at_start": ["0", "0", "0"]},
        "config": {"runs": 3, "switches": ["vswitch", "linux-bridge", "ovs-tso"], "quick": False,
                   "durations": {"tcp": 10, "pps": 5, "rr": 5, "trafgen_procs": 1}},
        "switches": {"vswitch": {"describe": "ours", "version": "1"}},
        "runs": recs,
        "summary": stats.aggregate(recs),
        "errors": [{"round": 1, "switch": "ovs-tso", "test": "tcp1", "error": "start: boom"}],
    }
    paths = report.write(result, tmp_path)
    md = paths[1].read_text()
    assert "| vswitch | 11.00 (10.00–12.00) |" in md
    assert "11.00 (0.55×)" in md  # vs linux-bridge
    assert "round 1 ovs-tso tcp1: start: boom" in md
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sockperf_parse() -> None:
    text = ("sockperf: ====> avg-rtt=27.449 (std-dev=4.505)\n"
            "sockperf: ---> percentile 99.000 =   41.200\n"
            "sockperf: ---> percentile 50.000 =   26.329\n")
    assert sockperf.parse(text) == {"p99": 41.2, "p50": 26.329, "avg": 27.449}


def test_cpu_sample_of_self() -> None:
    import os
    a = cpu.sample([os.getpid()])
    sum(i * i for i in range(300000))
    b = cpu.sample([os.getpid()])
    u = cpu.usage(a, b)
    assert u.wall > 0 and u.proc_total >= 0 and u.cpu_busy >= 0
