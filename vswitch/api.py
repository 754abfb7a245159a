"""The control API: method names (vswitchctl's command names) mapped to
Switch calls, with their parameters checked at the edge.

A request is {"id", "method", "params"}; params is an object.  Every
parameter is named, typed and required or optional; anything else is an
EINVAL error naming it.
"""
from __future__ import annotations

from typing import Any, Callable

from . import __version__
from .errors import VswitchError, invalid
from .switch import Switch
from .trace import trace

Handler = Callable[[Switch, "Params"], Any]


class Params:
    def __init__(self, method: str, raw: Any) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise invalid(f"{method}: params must be an object")
        self.method = method
        self._raw = raw
        self._used: set[str] = set()

    def _get(self, key: str, kind: type | tuple[type, ...], required: bool) -> Any:
        self._used.add(key)
        if key not in self._raw or self._raw[key] is None:
            if required:
                raise invalid(f"{self.method}: missing parameter {key!r}")
            return None
        value = self._raw[key]
        # bool is an int to Python; only a flag may be one.
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise invalid(f"{self.method}: parameter {key!r} has the wrong type")
        return value

    def text(self, key: str) -> str:
        return self._get(key, str, True)

    def opt_text(self, key: str) -> str | None:
        return self._get(key, str, False)

    def flag(self, key: str) -> bool:
        return bool(self._get(key, bool, False))

    def value(self, key: str) -> Any:
        return self._get(key, (str, int), True)

    def opt_value(self, key: str) -> Any:
        return self._get(key, (str, int), False)

    def text_list(self, key: str) -> list[str]:
        v = self._get(key, list, True)
        if not all(isinstance(x, str) for x in v):
            raise invalid(f"{self.method}: parameter {key!r} must be a list of strings")
        return v

    def settings(self, key: str = "settings") -> dict[str, Any]:
        v = self._get(key, dict, False)
        return dict(v or {})

    def done(self) -> None:
        extra = set(self._raw) - self._used
        if extra:
            raise invalid(f"{self.method}: unknown parameter {sorted(extra)[0]!r}")


def _add_br(sw: Switch, p: Params) -> None:
    name, settings, may = p.text("bridge"), p.settings(), p.flag("may_exist")
    p.done()
    allowed = ("mac_aging", "mac_table_size", "subnet", "gateway", "masquerade", "subnet6",
               "gateway6", "external_ids")
    bad = {k for k in settings if not k.startswith("external_ids:")} - set(allowed)
    if bad:
        raise invalid(f"unknown bridge setting {sorted(bad)[0]!r} ({', '.join(allowed)})")
    sw.add_bridge(name, settings, may)


def _del_br(sw: Switch, p: Params) -> None:
    name, if_exists = p.text("bridge"), p.flag("if_exists")
    p.done()
    sw.del_bridge(name, if_exists)


def _list_br(sw: Switch, p: Params) -> list[str]:
    p.done()
    return sorted(sw.config.bridges)


def _br_exists(sw: Switch, p: Params) -> bool:
    name = p.text("bridge")
    p.done()
    return name in sw.config.bridges


def _add_port(sw: Switch, p: Params) -> None:
    br, port, settings, may = p.text("bridge"), p.text("port"), p.settings(), p.flag("may_exist")
    p.done()
    sw.add_port(br, port, settings, may)


def _del_port(sw: Switch, p: Params) -> None:
    br, port, if_exists = p.opt_text("bridge"), p.text("port"), p.flag("if_exists")
    p.done()
    sw.del_port(br, port, if_exists)


def _list_ports(sw: Switch, p: Params) -> list[str]:
    br = p.text("bridge")
    p.done()
    return sw.list_ports(br)


def _show(sw: Switch, p: Params) -> dict[str, Any]:
    p.done()
    return sw.show()


def _net_show(sw: Switch, p: Params) -> dict[str, Any]:
    br = p.text("bridge")
    p.done()
    return sw.net_show(br)


def _fdb_show(sw: Switch, p: Params) -> list[dict[str, Any]]:
    br = p.text("bridge")
    p.done()
    return sw.fdb_show(br)


def _fdb_flush(sw: Switch, p: Params) -> int:
    br = p.opt_text("bridge")
    p.done()
    return sw.fdb_flush(br)


def _fdb_add(sw: Switch, p: Params) -> None:
    br, port, vlan, mac = p.text("bridge"), p.text("port"), p.value("vlan"), p.text("mac")
    p.done()
    sw.fdb_add(br, port, vlan, mac)


def _fdb_del(sw: Switch, p: Params) -> None:
    br, vlan, mac = p.text("bridge"), p.value("vlan"), p.text("mac")
    p.done()
    sw.fdb_del(br, vlan, mac)


def _fdb_stats(sw: Switch, p: Params) -> dict[str, int]:
    br = p.text("bridge")
    p.done()
    return sw.fdb_stats(br)


def _port_stats(sw: Switch, p: Params) -> list[dict[str, Any]]:
    br = p.opt_text("bridge")
    p.done()
    return sw.port_stats(br)


