"""Flow export settings of a bridge: what `set bridge BR netflow=... ipfix=...
sflow=...` and the config file's bridge keys of the same names say.

Key names are Open vSwitch's (NetFlow, IPFIX and sFlow tables, flattened
with a prefix), plus the few our caches need (idle timeouts).  A value left
out (None) means the default below; an empty target list turns that export
off.  Parsed and checked like every other setting (vswitch/config.py), so a
file, the database and an API call agree on what is valid.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from typing import Any, Mapping

from ..config import ConfigError, Path, check_int

# Defaults: Open vSwitch's where it has one.
DEFAULTS: dict[str, int] = {
    "netflow_active_timeout": 600,      # OVS NetFlow active_timeout
    "netflow_idle_timeout": 15,         # Cisco's inactive timeout
    "netflow_engine_type": 0,
    "netflow_engine_id": 0,
    "ipfix_sampling": 1,                # every packet: exact counts (OVS: 400)
    "ipfix_obs_domain_id": 0,
    "ipfix_cache_active_timeout": 60,
    "ipfix_cache_idle_timeout": 15,
    "ipfix_cache_max_flows": 65536,
    "ipfix_template_interval": 60,      # templates re-sent (RFC 7011 over UDP)
    "sflow_sampling": 400,              # OVS's default sampling rate
    "sflow_polling": 30,                # OVS's default counter polling interval
    "sflow_header": 128,                # bytes of each sampled frame
}
NETFLOW_MAX_FLOWS = 65536

RANGES: dict[str, tuple[int, int]] = {
    "netflow_active_timeout": (0, 86400),   # 0: no active timeout
    "netflow_idle_timeout": (1, 3600),
    "netflow_engine_type": (0, 255),
    "netflow_engine_id": (0, 255),
    "ipfix_sampling": (1, 1 << 24),
    "ipfix_obs_domain_id": (0, (1 << 32) - 1),
    "ipfix_cache_active_timeout": (0, 86400),
    "ipfix_cache_idle_timeout": (1, 3600),
    "ipfix_cache_max_flows": (1, 1 << 20),
    "ipfix_template_interval": (1, 86400),
    "sflow_sampling": (1, 1 << 24),
    "sflow_polling": (0, 3600),              # 0: no counter samples
    "sflow_header": (14, 256),
}
TARGET_KEYS = ("netflow", "ipfix", "sflow")
FLOW_KEYS = TARGET_KEYS + tuple(RANGES) + ("sflow_agent",)


@dataclass(frozen=True)
class Target:
    """A collector: an IP address and a UDP port."""
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_target(text: str, path: Path) -> Target:
    text = text.strip()
    host, sep, port_s = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(path, f"{text!r} is not HOST:PORT (like 127.0.0.1:2055)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(path, f"{host!r} is not an IP address (collectors are given "
                                "by address, like 127.0.0.1:2055 or [::1]:4739)") from None
    port = check_int(port_s, path, "collector port", 1, 65535)
    return Target(str(addr), port)


def parse_targets(value: Any, path: Path) -> tuple[Target, ...]:
    """"HOST:PORT[,HOST:PORT]", a list of them, or empty (off)."""
    if isinstance(value, str):
        items = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise ConfigError(path, "collectors must be \"HOST:PORT[,HOST:PORT]\" or a list")
    targets = tuple(parse_target(v, path) for v in items)
    if len(set(targets)) != len(targets):
        raise ConfigError(path, "a collector is listed twice")
    return targets


@dataclass(frozen=True)
class FlowExport:
    netflow: tuple[Target, ...] = ()
    netflow_active_timeout: int | None = None
    netflow_idle_timeout: int | None = None
    netflow_engine_type: int | None = None
    netflow_engine_id: int | None = None
    ipfix: tuple[Target, ...] = ()
    ipfix_sampling: int | None = None
    ipfix_obs_domain_id: int | None = None
    ipfix_cache_active_timeout: int | None = None
    ipfix_cache_idle_timeout: int | None = None
    ipfix_cache_max_flows: int | None = None
    ipfix_template_interval: int | None = None
    sflow: tuple[Target, ...] = ()
    sflow_sampling: int | None = None
    sflow_polling: int | None = None
    sflow_header: int | None = None
    sflow_agent: str | None = None      # agent address; default: the source address used

    def get(self, key: str) -> int:
        """A numeric setting, or its default."""
        value = getattr(self, key)
        return DEFAULTS[key] if value is None else value

    def protocol(self, proto: str) -> dict[str, Any]:
        """The settings of one protocol (a change there restarts only it)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name == proto or f.name.startswith(proto + "_")}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in TARGET_KEYS:
                if v:
                    out[f.name] = ",".join(str(t) for t in v)
            elif v is not None:
                out[f.name] = v
        return out

    def describe(self) -> dict[str, Any]:
        """Everything, defaults filled in (for `show`)."""
        out: dict[str, Any] = {}
        for proto in TARGET_KEYS:
            targets = getattr(self, proto)
            if not targets:
                continue
            out[proto] = {"targets": [str(t) for t in targets]}
            for key in self.protocol(proto):
                if key in DEFAULTS:
                    out[proto][key[len(proto) + 1:]] = self.get(key)
            if proto == "sflow" and self.sflow_agent:
                out[proto]["agent"] = self.sflow_agent
        return out


def parse_flow_export(data: Mapping[str, Any], path: Path) -> FlowExport:
    """The flow keys of a bridge table (others are ignored here)."""
    values: dict[str, Any] = {}
    for key in FLOW_KEYS:
        if key not in data or data[key] is None:
            continue
        raw = data[key]
        where = path + (key,)
        if key in TARGET_KEYS:
            values[key] = parse_targets(raw, where)
        elif key == "sflow_agent":
            try:
                values[key] = str(ipaddress.ip_address(str(raw)))
            except ValueError:
                raise ConfigError(where, f"{raw!r} is not an IP address") from None
        else:
            values[key] = check_int(raw, where, key, *RANGES[key])
    return FlowExport(**values)


def changed_flow_export(current: FlowExport | None, settings: Mapping[str, Any],
                        path: Path) -> FlowExport | None:
    """`set bridge` on flow keys: current with settings applied, None when
    nothing is left.  An empty value clears a key; an empty collector list
    turns that export off and clears its other settings too (as Open
    vSwitch drops the whole NetFlow/IPFIX/sFlow record), unless they are
    set in the same command."""
    merged = current.to_json() if current else {}
    for key, value in settings.items():
        if value in ("", None, []):
            merged.pop(key, None)
            if key in TARGET_KEYS:
                for k in [k for k in merged if k.startswith(key + "_") and k not in settings]:
                    merged.pop(k)
        else:
            merged[key] = value
    fe = parse_flow_export(merged, path)
    return fe if fe.to_json() else None
