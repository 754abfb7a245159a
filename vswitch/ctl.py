"""vswitchctl: the command-line client, in Open vSwitch's vocabulary.

    vswitchctl [--sock PATH] [--json] COMMAND [ARG...] [--OPTION...] [KEY=VALUE...]

Options may come before or after the command, as with ovs-vsctl
(`vswitchctl --may-exist add-br br0` and `vswitchctl add-br br0 --may-exist`
are the same).  On failure: a one-line error on stderr and exit status 1;
`br-exists` exits 2 when the bridge does not exist.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

from . import formatting
from .capture_client import run_capture
from .flowexport import text as flow_text
from .client import Client, default_sock
from .errors import VswitchError

USAGE = """\
usage: vswitchctl [--sock PATH] [--json] COMMAND [ARGS]

Bridges:
  add-br BR [--may-exist] [mac_aging=S] [mac_table_size=N]
         [subnet=CIDR] [gateway=IP] [masquerade=true|false] [subnet6=CIDR6] [gateway6=IP6]
  del-br BR [--if-exists]
  list-br
  br-exists BR                       exit status 2 if BR does not exist
  set bridge BR KEY=VALUE...         mac_aging, mac_table_size, subnet, gateway, subnet6,
                                     gateway6, masquerade, external_ids:K, flow export keys
                                     (below) (KEY= clears it)
  set port PORT KEY=VALUE...         ip (ip=A,B or ip=A ip=B), publish, tag, trunks,
                                     vlan_mode, external_ids:K (KEY= clears it)
Ports:
  add-port BR PORT [--may-exist] [type=tap|internal|system] [--netns NS|PATH]
           [--ifname IF] [--ip CIDR]... [--mac MAC] [mtu=N]
           [--publish HOSTPORT:PORT[/tcp|/udp]]...
           [tag=VLAN] [trunks=LIST] [vlan_mode=MODE] [offload=false]
  add-port BR PORT type=vxlan remote_ip=IP[,IP...] [local_ip=IP] [key=VNI]
           [dst_port=4789] [csum=true] [df_default=false] [ttl=64] [mtu=N]
           [udp_gso=false]
  set port PORT remote_ip=.. key=.. ...  a tunnel's settings, live
  del-port [BR] PORT [--if-exists]
  list-ports BR
Bonds:
  add-bond BR BOND IFACE IFACE... [--may-exist]
           [bond_mode=active-backup|balance-slb|balance-tcp]
           [bond_updelay=MS] [bond_downdelay=MS] [bond-primary=IFACE]
           [bond-detect-mode=carrier|miimon] [bond-miimon-interval=MS]
           [bond-rebalance-interval=MS] [tag=..] [trunks=..] [vlan_mode=..]
           [lacp=active|passive|off] [lacp-time=fast|slow] [lacp-fallback-ab=true|false]
           [lacp-system-id=MAC] [lacp-system-priority=N]   (balance-tcp needs lacp)
  add-bond-iface BOND IFACE
  del-bond-iface BOND IFACE
  set port BOND KEY=VALUE...         any bond_* or lacp* key, live
  bond/show [BOND] [--json]
  lacp/show [BOND] [--json]
  bond/set-active-member BOND IFACE
  bond/enable-member BOND IFACE
  bond/disable-member BOND IFACE
