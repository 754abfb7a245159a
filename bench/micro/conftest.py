"""Microbenchmarks of the C engine through cffi (pytest-benchmark).

    .venv/bin/python -m pytest bench/micro --benchmark-only

Each benchmark calls one C entry point that loops over many items, so the
cffi call overhead is spread thin; results are reported as nanoseconds per
item (frame, lookup, learn) at the end of the run and written to
bench/results/micro.json.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

RESULTS: dict[str, dict] = {}


@pytest.fixture
def per_item():
    """per_item(name, benchmark, fn, items): run fn under benchmark and
    record ns per item from the median round."""
    def run(name: str, benchmark, fn, items: int, rounds: int = 20):
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=2)
        stats = benchmark.stats.stats
        ns = stats.median * 1e9 / items
        RESULTS[name] = {"ns_per_item": round(ns, 2), "items_per_call": items,
                         "million_per_s": round(1e3 / ns, 2),
                         "spread_ns": [round(stats.min * 1e9 / items, 2),
                                       round(stats.max * 1e9 / items, 2)]}
        benchmark.extra_info.update(RESULTS[name])
    return run


def pytest_sessionfinish(session, exitstatus):
    if not RESULTS:
        return
    out = Path(__file__).resolve().parent.parent / "results" / "micro.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "results": RESULTS},
                              indent=2) + "\n")
    width = max(len(k) for k in RESULTS)
    print("\n\nns per item (median round; min..max)")
    for k, v in RESULTS.items():
        print(f"  {k:<{width}}  {v['ns_per_item']:8.2f} ns  ({v['million_per_s']:7.2f} M/s)  "
              f"[{v['spread_ns'][0]}..{v['spread_ns'][1]}]")
