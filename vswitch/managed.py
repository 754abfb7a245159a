"""Bridges and ports that a container runtime made (the Docker driver, the
CNI plugin) belong to that runtime, not to a configuration file.

A file names what its author manages; the runtimes' bridges and ports are
not in it, and applying the file (`vswitchctl reload`, SIGHUP, `vswitchd
--config` at start) must not delete them: Docker never replays a network,
and a running container would lose its interface.  So they are carried over
from the running (or stored) configuration into the file's, unless the file
names the same bridge or port itself (then the file's version wins).
"""
from __future__ import annotations

from dataclasses import replace

from .config import BridgeConfig, PortConfig, SwitchConfig

# external_ids keys a front end sets on what it made
MANAGER_KEYS = ("docker-network-id", "docker-endpoint-id", "cni-container-id")


def is_managed(record: BridgeConfig | PortConfig) -> bool:
    ids = dict(record.external_ids)
    if isinstance(record, BridgeConfig):
        return ids.get("docker-owned") == "true"
    return any(k in ids for k in MANAGER_KEYS)


def keep_managed(current: SwitchConfig | None, new: SwitchConfig) -> SwitchConfig:
    if current is None:
        return new
    bridges = dict(new.bridges)
    for name, br in current.bridges.items():
        theirs = {p: c for p, c in br.ports.items() if is_managed(c)}
        if name not in bridges:
            if is_managed(br):
                bridges[name] = br
            elif theirs:
                # the file dropped a bridge that containers use: keep it with
                # only their ports
                bridges[name] = replace(br, ports=theirs, static_macs=tuple(
                    s for s in br.static_macs if s.port in theirs))
            continue
        nb = bridges[name]
        extra = {p: c for p, c in theirs.items() if p not in nb.ports}
        if extra or (is_managed(br) and not nb.external_ids):
            bridges[name] = replace(nb, ports={**nb.ports, **extra},
                                    external_ids=nb.external_ids or br.external_ids)
    return replace(new, bridges=bridges)