Configuration file:
  reload [FILE]                      apply FILE (default: vswitchd's --config) as one
                                     transaction: only differences change
Inspecting:
  show [--json]
  net/show BR [--json]               subnet, gateway, NAT, each port's address
  port/stats [BR] [--json]
Mirrors, capture, trace:
  add-mirror BR NAME [select_all=true] [select_src_port=P,..] [select_dst_port=P,..]
             [select_vlan=N,..] (output_port=P | output_vlan=N)
  del-mirror BR NAME [--if-exists]
  list-mirrors BR [--json]
  capture PORT [--count N] [--snaplen N]   pcap of both directions on stdout:
                                     vswitchctl capture h1 | tcpdump -r - -nn
  trace BR in_port=P dl_src=MAC dl_dst=MAC [dl_vlan=N] [dl_type=0xNNNN] [--json]
  upcall/show [--json]               the channel to the control plane: queued, dropped,
                                     captures running
Flow export (KEY= turns an export off or clears a key):
  set bridge BR netflow=HOST:PORT[,HOST:PORT] [netflow_active_timeout=S]
                [netflow_idle_timeout=S] [netflow_engine_id=N] [netflow_engine_type=N]
  set bridge BR ipfix=HOST:PORT [ipfix_sampling=N] [ipfix_obs_domain_id=N]
                [ipfix_cache_active_timeout=S] [ipfix_cache_idle_timeout=S]
                [ipfix_cache_max_flows=N] [ipfix_template_interval=S]
  set bridge BR sflow=HOST:PORT [sflow_sampling=N] [sflow_polling=S] [sflow_header=BYTES]
                [sflow_agent=IP]
  flow/stats BR [--json]             flow caches and collectors of BR
MAC learning:
  fdb/show BR [--json]
  fdb/flush [BR]
  fdb/add BR PORT VLAN MAC           a static entry (kept across restarts)
  fdb/del BR VLAN MAC
  fdb/stats-show BR [--json]
Options:
  --sock PATH   control socket (default $VSWITCH_SOCK or /run/vswitch/vswitchd.sock)
  --json        print the daemon's reply as JSON
"""

# options that take a value, and the commands that accept them
VALUE_OPTIONS = {"--sock", "--netns", "--ifname", "--ip", "--mac", "--mtu", "--timeout",
                 "--count", "--snaplen", "--publish"}
FLAG_OPTIONS = {"--json", "--may-exist", "--if-exists", "--help", "-h"}
PORT_OPTIONS = {"--netns": "netns", "--ifname": "ifname", "--mac": "mac", "--mtu": "mtu"}
# settings that may be given more than once, making a list
REPEATABLE = {"ip"}


class UsageError(Exception):
    pass


@dataclass
class Invocation:
    command: str = ""
    args: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    options: dict[str, str] = field(default_factory=dict)
    ips: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)


def parse_argv(argv: list[str]) -> Invocation:
    inv = Invocation()
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok.startswith("-") and tok != "-":
            name, eq, value = tok.partition("=")
            if name in FLAG_OPTIONS:
                if eq:
                    raise UsageError(f"option {name} takes no value")
                inv.flags.add(name)
                continue
            if name not in VALUE_OPTIONS:
                raise UsageError(f"unknown option {name}")
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"option {name} needs a value")
                value = argv[i]
                i += 1
            if name == "--ip":
                inv.ips.append(value)
            elif name == "--publish":
                inv.publish.append(value)
            else:
                inv.options[name] = value
            continue
        if not inv.command:
            inv.command = tok
        elif "=" in tok and not tok.startswith("="):
            key, _, value = tok.partition("=")
            if key in REPEATABLE and key in inv.settings:
                # ip=A ip=B: a list, as --ip A --ip B
                prev = inv.settings[key]
                inv.settings[key] = (prev if isinstance(prev, list) else [prev]) + [value]
                continue
            if key in inv.settings:
                raise UsageError(f"{key} given twice")
            inv.settings[key] = value
        else:
            inv.args.append(tok)
    return inv


def _nargs(inv: Invocation, lo: int, hi: int | None = None) -> list[str]:
    hi = lo if hi is None else hi
    if not lo <= len(inv.args) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise UsageError(f"{inv.command} takes {want} argument(s), got {len(inv.args)}")
    return inv.args


def _no_settings(inv: Invocation) -> None:
    if inv.settings:
        raise UsageError(f"{inv.command} takes no KEY=VALUE settings")


def _allow_options(inv: Invocation, allowed: set[str]) -> None:
    for opt in (list(inv.options) + (["--ip"] if inv.ips else [])
                + (["--publish"] if inv.publish else [])):
        if opt not in allowed and opt not in ("--sock", "--timeout"):
            raise UsageError(f"{inv.command} does not take {opt}")
    for flag in inv.flags:
        if flag not in allowed and flag not in ("--json", "--help", "-h"):
            raise UsageError(f"{inv.command} does not take {flag}")


def _coerce(settings: dict[str, str]) -> dict[str, Any]:
    """Numbers stay strings: the daemon checks and converts every value."""
    return dict(settings)


def build_request(inv: Invocation) -> tuple[str, dict[str, Any]]:
    c = inv.command
    if c == "add-br":
        _allow_options(inv, {"--may-exist"})
        (br,) = _nargs(inv, 1)
        return c, {"bridge": br, "may_exist": "--may-exist" in inv.flags,
                   "settings": _coerce(inv.settings)}
    if c == "del-br":
        _allow_options(inv, {"--if-exists"})
        _no_settings(inv)
        (br,) = _nargs(inv, 1)
        return c, {"bridge": br, "if_exists": "--if-exists" in inv.flags}
    if c in ("list-br",):
        _allow_options(inv, set())
        _no_settings(inv)
        _nargs(inv, 0)
        return c, {}
    if c in ("br-exists", "list-ports", "fdb/show", "fdb/stats-show", "net/show",
             "flow/stats"):
        _allow_options(inv, set())
        _no_settings(inv)
        (br,) = _nargs(inv, 1)
        return c, {"bridge": br}
    if c == "add-port":
        _allow_options(inv, {"--may-exist", "--netns", "--ifname", "--ip", "--mac", "--mtu",
                             "--publish"})
        br, port = _nargs(inv, 2)
        settings = _coerce(inv.settings)
        for opt, key in PORT_OPTIONS.items():
            if opt in inv.options:
                if key in settings:
                    raise UsageError(f"{key} given twice")
                settings[key] = inv.options[opt]
        if inv.ips:
            if "ip" in settings:
                raise UsageError("ip given twice")
            settings["ip"] = inv.ips
        if inv.publish:
            if "publish" in settings:
                raise UsageError("publish given twice")
            settings["publish"] = inv.publish
        return c, {"bridge": br, "port": port, "may_exist": "--may-exist" in inv.flags,
                   "settings": settings}
    if c == "del-port":
        _allow_options(inv, {"--if-exists"})
        _no_settings(inv)
        args = _nargs(inv, 1, 2)
        params: dict[str, Any] = {"port": args[-1], "if_exists": "--if-exists" in inv.flags}
        if len(args) == 2:
            params["bridge"] = args[0]
        return c, params
    if c in ("show", "upcall/show"):
        _allow_options(inv, set())
        _no_settings(inv)
        _nargs(inv, 0)
        return c, {}
    if c in ("fdb/flush", "port/stats"):
        _allow_options(inv, set())
        _no_settings(inv)
        args = _nargs(inv, 0, 1)
        return c, ({"bridge": args[0]} if args else {})
    if c == "fdb/add":
        _allow_options(inv, set())
        _no_settings(inv)
        br, port, vlan, mac = _nargs(inv, 4)
        return c, {"bridge": br, "port": port, "vlan": vlan, "mac": mac}
    if c == "fdb/del":
        _allow_options(inv, set())
        _no_settings(inv)
        br, vlan, mac = _nargs(inv, 3)
        return c, {"bridge": br, "vlan": vlan, "mac": mac}
    if c == "set":
        _allow_options(inv, set())
        if len(inv.args) > 2:
            raise UsageError(f"set {inv.args[0]} {inv.args[1]}: expected KEY=VALUE, "
                             f"got {inv.args[2]!r}")
        table, record = _nargs(inv, 2)
        if not inv.settings:
            raise UsageError("set needs at least one KEY=VALUE")
        return c, {"table": table, "record": record, "settings": _coerce(inv.settings)}
    if c == "add-bond":
        _allow_options(inv, {"--may-exist"})
        if len(inv.args) < 4:
            raise UsageError("add-bond takes BR BOND and at least two interfaces")
        br, bond, *members = inv.args
        return c, {"bridge": br, "port": bond, "interfaces": members,
                   "may_exist": "--may-exist" in inv.flags, "settings": _coerce(inv.settings)}
    if c in ("add-bond-iface", "del-bond-iface", "bond/set-active-member",
             "bond/enable-member", "bond/disable-member"):
        _allow_options(inv, set())
        _no_settings(inv)
        bond, member = _nargs(inv, 2)
        return c, {"bond": bond, "member": member}
    if c in ("bond/show", "lacp/show"):
        _allow_options(inv, set())
        _no_settings(inv)
        args = _nargs(inv, 0, 1)
        return c, ({"bond": args[0]} if args else {})
    if c == "reload":
        _allow_options(inv, set())
        _no_settings(inv)
        args = _nargs(inv, 0, 1)
        # the daemon reads the file: give it a path that does not depend on our cwd
        return c, ({"file": str(Path(args[0]).resolve())} if args else {})
    if c == "add-mirror":
        _allow_options(inv, set())
        br, mirror = _nargs(inv, 2)
        return c, {"bridge": br, "mirror": mirror, "settings": _coerce(inv.settings)}
    if c == "del-mirror":
        _allow_options(inv, {"--if-exists"})
        _no_settings(inv)
        br, mirror = _nargs(inv, 2)
        return c, {"bridge": br, "mirror": mirror, "if_exists": "--if-exists" in inv.flags}
    if c == "list-mirrors":
        _allow_options(inv, set())
        _no_settings(inv)
        (br,) = _nargs(inv, 1)
        return c, {"bridge": br}
    if c == "trace":
        _allow_options(inv, set())
        (br,) = _nargs(inv, 1)
        return c, {"bridge": br, "flow": _coerce(inv.settings)}
    if c == "capture":
        _allow_options(inv, {"--count", "--snaplen"})
        _no_settings(inv)
        (port,) = _nargs(inv, 1)
        params = {"port": port}
        for opt in ("--count", "--snaplen"):
            if opt in inv.options:
                params[opt[2:]] = inv.options[opt]
        return c, params
    if c == "version":
        return c, {}
    if not c:
        raise UsageError("missing command")
    raise UsageError(f"unknown command {c!r}")


PRINTERS: dict[str, Callable[[Any, dict[str, Any]], str]] = {
    "show": formatting.show,
    "fdb/show": formatting.fdb_show,
    "net/show": formatting.net_show,
    "fdb/stats-show": formatting.fdb_stats,
    "port/stats": formatting.port_stats,
    "list-br": formatting.lines,
    "list-ports": formatting.lines,
    "fdb/flush": formatting.flushed,
    "bond/show": formatting.bond_show,
    "lacp/show": formatting.lacp_show,
    "version": lambda r, p: str(r),
    "reload": formatting.reloaded,
    "list-mirrors": formatting.list_mirrors,
    "upcall/show": formatting.upcall_show,
    "trace": formatting.trace,
    "flow/stats": flow_text.flow_stats,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        inv = parse_argv(argv)
        if "--help" in inv.flags or "-h" in inv.flags:
            sys.stdout.write(USAGE)
            return 0
        method, params = build_request(inv)
    except UsageError as e:
        print(f"vswitchctl: {e} (see vswitchctl --help)", file=sys.stderr)
        return 1
    timeout = float(inv.options.get("--timeout", "60"))
    if method == "capture":
        return run_capture(inv.options.get("--sock") or default_sock(), params, timeout)
    try:
        with Client(inv.options.get("--sock") or default_sock(), timeout=timeout) as client:
            result = client.call(method, **params)
    except VswitchError as e:
        print(f"vswitchctl: {e.message}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"vswitchctl: {e}", file=sys.stderr)
        return 1
    if method == "br-exists":
        return 0 if result else 2
    if "--json" in inv.flags:
        print(json.dumps(result, indent=2, sort_keys=True))
    elif method in PRINTERS:
        text = PRINTERS[method](result, params)
        if text:
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
