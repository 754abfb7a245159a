"""Applying a changed configuration file to the running switch as one
transaction (`vswitchctl reload`, SIGHUP).

Only the differences are applied: a port whose configuration did not change
is not touched and keeps forwarding.  A port whose addresses, VLAN or bond
settings changed is changed in place; any other change recreates it.  The steps run
in an order that frees resources before they are reused (all removals, then
in-place changes, then additions), each one recording how to undo itself.
If a step fails, or the database cannot be written, the undo log runs
backwards and the switch is left as it was; namespaces the switch created
are only removed once the new configuration is committed, so undoing never
has to recreate one.
"""
from __future__ import annotations

import logging
from dataclasses import fields
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from .config import PortConfig, StaticMac, SwitchConfig
from .errors import VswitchError
from .network import NETWORK_KEYS

if TYPE_CHECKING:
    from .switch import Switch

log = logging.getLogger(__name__)


def needs_recreate(old: PortConfig, new: PortConfig, live_keys: tuple[str, ...]) -> bool:
    return any(getattr(old, f.name) != getattr(new, f.name)
               for f in fields(PortConfig) if f.name not in live_keys)


def apply_config(sw: "Switch", new: SwitchConfig) -> dict[str, list[str]]:
    """Make the running switch match `new`; returns what changed."""
    old = sw.config
    undo: list[Callable[[], object]] = []
    changes: dict[str, list[str]] = {k: [] for k in (
        "bridges_added", "bridges_removed", "bridges_changed", "ports_added",
        "ports_removed", "ports_changed", "ports_recreated", "fdb_added", "fdb_removed",
        "ports_repaired", "fdb_restored", "mirrors_changed")}
    common = [b for b in new.bridges if b in old.bridges]

    def port_plan(b: str) -> tuple[list[str], list[str], list[str]]:
        """(to remove, to change live, to add) for a bridge in both configs."""
        ob, nb = old.bridges[b], new.bridges[b]
        remove, live, add = [], [], []
        for p, ocfg in ob.ports.items():
            ncfg = nb.ports.get(p)
            if ncfg is None:
                remove.append(p)
            elif needs_recreate(ocfg, ncfg, sw.LIVE_PORT_KEYS):
                remove.append(p)
                add.append(p)
            elif ocfg != ncfg:
                live.append(p)
        add += [p for p in nb.ports if p not in ob.ports]
        return remove, live, add

    plans = {b: port_plan(b) for b in common}
    to_add = [nb.ports[p] for b, nb in new.bridges.items() if b in plans for p in plans[b][2]]
    to_add += [p for b, nb in new.bridges.items() if b not in old.bridges
               for p in nb.ports.values()]
    to_remove = [ob.ports[p] for b, ob in old.bridges.items() if b in plans
                 for p in plans[b][0]]
    to_remove += [p for b, ob in old.bridges.items() if b not in new.bridges
                  for p in ob.ports.values()]
    precheck(to_add, to_remove)
    try:
        # 1. everything that goes away
        for b in [b for b in old.bridges if b not in new.bridges]:
            sw._remove_bridge(b)
            undo.append(partial(sw._build_bridge, old.bridges[b], strict=False))
            changes["bridges_removed"].append(b)
        for b in common:
            ob, nb = old.bridges[b], new.bridges[b]
            rt = sw.bridges[b]
            for s in set(ob.static_macs) - set(nb.static_macs):
                _del_static(sw, b, s.vlan, s.mac)
                undo.append(partial(sw._apply_static, b, s))
                changes["fdb_removed"].append(_static_name(b, s))
            for p in plans[b][0]:
                sw._remove_port(rt, p)
                # built again from its whole old configuration, static
                # entries included, if the reload is undone
                undo.append(partial(sw._create_port_from, b, ob, p, strict=False))
        # 2. what changes in place
        for b in common:
            ob, nb = old.bridges[b], new.bridges[b]
            rt = sw.bridges[b]
            if any(getattr(ob, k) != getattr(nb, k) for k in NETWORK_KEYS):
                sw._change_network(rt, ob, nb)    # network.py: gateway, addresses, routes
                undo.append(partial(sw._change_network, rt, nb, ob))
                changes["bridges_changed"].append(b)
            if (ob.mac_aging, ob.mac_table_size) != (nb.mac_aging, nb.mac_table_size):
                sw.dp.set_mac_aging(rt.br_id, nb.mac_aging)
                undo.append(partial(sw.dp.set_mac_aging, rt.br_id, ob.mac_aging))
                sw.dp.set_mac_table_size(rt.br_id, nb.mac_table_size)
                undo.append(partial(sw.dp.set_mac_table_size, rt.br_id, ob.mac_table_size))
                if b not in changes["bridges_changed"]:
                    changes["bridges_changed"].append(b)
            if ob.flow_export != nb.flow_export:
                sw._apply_flows(nb)
                undo.append(partial(sw._apply_flows, ob))
                if b not in changes["bridges_changed"]:
                    changes["bridges_changed"].append(b)
            for p in plans[b][1]:
                sw._apply_live(rt, p, nb.ports[p])
                undo.append(partial(sw._apply_live, rt, p, ob.ports[p]))
                changes["ports_changed"].append(p)
        # 3. what is new
        for b in common:
            nb = new.bridges[b]
            rt = sw.bridges[b]
            for p in plans[b][2]:
                # with the static entries the new file keeps for it (the
                # engine dropped them with the old port)
                sw._create_port_from(b, nb, p, strict=True)
                undo.append(partial(sw._remove_port, rt, p))
                recreated = p in old.bridges[b].ports
                changes["ports_recreated" if recreated else "ports_added"].append(p)
            for s in set(nb.static_macs) - set(old.bridges[b].static_macs):
                sw._apply_static(b, s)
                undo.append(partial(_del_static, sw, b, s.vlan, s.mac))
                changes["fdb_added"].append(_static_name(b, s))
        for b in [b for b in new.bridges if b not in old.bridges]:
            sw._build_bridge(new.bridges[b], strict=True)
            undo.append(partial(sw._remove_bridge, b))
            changes["bridges_added"].append(b)
        for b in common:
            changes["ports_removed"] += [p for p in plans[b][0]
                                         if p not in new.bridges[b].ports]
        # 4. mirrors, now that every port they name exists (by its new id)
        for b in common:
            sw._sync_mirrors(b, new.bridges[b])
            undo.append(partial(sw._sync_mirrors, b, old.bridges[b]))
            if old.bridges[b].mirrors != new.bridges[b].mirrors:
                changes["mirrors_changed"].append(b)
        sw.network.apply(new)         # the nftables table: one transaction
        undo.append(partial(sw.network.apply, old, strict=False))
        sw._persist(new)
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except Exception:   # keep undoing; say what could not be
                log.exception("reload: undo step failed")
        sw.config = old
        raise
    sw._prune_ofports(new)
    sw.namespaces.release_all_except(sw._netns_in_use(new))
    repair(sw, changes)
    return {k: v for k, v in changes.items() if v}


