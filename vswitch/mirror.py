"""Port mirrors: configuration, validation and the add-mirror / del-mirror /
list-mirrors commands.

Open vSwitch's Mirror table (vswitch.xml), per bridge: a frame is selected
when it enters by a port of select_src_port or leaves by one of
select_dst_port (select_all: any port), and its VLAN is in select_vlan
(empty: any).  Selected frames go to output_port -- which is then reserved
for mirroring: nothing else is sent to it, what it sends is dropped -- or,
RSPAN, to every port carrying output_vlan.  The engine does the work
(csrc/mirror.c); here the names become engine ids.

Deleting a port takes it out of every mirror's selection, as in Open
vSwitch (the change is persisted).  A port that is a mirror's output cannot
be deleted while the mirror exists (Open vSwitch would silently turn the
mirror off; we refuse, so that nothing configured disappears unasked).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping

from .config import ConfigError, Path, check_bool, check_int, format_trunks
from .errors import exists, invalid, not_found

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import BridgeConfig, PortConfig, SwitchConfig
    from .datapath import Datapath
    from .switch import BridgeRuntime

MAX_MIRRORS = 32            # per bridge, as Open vSwitch (and VS_MAX_MIRRORS)
MIRROR_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")
MIRROR_KEYS = ("name", "select_all", "select_src_port", "select_dst_port", "select_vlan",
               "output_port", "output_vlan")


@dataclass(frozen=True)
class MirrorConfig:
    name: str
    select_all: bool = False
    select_src_port: tuple[str, ...] = ()
    select_dst_port: tuple[str, ...] = ()
    select_vlan: tuple[int, ...] = ()          # empty: every VLAN
    output_port: str | None = None
    output_vlan: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.select_all:
            out["select_all"] = True
        for key in ("select_src_port", "select_dst_port", "select_vlan"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        if self.output_port is not None:
            out["output_port"] = self.output_port
        if self.output_vlan is not None:
            out["output_vlan"] = self.output_vlan
        return out

    def ports(self) -> set[str]:
        named = set(self.select_src_port) | set(self.select_dst_port)
        return named | ({self.output_port} if self.output_port else set())

    def without_port(self, port: str) -> "MirrorConfig":
        return replace(self, select_src_port=tuple(p for p in self.select_src_port if p != port),
                       select_dst_port=tuple(p for p in self.select_dst_port if p != port))


def _names(value: Any, path: Path, ports: Mapping[str, PortConfig]) -> tuple[str, ...]:
    """A list of port names, or "p1,p2" as the command line gives it."""
    if isinstance(value, str):
        items: list[Any] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(path, "must be a list of port names or 'p1,p2'")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or item not in ports:
            raise ConfigError(path, f"no port {item!r} on this bridge")
        if item not in out:
            out.append(item)
    return tuple(out)


def _vlans(value: Any, path: Path) -> tuple[int, ...]:
    if isinstance(value, str):
        items: list[Any] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    vids: set[int] = set()
    for item in items:
        if isinstance(item, str) and "-" in item.strip("-"):
            lo_s, hi_s = item.split("-", 1)
            lo, hi = (check_int(x, path, "VLAN", 0, 4094) for x in (lo_s, hi_s))
            if lo > hi:
                raise ConfigError(path, f"VLAN range {item!r} runs backwards")
            vids.update(range(lo, hi + 1))
        else:
            vids.add(check_int(item, path, "VLAN", 0, 4094))
    return tuple(sorted(vids))


def parse_mirror(data: Any, path: Path, ports: Mapping[str, PortConfig]) -> MirrorConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(path, "a mirror must be a table")
    for key in data:
        if key not in MIRROR_KEYS:
            raise ConfigError(path + (key,), f"unknown mirror key {key!r} "
                                             f"(expected one of: {', '.join(MIRROR_KEYS)})")
    name = data.get("name")
    if not isinstance(name, str) or not MIRROR_NAME_RE.match(name):
        raise ConfigError(path + ("name",), f"mirror name {name!r} is not valid (letters, "
                          "digits, '_', '.', ':', '-'; at most 64)")
    select_all = check_bool(data.get("select_all", False), path + ("select_all",), "select_all")
    src = _names(data.get("select_src_port", ()), path + ("select_src_port",), ports)
    dst = _names(data.get("select_dst_port", ()), path + ("select_dst_port",), ports)
    vlans = _vlans(data.get("select_vlan", ()), path + ("select_vlan",))
    out_port = data.get("output_port")
    out_vlan = data.get("output_vlan")
    if out_port in ("", None) and out_vlan in ("", None):
        raise ConfigError(path, f"mirror {name}: give output_port or output_vlan")
    if out_port not in ("", None) and out_vlan not in ("", None):
        raise ConfigError(path + ("output_vlan",), f"mirror {name}: output_port and "
                                                   "output_vlan exclude each other")
    if out_port not in ("", None):
        if not isinstance(out_port, str) or out_port not in ports:
            raise ConfigError(path + ("output_port",), f"no port {out_port!r} on this bridge")
        return MirrorConfig(name, select_all, src, dst, vlans, output_port=out_port)
    vlan = check_int(out_vlan, path + ("output_vlan",), "output_vlan", 1, 4094)
    return MirrorConfig(name, select_all, src, dst, vlans, output_vlan=vlan)


def parse_mirrors(value: Any, path: Path, ports: Mapping[str, PortConfig]
                  ) -> tuple[MirrorConfig, ...]:
    """A bridge's [[bridge.BR.mirror]] list."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(path, "mirror must be a list of tables ([[bridge.NAME.mirror]])")
    if len(value) > MAX_MIRRORS:
        raise ConfigError(path, f"a bridge has at most {MAX_MIRRORS} mirrors")
    mirrors = tuple(parse_mirror(m, path + (str(i),), ports) for i, m in enumerate(value))
    seen: set[str] = set()
    for i, m in enumerate(mirrors):
        if m.name in seen:
            raise ConfigError(path + (str(i), "name"), f"mirror {m.name} is listed twice")
        seen.add(m.name)
    return mirrors


