"""libnetwork's remote network driver, on top of the Switch.

Docker asks; the driver turns each call into one Switch transaction, so the
driver keeps no state of its own: which Docker network is which bridge, and
which endpoint is which port, is written in the records' external_ids
(Open vSwitch's way of letting a manager tag what it made):

  bridge  docker-network-id   the Docker network it carries
          docker-owned        "true" when CreateNetwork made the bridge
                              (DeleteNetwork then deletes it; a bridge named
                              with -o vswitch.bridge that existed is kept)
          docker-gateway(6)   the gateways Docker's IPAM gave (Join answers them)
          docker-tag          -o vswitch.tag: the VLAN of the network's ports
          docker-internal     "true" for --internal (a layer-2 bridge: no gateway)
  port    docker-network-id, docker-endpoint-id
          docker-address      the address Docker's IPAM gave the endpoint
          docker-sandbox      the container's namespace, once joined
          docker-publish      -p bindings waiting for the port to reach the container

An endpoint's port is a TAP named vp<endpoint id> in the daemon's namespace
from CreateEndpoint on.  Join hands its name to Docker (SrcName, DstPrefix
"eth"); Docker moves it into the container, renames and addresses it.  Once
it is there (seen at ProgramExternalConnectivity, or by polling shortly
after Join), the port's configuration is rewritten to say so -- namespace =
the sandbox path, ifname, ip -- without touching the device: a restarted
vswitchd then re-creates the TAP in the container, addressed as Docker left
it, like any port configured with a namespace.  Docker never replays
networks to a restarted plugin, so this record is the only memory there is.

Each call validates everything it was sent before it changes anything; a
failure is {"Err": message} with a non-200 status.
"""
from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import json
import logging
import re
import struct
import time
from dataclasses import replace
from typing import Any, Callable

from ..config import ConfigError, SwitchConfig, check_netns, check_vlan
from ..errors import VswitchError, invalid
from ..ports import derived_mac
from ..switch import Switch
from .. import links
from .http import Response

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[A-Za-z0-9]{1,128}$")
OPTION_PREFIX = "vswitch."
OPTIONS = ("vswitch.bridge", "vswitch.tag")
GENERIC = "com.docker.network.generic"
PORTMAP = "com.docker.network.portmap"
DST_PREFIX = "eth"
SETTLE_SECONDS = 60.0           # how long to look for the TAP in the container after Join
PROTOCOLS = {6: "tcp", 17: "udp"}
TUNGETIFF = 0x800454D2

STATUS = {"EINVAL": 400, "ENOENT": 404, "EEXIST": 409, "EBUSY": 409}


class DriverError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad(message: str) -> DriverError:
    return DriverError(400, message)


def _field(req: dict[str, Any], key: str, required: bool = True) -> Any:
    v = req.get(key)
    if v is None and required:
        raise bad(f"missing {key}")
    return v


def _docker_id(req: dict[str, Any], key: str) -> str:
    v = _field(req, key)
    if not isinstance(v, str) or not ID_RE.match(v):
        raise bad(f"{key} must be an identifier (letters and digits)")
    return v


