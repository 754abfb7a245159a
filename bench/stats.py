"""Medians, spreads and ratios over the raw runs (pure functions)."""
from __future__ import annotations

import statistics
from typing import Any, Iterable

# A summary of one metric of one test of one switch over all rounds.
Summary = dict[str, Any]
# switch -> test -> metric -> Summary
Table = dict[str, dict[str, dict[str, Summary]]]

BASELINES = ("ovs-tso", "linux-bridge")


def summarize(values: Iterable[float | None]) -> Summary | None:
    """Median with min/max spread; None when no run produced the metric."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    med = statistics.median(vals)
    return {"median": med, "min": min(vals), "max": max(vals), "n": len(vals),
            "spread_pct": 100 * (max(vals) - min(vals)) / med if med else None}


def aggregate(records: list[dict[str, Any]]) -> Table:
    """Group the successful runs by switch, test and metric."""
    grouped: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    for rec in records:
        if rec.get("error"):
            continue
        per_metric = grouped.setdefault(rec["switch"], {}).setdefault(rec["test"], {})
        for metric, value in rec["metrics"].items():
            per_metric.setdefault(metric, []).append(value)
    table: Table = {}
    for sw, tests in grouped.items():
        for test, metrics in tests.items():
            for metric, values in metrics.items():
                s = summarize(values)
                if s is not None:
                    table.setdefault(sw, {}).setdefault(test, {})[metric] = s
    return table


def median(table: Table, switch: str, test: str, metric: str) -> float | None:
    s = table.get(switch, {}).get(test, {}).get(metric)
    return None if s is None else float(s["median"])


def ratio(table: Table, switch: str, baseline: str, test: str, metric: str) -> float | None:
    """Median of ``switch`` over median of ``baseline`` (None if either is missing)."""
    a, b = median(table, switch, test, metric), median(table, baseline, test, metric)
    if a is None or b is None or b == 0:
        return None
    return a / b


def ratios(table: Table, baselines: Iterable[str] = BASELINES) -> dict[str, dict[str, dict[str, float | None]]]:
    """baseline -> switch -> "test.metric" -> ratio of medians, for every metric."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for base in baselines:
        if base not in table:
            continue
        for sw, tests in table.items():
            for test, metrics in tests.items():
                for metric in metrics:
                    out.setdefault(base, {}).setdefault(sw, {})[f"{test}.{metric}"] = \
                        ratio(table, sw, base, test, metric)
    return out