def repair(sw: "Switch", changes: dict[str, list[str]]) -> None:
    """Bring the kernel and the engine to the configuration, beyond its
    differences: a port whose device vanished (its namespace was deleted,
    say) is built again, as `add-port --may-exist` does for one port, and a
    static entry missing from the engine is put back.  Best effort, after
    the commit: a port that still cannot be built stays configured and
    shows why."""
    for b, br in sw.config.bridges.items():
        rt = sw.bridges[b]
        for p, prt in rt.ports.items():
            if sw.device_broken(prt):
                sw._reattach(prt, strict=False)
                if not sw.device_broken(prt):
                    changes["ports_repaired"].append(p)
        for s in br.static_macs:
            port_id = rt.ports[s.port].port_id
            if sw.dp.fdb_lookup(rt.br_id, s.vlan, s.mac) != port_id:
                sw._apply_static(b, s)
                changes["fdb_restored"].append(_static_name(b, s))


def _static_name(bridge: str, s: StaticMac) -> str:
    return f"{bridge} {s.mac} vlan {s.vlan} on {s.port}"


def _devices(cfg: PortConfig) -> list[tuple[str | None, str]]:
    """(namespace, interface) pairs a port uses; None: the daemon's namespace."""
    if cfg.type == "bond":
        return [(None, m) for m in cfg.interfaces]
    if cfg.type == "tap" and cfg.netns:
        return [(cfg.netns, cfg.device_name)]
    return [(None, cfg.device_name)]


def precheck(to_add: list[PortConfig], to_remove: list[PortConfig]) -> None:
    """Catch, before anything is touched, the failures a new port would meet:
    a missing interface for a system port or bond member, a name already
    taken by a device that is not one of ours going away.  (What still fails
    later is undone.)"""
    from .links import get_link
    from .netns import netns_exists
    freed = {d for cfg in to_remove for d in _devices(cfg)}
    for cfg in to_add:
        for netns, name in _devices(cfg):
            if (netns, name) in freed:
                continue
            if netns is not None and not netns_exists(netns):
                continue
            present = get_link(name, netns) is not None
            if cfg.type in ("system", "bond") and not present:
                raise VswitchError("ENODEV", f"port {cfg.name}: no interface {name} in the "
                                             "daemon's namespace")
            if cfg.type in ("tap", "internal") and present:
                where = f"namespace {netns}" if netns else "the daemon's namespace"
                raise VswitchError("EEXIST", f"port {cfg.name}: {where} already has an "
                                             f"interface {name}")


def _del_static(sw: "Switch", bridge: str, vlan: int, mac: str) -> None:
    try:
        sw.dp.fdb_del(sw.bridges[bridge].br_id, vlan, mac)
    except VswitchError as e:
        if e.code != "ENOENT":
            raise


def summary(changes: dict[str, Any]) -> str:
    if not changes:
        return "nothing changed"
    return "; ".join(f"{k.replace('_', ' ')}: {', '.join(v)}" for k, v in changes.items())
