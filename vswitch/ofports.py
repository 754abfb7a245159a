"""Port numbers: the small, stable number a port is known by outside the
switch -- the ifIndex / interface index of NetFlow, IPFIX and sFlow records.

Like Open vSwitch's ofport: assigned by the switch when a port is added
(the lowest number from 1 not used on that bridge), kept for as long as the
port exists, across restarts and reloads (it is runtime state, kept in
`<db>.state.json` beside the active bond members, not configuration), and
freed when the port is deleted.  `vswitchctl show` and `port/stats` list
it, so nfdump's interface numbers can be mapped back to ports.
"""
from __future__ import annotations

from typing import Any

MAX_OFPORT = 65279   # OFPP_MAX; 65533 and 65535 mean "dropped" and "flooded" in records


def checked(raw: Any) -> dict[str, dict[str, int]]:
    """The ofports table of a state file, without anything malformed."""
    if not isinstance(raw, dict):
        return {}
    return {b: {p: n for p, n in t.items() if isinstance(p, str) and isinstance(n, int)
                and not isinstance(n, bool) and 1 <= n <= MAX_OFPORT}
            for b, t in raw.items() if isinstance(b, str) and isinstance(t, dict)}


def _table(state: dict[str, Any], bridge: str) -> dict[str, int]:
    return state.setdefault("ofports", {}).setdefault(bridge, {})


def assign(state: dict[str, Any], bridge: str, port: str) -> tuple[int, bool]:
    """The port's number, and whether it was new (state to be saved)."""
    table = _table(state, bridge)
    n = table.get(port)
    if isinstance(n, int) and 1 <= n <= MAX_OFPORT:
        return n, False
    used = set(table.values())
    n = next(i for i in range(1, MAX_OFPORT + 1) if i not in used)
    table[port] = n
    return n, True


def lookup(state: dict[str, Any], bridge: str, port: str) -> int | None:
    return state.get("ofports", {}).get(bridge, {}).get(port)


def prune(state: dict[str, Any], ports: dict[str, set[str]]) -> bool:
    """Forget numbers of ports (and bridges) that no longer exist; ports maps
    each bridge to its port names.  True if anything was removed."""
    table = state.get("ofports", {})
    changed = False
    for bridge in list(table):
        keep = ports.get(bridge)
        if keep is None:
            del table[bridge]
            changed = True
            continue
        for port in list(table[bridge]):
            if port not in keep:
                del table[bridge][port]
                changed = True
    return changed
