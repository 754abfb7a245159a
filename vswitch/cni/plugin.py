"""vswitch-cni: a CNI plugin (spec 1.0.0, also 0.3.x and 0.4.0 results).

Installed into a CNI plugin directory under the name `vswitch` (a link to
this console script), it is run by the container runtime with the
operation in CNI_COMMAND, the container in CNI_CONTAINERID / CNI_NETNS /
CNI_IFNAME and the network configuration on stdin:

    {"cniVersion": "1.0.0", "name": "net1", "type": "vswitch", "bridge": "br0",
     "socket": "/run/vswitch/vswitchd.sock", "ipam": {...}}

It only talks to vswitchd over the control socket: ADD is `add-port BR P
--netns CNI_NETNS --ifname CNI_IFNAME` (so the container's interface is a
port like any other, in `show` and `net/show`, persisted and restored),
DEL is `del-port --if-exists`.  The port's name is derived from
(CNI_CONTAINERID, CNI_IFNAME), the pair the spec makes unique, and the
pair itself is kept in the port's external_ids.

Addresses: without an `ipam` section the bridge's own allocation hands one
out (a bridge with a subnet); with one, the IPAM plugin named there (for
example host-local from containernetworking-plugins) is run as the spec
says (same environment, same configuration) and its address given to the
port.  The `portMappings` capability becomes the port's published ports.

Errors are CNI error objects on stdout with a non-zero exit status, with
the spec's well-known codes where one applies and 100+ for our own.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
import sys
from typing import Any, NoReturn

from ..client import Client, default_sock
from ..errors import VswitchError

SPEC_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
CHECK_VERSIONS = ("0.4.0", "1.0.0")          # CHECK appeared in 0.4.0

# Well-known error codes (CNI spec 1.0.0, "Error")
E_INCOMPATIBLE_VERSION = 1
E_UNSUPPORTED_FIELD = 2
E_UNKNOWN_CONTAINER = 3
E_INVALID_ENV = 4
E_IO = 5
E_DECODE = 6
E_INVALID_CONFIG = 7
E_TRY_AGAIN = 11
# ours (100+)
E_SWITCH = 100            # vswitchd refused the change; msg says why
E_INTERFACE_EXISTS = 101  # ADD for a (container, ifname) that already has its interface
E_CHECK_FAILED = 102      # CHECK: the container's network is not what ADD made
E_IPAM = 103              # the IPAM plugin failed without a CNI error of its own

IPAM_TIMEOUT = 60


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details


def fail(code: int, msg: str, details: str = "") -> NoReturn:
    raise CniError(code, msg, details)


def port_name(container_id: str, ifname: str) -> str:
    """The port of a (container, interface): the spec makes the pair unique."""
    return "vc" + hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()[:12]


# --- input ----------------------------------------------------------------------------

class Invocation:
    def __init__(self, env: dict[str, str], stdin: str) -> None:
        self.command = env.get("CNI_COMMAND", "")
        if self.command not in ("ADD", "DEL", "CHECK", "VERSION"):
            fail(E_INVALID_ENV, f"CNI_COMMAND must be ADD, DEL, CHECK or VERSION, not "
                                f"{self.command!r}")
        self.env = env
        self.raw_conf = stdin
        self.conf: dict[str, Any] = {}
        self.version = SPEC_VERSION
        if self.command == "VERSION":
            return
        try:
            conf = json.loads(stdin)
        except ValueError as e:
            fail(E_DECODE, "network configuration is not valid JSON", str(e))
        if not isinstance(conf, dict):
            fail(E_DECODE, "network configuration must be a JSON object")
        self.conf = conf
        version = conf.get("cniVersion")
        if not isinstance(version, str):
            fail(E_INVALID_CONFIG, "network configuration has no cniVersion")
        if version not in SUPPORTED_VERSIONS:
            fail(E_INCOMPATIBLE_VERSION, f"CNI version {version} is not supported",
                 f"supported versions: {', '.join(SUPPORTED_VERSIONS)}")
        self.version = version
        self._check_conf()
        self.container_id = self._env("CNI_CONTAINERID")
        self.ifname = self._env("CNI_IFNAME")
        if len(self.ifname) > 15 or "/" in self.ifname or not self.ifname.isprintable():
            fail(E_INVALID_ENV, f"CNI_IFNAME {self.ifname!r} is not a usable interface name")
        self.netns = env.get("CNI_NETNS", "")
        if self.command != "DEL":
            self.netns = self._env("CNI_NETNS")
        if self.netns and not self.netns.startswith("/"):
            fail(E_INVALID_ENV, f"CNI_NETNS must be an absolute path, not {self.netns!r}")

    def _env(self, key: str) -> str:
        value = self.env.get(key, "")
        if not value:
            fail(E_INVALID_ENV, f"{key} is not set")
        return value

    def _check_conf(self) -> None:
        c = self.conf
        for key in ("name", "type", "bridge"):
            if not isinstance(c.get(key), str) or not c[key]:
                fail(E_INVALID_CONFIG, f"network configuration needs \"{key}\" (a string)")
        for key, kind in (("socket", str), ("ipam", dict), ("runtimeConfig", dict),
                          ("dns", dict), ("args", dict), ("prevResult", dict)):
            if key in c and not isinstance(c[key], kind):
                what = "string" if kind is str else "JSON object"
                fail(E_INVALID_CONFIG, f"\"{key}\" must be a {what}")
        if "ipam" in c and c["ipam"] and not isinstance(c["ipam"].get("type"), str):
            fail(E_INVALID_CONFIG, "\"ipam\" needs a \"type\"")
        for key in ("ipMasq", "hairpinMode", "isGateway", "isDefaultGateway"):
            if c.get(key):
                fail(E_UNSUPPORTED_FIELD, f"\"{key}\" is not supported by vswitch (the "
                                          "bridge's subnet, gateway and masquerade settings "
                                          "do this)")

    @property
    def bridge(self) -> str:
        return str(self.conf["bridge"])

    @property
    def socket(self) -> str:
        return str(self.conf.get("socket") or default_sock())

    @property
    def port(self) -> str:
        return port_name(self.container_id, self.ifname)


# --- vswitchd --------------------------------------------------------------------------

def connect(inv: Invocation) -> Client:
    try:
        return Client(inv.socket, timeout=120)
    except VswitchError as e:
        fail(E_TRY_AGAIN, "vswitchd is not reachable", e.message)


def call(client: Client, method: str, **params: Any) -> Any:
    try:
        return client.call(method, **params)
    except VswitchError as e:
        fail(E_SWITCH, e.message)
    except OSError as e:
        fail(E_IO, f"control socket: {e}")


def find_port(client: Client, port: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(bridge, port) as `show` has them; the bridge with its gateway in
    force (net/show's: the subnet's first host when none is configured)."""
    for br in call(client, "show")["bridges"]:
        for p in br["ports"]:
            if p["name"] == port:
                br = dict(br)
                if br.get("subnet"):
                    br["gateway"] = call(client, "net/show", bridge=br["name"]).get("gateway")
                return br, p
    return None


