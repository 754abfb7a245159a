"""Runtime state worth keeping across restarts, apart from the
configuration: what the switch decided or changed, not what the user asked
for.  Kept in `<db>.state.json` beside the database.

- bonds: the active member of each bond, so a restart does not move
  traffic (pruned whenever a bond goes away, so a new bond of the same name
  starts afresh);
- brought_up: system interfaces (and bond members) that were
  administratively down when the switch attached them and that it brought
  up; it takes them down again when it lets go of them, also after a crash
  and restart in between;
- ofports: each port's number (vswitch/ofports.py), which flow export
  reports as its interface index.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

from . import ofports
from .store import DamagedFile, keep_aside, read_json, write_json

log = logging.getLogger(__name__)


class RuntimeState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._data = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            data = read_json(self.path)
        except DamagedFile as e:
            kept = keep_aside(self.path)
            log.warning("%s; kept as %s, starting without it (bonds choose their "
                        "active member afresh)", e, kept)
            data = None
        if not isinstance(data, dict):
            return {}
        bonds = data.get("bonds")
        up = data.get("brought_up")
        return {"bonds": bonds if isinstance(bonds, dict) else {},
                "brought_up": sorted(n for n in up if isinstance(n, str))
                if isinstance(up, list) else [],
                "ofports": ofports.checked(data.get("ofports"))}

    def _save(self) -> None:
        try:
            write_json(self.path, self._data)
        except OSError as e:
            log.warning("cannot write %s: %s", self.path, e)

    # --- bonds ------------------------------------------------------------------
    def bond_active(self, bond: str) -> str | None:
        entry = self._data.setdefault("bonds", {}).get(bond)
        active = entry.get("active") if isinstance(entry, dict) else None
        return active if isinstance(active, str) else None

    def set_bond_active(self, bond: str, active: str | None) -> None:
        bonds = self._data.setdefault("bonds", {})
        if bonds.get(bond, {}).get("active") != active or bond not in bonds:
            bonds[bond] = {"active": active}
            self._save()

    def bond_names(self) -> set[str]:
        return set(self._data.setdefault("bonds", {}))

    def keep_bonds(self, names: Iterable[str]) -> None:
        """Forget every bond not named."""
        keep = set(names)
        bonds = self._data.setdefault("bonds", {})
        stale = [b for b in bonds if b not in keep]
        for b in stale:
            del bonds[b]
        if stale:
            self._save()

    # --- interfaces the switch brought up ------------------------------------------
    def brought_up(self, ifname: str) -> bool:
        return ifname in self._data.setdefault("brought_up", [])

    def set_brought_up(self, ifname: str, value: bool) -> None:
        names = set(self._data.setdefault("brought_up", []))
        if (ifname in names) == value:
            return
        names.symmetric_difference_update({ifname})
        self._data["brought_up"] = sorted(names)
        self._save()

    # --- port numbers (ofport) ---------------------------------------------------------
    def ofport(self, bridge: str, port: str) -> int | None:
        return ofports.lookup(self._data, bridge, port)

    def assign_ofport(self, bridge: str, port: str) -> int:
        n, new = ofports.assign(self._data, bridge, port)
        if new:
            self._save()
        return n

    def keep_ofports(self, ports: dict[str, set[str]]) -> None:
        """Forget the numbers of ports (and bridges) not named."""
        if ofports.prune(self._data, ports):
            self._save()