def _flow_stats(sw: Switch, p: Params) -> dict[str, Any]:
    br = p.text("bridge")
    p.done()
    return sw.flow_stats(br)


def _set(sw: Switch, p: Params) -> None:
    table, record, settings = p.text("table"), p.text("record"), p.settings()
    p.done()
    if table == "bridge":
        sw.set_bridge(record, settings)
    elif table == "port":
        sw.set_port(record, settings)
    else:
        raise invalid(f"cannot set {table!r} (tables: bridge, port)")


def _add_bond(sw: Switch, p: Params) -> None:
    br, bond, may = p.text("bridge"), p.text("port"), p.flag("may_exist")
    members = p.text_list("interfaces")
    settings = p.settings()
    p.done()
    sw.add_bond(br, bond, members, settings, may)


def _bond_show(sw: Switch, p: Params) -> list[dict[str, Any]]:
    bond = p.opt_text("bond")
    p.done()
    return sw.bond_show(bond)


def _lacp_show(sw: Switch, p: Params) -> list[dict[str, Any]]:
    bond = p.opt_text("bond")
    p.done()
    return sw.lacp_show(bond)


def _bond_set_active(sw: Switch, p: Params) -> None:
    bond, member = p.text("bond"), p.text("member")
    p.done()
    sw.bond_set_active_member(bond, member)


def _bond_enable(sw: Switch, p: Params) -> None:
    bond, member = p.text("bond"), p.text("member")
    p.done()
    sw.bond_set_member_admin(bond, member, True)


def _bond_disable(sw: Switch, p: Params) -> None:
    bond, member = p.text("bond"), p.text("member")
    p.done()
    sw.bond_set_member_admin(bond, member, False)


def _add_bond_iface(sw: Switch, p: Params) -> None:
    bond, member = p.text("bond"), p.text("member")
    p.done()
    sw.add_bond_iface(bond, member)


def _del_bond_iface(sw: Switch, p: Params) -> None:
    bond, member = p.text("bond"), p.text("member")
    p.done()
    sw.del_bond_iface(bond, member)


def _reload(sw: Switch, p: Params) -> dict[str, list[str]]:
    file = p.opt_text("file")
    p.done()
    return sw.reload(file)


def _add_mirror(sw: Switch, p: Params) -> None:
    br, name, settings = p.text("bridge"), p.text("mirror"), p.settings()
    p.done()
    sw.add_mirror(br, name, settings)


def _del_mirror(sw: Switch, p: Params) -> None:
    br, name, if_exists = p.text("bridge"), p.text("mirror"), p.flag("if_exists")
    p.done()
    sw.del_mirror(br, name, if_exists)


def _list_mirrors(sw: Switch, p: Params) -> list[dict[str, Any]]:
    br = p.text("bridge")
    p.done()
    return sw.list_mirrors(br)


def _trace(sw: Switch, p: Params) -> dict[str, Any]:
    br, flow = p.text("bridge"), p.settings("flow")
    p.done()
    return trace(sw, br, flow)


def _upcall_show(sw: Switch, p: Params) -> dict[str, Any]:
    p.done()
    return sw.upcalls.show()


def _version(sw: Switch, p: Params) -> str:
    p.done()
    return __version__


METHODS: dict[str, Handler] = {
    "add-br": _add_br,
    "del-br": _del_br,
    "list-br": _list_br,
    "br-exists": _br_exists,
    "add-port": _add_port,
    "del-port": _del_port,
    "list-ports": _list_ports,
    "show": _show,
    "fdb/show": _fdb_show,
    "net/show": _net_show,
    "fdb/flush": _fdb_flush,
    "fdb/add": _fdb_add,
    "fdb/del": _fdb_del,
    "fdb/stats-show": _fdb_stats,
    "port/stats": _port_stats,
    "flow/stats": _flow_stats,
    "set": _set,
    "add-bond": _add_bond,
    "add-bond-iface": _add_bond_iface,
    "del-bond-iface": _del_bond_iface,
    "bond/show": _bond_show,
    "lacp/show": _lacp_show,
    "bond/set-active-member": _bond_set_active,
    "bond/enable-member": _bond_enable,
    "bond/disable-member": _bond_disable,
    "reload": _reload,
    "add-mirror": _add_mirror,
    "del-mirror": _del_mirror,
    "list-mirrors": _list_mirrors,
    "trace": _trace,
    "upcall/show": _upcall_show,
    "version": _version,
}

# Methods that change configuration run one at a time; the rest read only.
MUTATING = {"add-br", "del-br", "add-port", "del-port", "fdb/add", "fdb/del", "fdb/flush",
            "set", "add-bond", "add-bond-iface", "del-bond-iface", "bond/set-active-member",
            "bond/enable-member", "bond/disable-member", "reload", "add-mirror", "del-mirror"}


def dispatch(sw: Switch, method: Any, params: Any) -> Any:
    if not isinstance(method, str) or method not in METHODS:
        raise VswitchError("ENOSYS", f"unknown method {method!r}")
    return METHODS[method](sw, Params(method, params))