# --- IPAM delegation -------------------------------------------------------------------

def run_ipam(inv: Invocation, command: str) -> dict[str, Any] | None:
    """Run the IPAM plugin as the spec says: found in CNI_PATH, the same
    environment (but this CNI_COMMAND), the same configuration on stdin."""
    ipam = inv.conf.get("ipam") or {}
    if not ipam:
        return None
    kind = ipam["type"]
    if "/" in kind or kind in ("", ".", ".."):
        fail(E_INVALID_CONFIG, f"ipam type {kind!r} is not a plugin name")
    exe = None
    for d in inv.env.get("CNI_PATH", "").split(":"):
        if d and os.access(os.path.join(d, kind), os.X_OK):
            exe = os.path.join(d, kind)
            break
    if exe is None:
        fail(E_INVALID_CONFIG, f"IPAM plugin {kind!r} not found in CNI_PATH "
                               f"({inv.env.get('CNI_PATH', '')})")
    env = dict(inv.env, CNI_COMMAND=command)
    try:
        r = subprocess.run([exe], input=inv.raw_conf, env=env, capture_output=True, text=True,
                           timeout=IPAM_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        fail(E_IPAM, f"IPAM plugin {kind} could not run", str(e))
    out: Any = None
    if r.stdout.strip():
        try:
            out = json.loads(r.stdout)
        except ValueError:
            out = None
    if r.returncode != 0:
        if isinstance(out, dict) and isinstance(out.get("code"), int):
            fail(out["code"], f"IPAM plugin {kind}: {out.get('msg', '')}",
                 str(out.get("details", "")))
        fail(E_IPAM, f"IPAM plugin {kind} failed (exit {r.returncode})", r.stderr.strip())
    if command == "ADD":
        if not isinstance(out, dict):
            fail(E_IPAM, f"IPAM plugin {kind} gave no result")
        return out
    return None


# --- results ---------------------------------------------------------------------------

def _ip_version(cidr: str) -> str:
    return "4" if ipaddress.ip_interface(cidr).version == 4 else "6"


def build_result(inv: Invocation, port: dict[str, Any], bridge: dict[str, Any],
                 ipam: dict[str, Any] | None) -> dict[str, Any]:
    prev = inv.conf.get("prevResult") or {}
    interfaces = list(prev.get("interfaces") or [])
    index = len(interfaces)
    interfaces.append({"name": inv.ifname, "mac": port.get("device_mac") or port.get("mac"),
                       "sandbox": inv.netns})
    ips = list(prev.get("ips") or [])
    routes = list(prev.get("routes") or [])
    gateway = bridge.get("gateway")
    if ipam is not None:
        gateways = {i["address"]: i.get("gateway") for i in ipam.get("ips", [])
                    if isinstance(i, dict) and "address" in i}
    else:
        gateways = {}
    for cidr in port.get("ip", []):
        entry: dict[str, Any] = {"address": cidr, "interface": index}
        gw = gateways.get(cidr) or (gateway if gateway and _ip_version(cidr) == "4" else None)
        if gw:
            entry["gateway"] = gw
        ips.append(entry)
    if ipam is not None:
        routes += [r for r in ipam.get("routes", []) if isinstance(r, dict)]
    elif gateway:
        routes.append({"dst": "0.0.0.0/0", "gw": gateway})
    result: dict[str, Any] = {"cniVersion": inv.version, "interfaces": interfaces, "ips": ips}
    if routes:
        result["routes"] = routes
    dns = (ipam or {}).get("dns") or inv.conf.get("dns") or prev.get("dns")
    if dns:
        result["dns"] = dns
    if inv.version != "1.0.0":      # before 1.0.0 every ip names its version
        for ip in result["ips"]:
            ip.setdefault("version", _ip_version(ip["address"]))
    return result


def publish_list(inv: Invocation) -> list[str]:
    """The portMappings capability as published ports ("HOSTPORT:PORT/PROTO")."""
    mappings = (inv.conf.get("runtimeConfig") or {}).get("portMappings") or []
    if not isinstance(mappings, list):
        fail(E_INVALID_CONFIG, "runtimeConfig.portMappings must be a list")
    out = []
    for m in mappings:
        if not isinstance(m, dict):
            fail(E_INVALID_CONFIG, "runtimeConfig.portMappings entries must be objects")
        host, cont = m.get("hostPort"), m.get("containerPort")
        proto = str(m.get("protocol") or "tcp").lower()
        for what, v in (("hostPort", host), ("containerPort", cont)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
                fail(E_INVALID_CONFIG, f"portMappings {what} must be a port number")
        if proto not in ("tcp", "udp"):
            fail(E_INVALID_CONFIG, f"cannot publish protocol {proto!r} (tcp and udp only)")
        if m.get("hostIP") not in (None, "", "0.0.0.0", "::"):
            fail(E_UNSUPPORTED_FIELD, f"publishing on one host address ({m['hostIP']}) is "
                                      "not supported: vswitch publishes on all of them")
        item = f"{host}:{cont}/{proto}"
        if item not in out:
            out.append(item)
    return out


# --- commands --------------------------------------------------------------------------

def cmd_add(inv: Invocation) -> dict[str, Any]:
    publish = publish_list(inv)
    if not os.path.exists(inv.netns):
        fail(E_UNKNOWN_CONTAINER, f"network namespace {inv.netns} does not exist")
    with connect(inv) as client:
        if not call(client, "br-exists", bridge=inv.bridge):
            fail(E_INVALID_CONFIG, f"vswitch has no bridge {inv.bridge}")
        if find_port(client, inv.port) is not None:
            # checked before IPAM runs, so the first ADD's address stays its own
            fail(E_INTERFACE_EXISTS, f"container {inv.container_id[:12]} already has "
                                     f"interface {inv.ifname} on this network (port "
                                     f"{inv.port}); DEL it first")
        ipam = run_ipam(inv, "ADD")
        settings: dict[str, Any] = {
            "netns": inv.netns, "ifname": inv.ifname,
            "external_ids": {"cni-container-id": inv.container_id, "cni-ifname": inv.ifname,
                             "cni-network": str(inv.conf["name"])}}
        if ipam is not None:
            addrs = [i["address"] for i in ipam.get("ips", [])
                     if isinstance(i, dict) and isinstance(i.get("address"), str)]
            if addrs:
                settings["ip"] = addrs
        if publish:
            settings["publish"] = publish
        try:
            call(client, "add-port", bridge=inv.bridge, port=inv.port, settings=settings,
                 may_exist=False)
            found = find_port(client, inv.port)
            if found is None:
                fail(E_SWITCH, f"port {inv.port} vanished right after it was added")
            bridge, port = found
            if ipam is not None:
                add_routes(inv, ipam, bridge)
        except BaseException:
            try:
                call(client, "del-port", port=inv.port, if_exists=True)
            except CniError:
                pass
            if ipam is not None:
                try:
                    run_ipam(inv, "DEL")
                except CniError:
                    pass
            raise
        return build_result(inv, port, bridge, ipam)


def add_routes(inv: Invocation, ipam: dict[str, Any], bridge: dict[str, Any]) -> None:
    """Routes the IPAM plugin asked for, other than the default route the
    bridge's gateway already gives, in the container's namespace."""
    routes = [r for r in ipam.get("routes", []) if isinstance(r, dict) and r.get("dst")]
    default_gw = {i.get("gateway") for i in ipam.get("ips", []) if isinstance(i, dict)}
    todo = []
    for r in routes:
        dst = ipaddress.ip_network(r["dst"], strict=False)
        gw = r.get("gw") or next((g for g in default_gw if g and ipaddress.ip_address(g).version
                                  == dst.version), None)
        if dst.prefixlen == 0 and bridge.get("gateway") and gw == bridge.get("gateway"):
            continue           # vswitch itself keeps this one
        todo.append((str(dst), gw))
    if not todo:
        return
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    try:
        with IPRoute(netns=inv.netns, flags=0) as ipr:
            idx = ipr.link_lookup(ifname=inv.ifname)
            if not idx:
                fail(E_SWITCH, f"no interface {inv.ifname} in {inv.netns}")
            for dst_s, gw in todo:
                kw: dict[str, Any] = {"dst": dst_s, "oif": idx[0]}
                if gw:
                    kw["gateway"] = gw
                ipr.route("replace", **kw)
    except NetlinkError as e:
        fail(E_IO, f"cannot add IPAM routes in {inv.netns}", str(e))


def cmd_del(inv: Invocation) -> None:
    """Idempotent: a port that is not there (never added, deleted before,
    a namespace already gone) is not an error."""
    with connect(inv) as client:
        call(client, "del-port", port=inv.port, if_exists=True)
    run_ipam(inv, "DEL")


def cmd_check(inv: Invocation) -> None:
    if inv.version not in CHECK_VERSIONS:
        fail(E_INCOMPATIBLE_VERSION, f"CHECK is not defined for CNI version {inv.version}")
    prev = inv.conf.get("prevResult")
    if not prev:
        fail(E_INVALID_CONFIG, "CHECK needs prevResult (the result of ADD)")
    if not os.path.exists(inv.netns):
        fail(E_UNKNOWN_CONTAINER, f"network namespace {inv.netns} does not exist")
    run_ipam(inv, "CHECK")
    with connect(inv) as client:
        found = find_port(client, inv.port)
    if found is None:
        fail(E_CHECK_FAILED, f"no port {inv.port} for container {inv.container_id[:12]} "
                             f"interface {inv.ifname}")
    _bridge, port = found
    if port.get("state") != "up":
        fail(E_CHECK_FAILED, f"port {inv.port} is {port.get('state')}: {port.get('error', '')}")
    if port.get("netns") != inv.netns or port.get("device") != inv.ifname:
        fail(E_CHECK_FAILED, f"port {inv.port} is {port.get('device')} in {port.get('netns')}, "
                             f"not {inv.ifname} in {inv.netns}")
    ours = [i for i in prev.get("interfaces", []) if isinstance(i, dict)
            and i.get("name") == inv.ifname and i.get("sandbox") == inv.netns]
    if not ours:
        fail(E_CHECK_FAILED, f"prevResult has no interface {inv.ifname} in {inv.netns}")
    if ours[0].get("mac") and str(ours[0]["mac"]).lower() != str(port.get("device_mac")).lower():
        fail(E_CHECK_FAILED, f"{inv.ifname} has MAC {port.get('device_mac')}, "
                             f"prevResult says {ours[0]['mac']}")
    want = {i["address"] for i in prev.get("ips", []) if isinstance(i, dict) and "address" in i}
    have = set(port.get("ip", []))
    if not want <= have:
        fail(E_CHECK_FAILED, f"{inv.ifname} lacks {', '.join(sorted(want - have))}")
    actual = addresses_in(inv.netns, inv.ifname)
    missing = {a for a in want if a not in actual}
    if missing:
        fail(E_CHECK_FAILED, f"{inv.ifname} in {inv.netns} lacks {', '.join(sorted(missing))}")


def addresses_in(netns: str, ifname: str) -> set[str]:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    try:
        with IPRoute(netns=netns, flags=0) as ipr:
            idx = ipr.link_lookup(ifname=ifname)
            if not idx:
                return set()
            return {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                    for a in ipr.get_addr(index=idx[0])}
    except (NetlinkError, OSError) as e:
        fail(E_IO, f"cannot read addresses in {netns}", str(e))


def version_info() -> dict[str, Any]:
    return {"cniVersion": SPEC_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}


def run(env: dict[str, str], stdin: str) -> tuple[int, dict[str, Any] | None]:
    """(exit status, JSON for stdout)."""
    inv: Invocation | None = None
    try:
        inv = Invocation(env, stdin)
        if inv.command == "VERSION":
            return 0, version_info()
        if inv.command == "ADD":
            return 0, cmd_add(inv)
        if inv.command == "DEL":
            cmd_del(inv)
        else:
            cmd_check(inv)
        return 0, None
    except CniError as e:
        err: dict[str, Any] = {"cniVersion": inv.version if inv else SPEC_VERSION,
                               "code": e.code, "msg": e.msg}
        if e.details:
            err["details"] = e.details
        return 1, err


def main() -> int:
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    status, out = run(dict(os.environ), stdin)
    if out is not None:
        sys.stdout.write(json.dumps(out) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
