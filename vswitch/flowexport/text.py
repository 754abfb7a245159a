"""`vswitchctl flow/stats BR` for people (`--json` gives the data itself)."""
from __future__ import annotations

from typing import Any


def flow_stats(result: dict[str, Any], params: dict[str, Any]) -> str:
    out = [f"Flow export of bridge \"{result['bridge']}\":"]
    if not result.get("settings"):
        return out[0] + " off"
    for proto, settings in result["settings"].items():
        opts = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "targets")
        out.append(f"  {proto} to {', '.join(settings['targets'])} ({opts})")
        live = result.get(proto, {})
        cache = live.get("cache")
        if cache:
            out.append(f"    cache: {cache['flows']}/{cache['max_flows']} flows, "
                       f"{cache['packets']} packets accounted, {cache['created']} flows created")
            out.append(f"    records: {cache['expired_idle']} idle, {cache['expired_active']} "
                       f"active timeout, {cache['flushed']} flushed")
            odd = {k: cache[k] for k in ("no_room", "unsampled", "skipped", "truncated",
                                         "fragments", "bad_length") if cache[k]}
            if odd:
                out.append("    " + ", ".join(f"{k}={v}" for k, v in odd.items()))
        sampling = live.get("sampling")
        if sampling:
            out.append(f"    samples: {sampling['sampled']} of {sampling['seen']} frames, "
                       f"{sampling['dropped']} lost (upcall queue full)")
        for target, st in live.get("collectors", {}).items():
            out.append(f"    {target}: {st['datagrams']} datagrams, {st['bytes']} bytes, "
                       f"refused={st['refused']}, dropped={st['dropped']}, "
                       f"errors={st['errors']}")
    return "\n".join(out)