def describe(m: MirrorConfig) -> dict[str, Any]:
    """The list-mirrors form of a mirror's configuration."""
    return {"name": m.name, "select_all": m.select_all,
            "select_src_port": list(m.select_src_port),
            "select_dst_port": list(m.select_dst_port), "select_vlan": list(m.select_vlan),
            "output_port": m.output_port, "output_vlan": m.output_vlan}


def vlan_text(vids: tuple[int, ...]) -> str:
    return format_trunks(vids)


class MirrorCommands:
    """The Switch's mirror operations (a mixin, like BondCommands)."""

    if TYPE_CHECKING:   # provided by Switch
        dp: Datapath
        bridges: dict[str, BridgeRuntime]
        config: SwitchConfig

        def _bridge_cfg(self, name: str) -> BridgeConfig: ...

        def _commit(self, cfg: SwitchConfig, undo: Callable[[], None]) -> None: ...

    # --- the engine side ---------------------------------------------------------
    def _sync_mirrors(self, bridge: str, cfg: BridgeConfig) -> None:
        """Make the engine's mirrors of `bridge` what cfg says, with today's
        engine port ids (a re-created port has a new one).  Counters survive
        as long as a mirror keeps its name."""
        rt = self.bridges[bridge]
        wanted = {m.name: m for m in cfg.mirrors}
        for name in [n for n in rt.mirror_slots if n not in wanted]:
            self.dp.mirror_del(rt.br_id, rt.mirror_slots.pop(name))
        for m in cfg.mirrors:
            ids = {p: rt.ports[p].port_id for p in m.ports() if p in rt.ports}
            out = ids.get(m.output_port) if m.output_port else None
            if m.output_port and out is None:
                # its output port is not built (yet): mirror nothing for now
                if m.name in rt.mirror_slots:
                    self.dp.mirror_del(rt.br_id, rt.mirror_slots.pop(m.name))
                continue
            slot = rt.mirror_slots.get(m.name)
            if slot is None:
                slot = min(set(range(MAX_MIRRORS)) - set(rt.mirror_slots.values()))
            self.dp.mirror_set(rt.br_id, slot, select_all=m.select_all,
                               src=[ids[p] for p in m.select_src_port if p in ids],
                               dst=[ids[p] for p in m.select_dst_port if p in ids],
                               vlans=m.select_vlan, output_port=out, output_vlan=m.output_vlan)
            rt.mirror_slots[m.name] = slot

    def _resync_mirrors_of(self, rt: BridgeRuntime) -> None:
        """After a port of rt was (re)built: its engine id changed."""
        if rt.name in self.config.bridges and self.bridges.get(rt.name) is rt:
            self._sync_mirrors(rt.name, self.config.bridges[rt.name])

    def _mirror_outputs(self, port: str) -> list[tuple[str, str]]:
        """(bridge, mirror) pairs that output to `port`."""
        return [(b.name, m.name) for b in self.config.bridges.values() for m in b.mirrors
                if m.output_port == port]

    # --- commands -------------------------------------------------------------------
    def add_mirror(self, bridge: str, name: str, settings: dict[str, Any]) -> None:
        br = self._bridge_cfg(bridge)
        if any(m.name == name for m in br.mirrors):
            raise exists(f"bridge {bridge} already has a mirror named {name}")
        if len(br.mirrors) >= MAX_MIRRORS:
            raise invalid(f"bridge {bridge} has {MAX_MIRRORS} mirrors already")
        data = {k.replace("-", "_"): v for k, v in settings.items()}
        if "name" in data:
            raise invalid("give the mirror's name as an argument, not name=")
        try:
            m = parse_mirror({"name": name, **data}, ("bridge", bridge, "mirror", name),
                             br.ports)
        except ConfigError as e:
            raise invalid(str(e)) from None
        if not (m.select_all or m.select_src_port or m.select_dst_port):
            raise invalid(f"mirror {name} selects nothing: give select_all=true, "
                          "select_src_port or select_dst_port")
        new = replace(br, mirrors=br.mirrors + (m,))
        self._sync_mirrors(bridge, new)
        self._commit(self.config.with_bridge(new), lambda: self._sync_mirrors(bridge, br))

    def del_mirror(self, bridge: str, name: str, if_exists: bool = False) -> None:
        br = self._bridge_cfg(bridge)
        if not any(m.name == name for m in br.mirrors):
            if if_exists:
                return
            raise not_found(f"no mirror named {name} on bridge {bridge}")
        new = replace(br, mirrors=tuple(m for m in br.mirrors if m.name != name))
        self._sync_mirrors(bridge, new)
        self._commit(self.config.with_bridge(new), lambda: self._sync_mirrors(bridge, br))

    def list_mirrors(self, bridge: str) -> list[dict[str, Any]]:
        br = self._bridge_cfg(bridge)
        rt = self.bridges[bridge]
        out = []
        for m in br.mirrors:
            slot = rt.mirror_slots.get(m.name)
            packets, nbytes = self.dp.mirror_stats(rt.br_id, slot) if slot is not None else (0, 0)
            out.append({**describe(m), "active": slot is not None,
                        "tx_packets": packets, "tx_bytes": nbytes})
        return out