def _cidr(value: Any, what: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if not isinstance(value, str) or "/" not in value:
        raise bad(f"{what} must be an address with a prefix length, not {value!r}")
    try:
        return ipaddress.ip_interface(value)
    except ValueError:
        raise bad(f"{what} must be an address with a prefix length, not {value!r}") from None


def tap_name(fd: int) -> str:
    """The TAP's current name (wherever it lives now), asked of its fd."""
    ifr = fcntl.ioctl(fd, TUNGETIFF, b"\0" * 40)
    return ifr[:16].split(b"\0", 1)[0].decode()


def port_name(endpoint_id: str) -> str:
    return "vp" + endpoint_id[:12]


def default_bridge_name(network_id: str) -> str:
    return "vs-" + network_id[:12]


class DockerDriver:
    def __init__(self, sw: Switch, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.sw = sw
        self.loop = loop
        self.calls: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/Plugin.Activate": lambda r: {"Implements": ["NetworkDriver"]},
            "/NetworkDriver.GetCapabilities": lambda r: {"Scope": "local",
                                                         "ConnectivityScope": "local"},
            "/NetworkDriver.CreateNetwork": self.create_network,
            "/NetworkDriver.DeleteNetwork": self.delete_network,
            "/NetworkDriver.CreateEndpoint": self.create_endpoint,
            "/NetworkDriver.DeleteEndpoint": self.delete_endpoint,
            "/NetworkDriver.EndpointOperInfo": self.endpoint_oper_info,
            "/NetworkDriver.Join": self.join,
            "/NetworkDriver.Leave": self.leave,
            "/NetworkDriver.ProgramExternalConnectivity": self.program_external,
            "/NetworkDriver.RevokeExternalConnectivity": self.revoke_external,
            "/NetworkDriver.DiscoverNew": lambda r: {},
            "/NetworkDriver.DiscoverDelete": lambda r: {},
        }

    # --- HTTP entry ------------------------------------------------------------
    def handle(self, target: str, body: bytes) -> Response:
        call = self.calls.get(target)
        if call is None:
            if target in ("/NetworkDriver.AllocateNetwork", "/NetworkDriver.FreeNetwork"):
                return Response(400, {"Err": "vswitch is a local-scope driver (no swarm)"})
            return Response(404, {"Err": f"unknown plugin call {target[:100]!r}"})
        try:
            req = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return Response(400, {"Err": f"{target[1:]}: request body is not valid JSON"})
        if not isinstance(req, dict):
            return Response(400, {"Err": f"{target[1:]}: request body must be a JSON object"})
        try:
            result = call(req)
        except DriverError as e:
            log.info("docker %s refused: %s", target[1:], e.message)
            return Response(e.status, {"Err": e.message})
        except VswitchError as e:
            log.info("docker %s failed: %s", target[1:], e.message)
            return Response(STATUS.get(e.code, 500), {"Err": e.message})
        if target.startswith("/NetworkDriver.") and target not in (
                "/NetworkDriver.GetCapabilities", "/NetworkDriver.EndpointOperInfo"):
            log.info("docker %s: ok", target[1:])
        return Response(200, result)

    # --- lookups -------------------------------------------------------------------
    def bridge_of(self, network_id: str) -> str | None:
        for name, br in self.sw.config.bridges.items():
            if dict(br.external_ids).get("docker-network-id") == network_id:
                return name
        return None

    def _need_bridge(self, network_id: str) -> str:
        br = self.bridge_of(network_id)
        if br is None:
            raise DriverError(404, f"no vswitch network for Docker network {network_id[:12]}")
        return br

    def port_of(self, endpoint_id: str) -> tuple[str, str] | None:
        for bname, br in self.sw.config.bridges.items():
            for pname, p in br.ports.items():
                if dict(p.external_ids).get("docker-endpoint-id") == endpoint_id:
                    return bname, pname
        return None

    def _need_port(self, network_id: str, endpoint_id: str) -> tuple[str, str]:
        found = self.port_of(endpoint_id)
        if found is None or self.bridge_of(network_id) != found[0]:
            raise DriverError(404, f"no endpoint {endpoint_id[:12]} on Docker network "
                                   f"{network_id[:12]}")
        return found

    # --- networks --------------------------------------------------------------------
    def create_network(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = _docker_id(req, "NetworkID")
        options = _field(req, "Options", required=False) or {}
        if not isinstance(options, dict):
            raise bad("Options must be an object")
        generic = options.get(GENERIC) or {}
        if not isinstance(generic, dict):
            raise bad(f"{GENERIC} must be an object")
        for key in generic:
            if key.startswith(OPTION_PREFIX) and key not in OPTIONS:
                raise bad(f"unknown option {key!r} (vswitch options: {', '.join(OPTIONS)})")
        bridge = generic.get("vswitch.bridge") or default_bridge_name(nid)
        tag = generic.get("vswitch.tag")
        try:
            if tag is not None:
                tag = check_vlan(tag, (), "vswitch.tag")
        except ConfigError as e:
            raise bad(e.message) from None
        ext = {"docker-network-id": nid}
        settings: dict[str, Any] = {}
        for family, suffix in (("IPv4Data", ""), ("IPv6Data", "6")):
            data = _field(req, family, required=False) or []
            if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
                raise bad(f"{family} must be a list of objects")
            if len(data) > 1:
                raise bad(f"a vswitch network has one subnet per IP version; Docker gave "
                          f"{len(data)} {family} pools")
            if not data:
                continue
            pool = _cidr(data[0].get("Pool"), f"{family} Pool")
            if pool.version != (6 if suffix else 4):
                raise bad(f"{family} Pool {pool} is of the other IP version")
            settings["subnet" + suffix] = str(pool.network)
            if data[0].get("Gateway"):
                gw = _cidr(data[0]["Gateway"], f"{family} Gateway")
                if gw.ip not in pool.network:
                    raise bad(f"gateway {gw.ip} is outside the pool {pool.network}")
                settings["gateway" + suffix] = str(gw.ip)
                ext["docker-gateway" + suffix] = str(gw.ip)
        if options.get("com.docker.network.internal") is True:
            # --internal: the containers reach each other and nothing else, so
            # the bridge stays a plain layer-2 one (no gateway port, no route
            # out, no NAT); Docker still addresses the containers.
            settings = {}
            ext["docker-internal"] = "true"
        if tag is not None:
            ext["docker-tag"] = str(tag)
        existing = self.sw.config.bridges.get(bridge)
        if existing is not None:
            owner = dict(existing.external_ids).get("docker-network-id")
            if owner == nid:
                return {}              # asked again: it is there
            if owner is not None:
                raise DriverError(409, f"bridge {bridge} already carries Docker network "
                                       f"{owner[:12]}")
            # a bridge the user made: Docker's network joins it (and it stays
            # when the network goes) if the addresses agree
            for suffix in ("", "6"):
                have = getattr(existing, "subnet" + suffix)
                want = settings.get("subnet" + suffix)
                if have is None:
                    # a layer-2 bridge: nothing there holds Docker's gateway
                    ext.pop("docker-gateway" + suffix, None)
                elif want != have:
                    raise bad(f"bridge {bridge} has subnet{suffix} {have}, the Docker "
                              f"network {want or 'none'}: create it with --subnet {have}")
            if existing.subnet and ext.get("docker-gateway") != str(existing.gateway_address):
                raise bad(f"bridge {bridge}'s gateway is {existing.gateway_address}, the "
                          f"Docker network's {ext.get('docker-gateway')}: create it with "
                          f"--gateway {existing.gateway_address}")
            self.sw.set_bridge(bridge, {f"external_ids:{k}": v for k, v in ext.items()})
            return {}
        ext["docker-owned"] = "true"
        self.sw.add_bridge(bridge, {**settings, "external_ids": ext}, may_exist=False)
        return {}

    def delete_network(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = _docker_id(req, "NetworkID")
        bridge = self.bridge_of(nid)
        if bridge is None:
            return {}                  # already gone (deletes are idempotent)
        br = self.sw.config.bridges[bridge]
        if dict(br.external_ids).get("docker-owned") == "true":
            self.sw.del_bridge(bridge, if_exists=True)
            return {}
        for pname, p in list(br.ports.items()):
            if dict(p.external_ids).get("docker-network-id") == nid:
                self.sw.del_port(bridge, pname, if_exists=True)
        self.sw.set_bridge(bridge, {f"external_ids:{k}": "" for k in (
            "docker-network-id", "docker-gateway", "docker-gateway6", "docker-tag",
            "docker-internal")})
        return {}

    # --- endpoints ----------------------------------------------------------------------
    def create_endpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = _docker_id(req, "NetworkID")
        eid = _docker_id(req, "EndpointID")
        iface = _field(req, "Interface", required=False) or {}
        if not isinstance(iface, dict):
            raise bad("Interface must be an object")
        bridge = self._need_bridge(nid)
        ext = {"docker-network-id": nid, "docker-endpoint-id": eid}
        if iface.get("Address"):
            ext["docker-address"] = str(_cidr(iface["Address"], "Interface Address"))
        if iface.get("AddressIPv6"):
            ext["docker-address6"] = str(_cidr(iface["AddressIPv6"], "Interface AddressIPv6"))
        mac = iface.get("MacAddress") or None
        name = port_name(eid)
        found = self.port_of(eid)
        if found is not None:
            raise DriverError(409, f"endpoint {eid[:12]} exists already (port {found[1]})")
        settings: dict[str, Any] = {"mac": mac or derived_mac(self.sw.system_id, name),
                                    "external_ids": ext}
        tag = dict(self.sw.config.bridges[bridge].external_ids).get("docker-tag")
        if tag:
            settings["tag"] = tag
        # The TAP waits in the daemon's namespace under the port's name until
        # Join hands it to Docker; it carries no address here (Docker puts it
        # on inside the container).
        self.sw.add_port(bridge, name, settings, may_exist=False)
        if mac:
            return {}                  # Docker gave the interface: answer none back
        return {"Interface": {"MacAddress": settings["mac"]}}

    def delete_endpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        _docker_id(req, "NetworkID")
        eid = _docker_id(req, "EndpointID")
        found = self.port_of(eid)
        if found is not None:
            self.sw.del_port(found[0], found[1], if_exists=True)
        return {}

    def endpoint_oper_info(self, req: dict[str, Any]) -> dict[str, Any]:
        bridge, port = self._need_port(_docker_id(req, "NetworkID"),
                                       _docker_id(req, "EndpointID"))
        prt = self.sw.bridges[bridge].ports[port]
        state, why = self.sw.port_state(prt)
        value = {"bridge": bridge, "port": port, "state": state}
        if why:
            value["error"] = why
        return {"Value": value}

    def join(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = _docker_id(req, "NetworkID")
        eid = _docker_id(req, "EndpointID")
        sandbox = _field(req, "SandboxKey")
        try:
            sandbox = check_netns(sandbox, ())
        except ConfigError as e:
            raise bad(f"SandboxKey: {e.message}") from None
        if not sandbox.startswith("/"):
            raise bad("SandboxKey must be the path of a namespace")
        bridge, port = self._need_port(nid, eid)
        cfg = self.sw.config.bridges[bridge].ports[port]
        joined = dict(cfg.external_ids).get("docker-sandbox")
        if joined and joined != sandbox:
            raise DriverError(409, f"endpoint {eid[:12]} is already joined to {joined}")
        if cfg.netns is not None:
            raise DriverError(409, f"endpoint {eid[:12]}'s interface is already in {cfg.netns}")
        # A TAP that vanished (closed under us) is made again before it is handed over.
        self.sw.add_port(bridge, port, {}, may_exist=True)
        self.sw.set_port(port, {"external_ids:docker-sandbox": sandbox})
        resp: dict[str, Any] = {"InterfaceName": {"SrcName": port, "DstPrefix": DST_PREFIX}}
        br_ids = dict(self.sw.config.bridges[bridge].external_ids)
        if br_ids.get("docker-internal") != "true":
            if br_ids.get("docker-gateway"):
                resp["Gateway"] = br_ids["docker-gateway"]
            if br_ids.get("docker-gateway6"):
                resp["GatewayIPv6"] = br_ids["docker-gateway6"]
        if self.loop is not None:
            deadline = time.monotonic() + SETTLE_SECONDS
            self.loop.call_later(0.05, self._settle_later, eid, deadline)
        return resp

    def leave(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = _docker_id(req, "NetworkID")
        eid = _docker_id(req, "EndpointID")
        found = self.port_of(eid)
        if found is None:
            return {}
        bridge, port = self._need_port(nid, eid)
        cfg = self.sw.config.bridges[bridge].ports[port]
        ext = dict(cfg.external_ids)
        ext.pop("docker-sandbox", None)
        ext.pop("docker-publish", None)
        # Docker moves the TAP back under its SrcName (the port's name).
        new = replace(cfg, netns=None, ifname=None, ip=(), publish=(),
                      external_ids=tuple(sorted(ext.items())))
        self.sw.rehome_port(port, new, device=port, netns=None)
        return {}

    def program_external(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = _docker_id(req, "NetworkID")
        eid = _docker_id(req, "EndpointID")
        options = _field(req, "Options", required=False) or {}
        if not isinstance(options, dict):
            raise bad("Options must be an object")
        publish = self._publish_list(options.get(PORTMAP) or [])
        bridge, port = self._need_port(nid, eid)
        cfg = self.sw.config.bridges[bridge].ports[port]
        if not publish and not cfg.publish:
            return {}
        sandbox = dict(cfg.external_ids).get("docker-sandbox")
        if cfg.netns is not None or sandbox is None:
            self.sw.set_port(port, {"publish": publish or ""})
            return {}
        # Docker calls this before it has moved the TAP into the container:
        # the ports are published when the port's record says where it is
        # (settle), and checked now so that a conflict fails the container's
        # start instead of being found later.
        self.sw.network.prepare(self._joined(bridge, port, sandbox, publish), self.sw.config)
        self.sw.set_port(port, {"external_ids:docker-publish": ",".join(publish)})
        self.settle(eid)
        return {}

    def _joined(self, bridge: str, port: str, sandbox: str, publish: list[str]
                ) -> SwitchConfig:
        """The configuration as it will be once the endpoint's port is in the
        container (its name there is not known yet: eth0 stands in)."""
        br = self.sw.config.bridges[bridge]
        cfg = br.ports[port]
        ext = dict(cfg.external_ids)
        ips = tuple(a for a in (ext.get("docker-address"), ext.get("docker-address6")) if a)
        new = replace(cfg, netns=sandbox, ifname=DST_PREFIX + "0", ip=ips,
                      publish=tuple(publish))
        return self.sw.config.with_bridge(replace(br, ports={**br.ports, port: new}))

    def revoke_external(self, req: dict[str, Any]) -> dict[str, Any]:
        _docker_id(req, "NetworkID")
        eid = _docker_id(req, "EndpointID")
        found = self.port_of(eid)
        if found is None:
            return {}
        cfg = self.sw.config.bridges[found[0]].ports[found[1]]
        if cfg.publish or "docker-publish" in dict(cfg.external_ids):
            self.sw.set_port(found[1], {"publish": "", "external_ids:docker-publish": ""})
        return {}

    @staticmethod
    def _publish_list(portmap: Any) -> list[str]:
        """Docker's port bindings as vswitch's published ports
        ("HOSTPORT:PORT/tcp").  Docker itself publishes nothing for a remote
        driver; what it cannot express here is refused, not ignored."""
        if not isinstance(portmap, list):
            raise bad(f"{PORTMAP} must be a list")
        out: list[str] = []
        for b in portmap:
            if not isinstance(b, dict):
                raise bad(f"{PORTMAP} entries must be objects")
            proto = PROTOCOLS.get(b.get("Proto"))  # type: ignore[arg-type]
            if proto is None:
                raise bad(f"cannot publish protocol {b.get('Proto')!r} (tcp and udp only)")
            port, host, end = b.get("Port"), b.get("HostPort"), b.get("HostPortEnd")
            for what, v in (("Port", port), ("HostPort", host)):
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
                    raise bad(f"{PORTMAP} {what} must be a port number")
            if not port:
                raise bad(f"{PORTMAP}: container port 0")
            if not host:
                raise bad(f"publishing {port}/{proto} needs a host port "
                          f"(-p HOSTPORT:{port}); vswitch does not pick one")
            if end not in (None, 0, host):
                raise bad(f"host port ranges ({host}-{end}) are not supported")
            if b.get("HostIP") not in (None, "", "0.0.0.0", "::"):
                raise bad(f"publishing on one host address ({b.get('HostIP')}) is not "
                          "supported: vswitch publishes on all of them")
            item = f"{host}:{port}/{proto}"
            if item not in out:
                out.append(item)
        return out

    # --- the TAP's arrival in the container -------------------------------------------
    def _settle_later(self, eid: str, deadline: float) -> None:
        try:
            done = self.settle(eid)
        except VswitchError as e:
            log.warning("endpoint %s: %s", eid[:12], e.message)
            return
        if not done and time.monotonic() < deadline and self.loop is not None:
            self.loop.call_later(0.1, self._settle_later, eid, deadline)
        elif not done:
            log.warning("endpoint %s: its TAP never arrived in the container", eid[:12])

    def settle(self, eid: str) -> bool:
        """If Docker has moved and renamed the endpoint's TAP, rewrite the
        port's configuration to say where it is.  True when that is done (or
        there is nothing to do)."""
        found = self.port_of(eid)
        if found is None:
            return True
        bridge, port = found
        cfg = self.sw.config.bridges[bridge].ports[port]
        ext = dict(cfg.external_ids)
        sandbox = ext.get("docker-sandbox")
        prt = self.sw.bridges[bridge].ports[port]
        att = prt.attachment
        if sandbox is None or att is None or cfg.netns == sandbox:
            return True
        try:
            name = tap_name(att.fd)
        except OSError:
            return True            # the device is gone: nothing to record
        if name == port:
            return False           # not renamed yet (still ours, or on its way)
        info = links.get_link(name, sandbox)
        if info is None or info.mac.lower() != att.mac.lower():
            return False
        ips = tuple(a for a in (ext.get("docker-address"), ext.get("docker-address6")) if a)
        publish = tuple(p for p in ext.get("docker-publish", "").split(",") if p)
        new = replace(cfg, netns=sandbox, ifname=name, ip=ips, publish=publish)
        self.sw.rehome_port(port, new, device=name, netns=sandbox)
        log.info("endpoint %s: port %s is %s in %s", eid[:12], port, name, sandbox)
        return True
