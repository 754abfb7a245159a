"""The daemon's nftables table, built from the configuration as JSON and
applied through nft's JSON interface (`nft -j -f -`) in one transaction.

One table, `inet vswitch`, belongs to the daemon; nothing else is ever
touched.  The builder (ruleset) is a pure function of the configuration,
so the table is always exactly what the configuration says: every change
replaces the whole table in one batch (add table, delete table, add table
and its chains and rules -- nft applies a batch atomically, and adding
first makes the delete succeed when there was no table), a start rebuilds
it, and when no bridge needs it the batch is just add + delete.  Replacing
the rules leaves conntrack alone: connections already NATed keep their
bindings.

For each bridge with a subnet (Docker's iptables rules, in nftables words):
  raw_prerouting  iifname BR ip daddr 127.0.0.0/8 drop
                  route_localnet is on for BR (so 127.0.0.1:HOSTPORT can be
                  DNATed to a namespace); this keeps the namespaces from
                  reaching the host's loopback services through it.
  prerouting      fib daddr type local tcp dport HOSTPORT dnat ip to ADDR:PORT
  output          the same, for connections made on the host itself
  postrouting     ip saddr SUBNET oifname != BR masquerade    (masquerade=true)
                  iifname BR oifname BR ct status dnat masquerade
                      hairpin: a namespace reaching a published port through
                      the host must get the answer through the host too
                  oifname BR ip saddr 127.0.0.0/8 masquerade
                      127.0.0.1:HOSTPORT from the host: give the namespace
                      an address it can answer
"""
from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from .errors import VswitchError

if TYPE_CHECKING:
    from .config import SwitchConfig

FAMILY = "inet"
TABLE = "vswitch"
NFT = "nft"
# nft 1.0.6 refuses the symbolic priorities of nat chains on the output
# hook (KERNEL-NOTES.md): numbers everywhere.
CHAINS = (  # name, type, hook, priority
    ("raw_prerouting", "filter", "prerouting", -300),
    ("prerouting", "nat", "prerouting", -100),
    ("output", "nat", "output", -100),
    ("postrouting", "nat", "postrouting", 100),
)
Json = dict[str, Any]


def _table() -> Json:
    return {"family": FAMILY, "name": TABLE}


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


def _prefix(net: ipaddress.IPv4Network) -> Json:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _rule(chain: str, comment: str, *expr: Json) -> Json:
    return {"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain,
                             "comment": comment, "expr": list(expr)}}}


LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def rules(cfg: "SwitchConfig") -> list[Json]:
    """The rules the configuration asks for (no table, no chains)."""
    from .netconfig import Published, port_address
    out: list[Json] = []
    for br in sorted(cfg.bridges.values(), key=lambda b: b.name):
        if not br.subnet:
            continue
        net = ipaddress.IPv4Network(br.subnet)
        out.append(_rule("raw_prerouting", f"{br.name}: no way in to the host's loopback",
                         _match(_meta("iifname"), br.name),
                         _match(_payload("ip", "daddr"), _prefix(LOOPBACK)),
                         {"counter": None}, {"drop": None}))
        for port in br.ports.values():
            addr = port_address(port)
            if addr is None:
                continue
            for text in port.publish:
                pub = Published.parse(text)
                for chain in ("prerouting", "output"):
                    out.append(_rule(
                        chain, f"{br.name}: port {port.name} publishes {pub}",
                        _match(_meta("nfproto"), "ipv4"),
                        _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local"),
                        _match(_payload(pub.proto, "dport"), pub.host_port),
                        {"dnat": {"family": "ip", "addr": str(addr), "port": pub.port}}))
        if br.masquerading:
            out.append(_rule("postrouting", f"{br.name}: {net} to the outside",
                             _match(_payload("ip", "saddr"), _prefix(net)),
                             _match(_meta("oifname"), br.name, "!="),
                             {"masquerade": None}))
        out.append(_rule("postrouting", f"{br.name}: hairpin to published ports",
                         _match(_meta("iifname"), br.name),
                         _match(_meta("oifname"), br.name),
                         _match({"ct": {"key": "status"}}, "dnat", "in"),
                         {"masquerade": None}))
        out.append(_rule("postrouting", f"{br.name}: 127.0.0.1:HOSTPORT from the host",
                         _match(_meta("oifname"), br.name),
                         _match(_payload("ip", "saddr"), _prefix(LOOPBACK)),
                         {"masquerade": None}))
    return out


def needed(cfg: "SwitchConfig") -> bool:
    return any(br.subnet for br in cfg.bridges.values())


def batch(cfg: "SwitchConfig") -> Json:
    """The one transaction that makes the table what cfg says: replaced
    whole, or removed when no bridge needs it."""
    cmds: list[Json] = [{"add": {"table": _table()}}, {"delete": {"table": _table()}}]
    if needed(cfg):
        cmds.append({"add": {"table": _table()}})
        for name, ctype, hook, prio in CHAINS:
            cmds.append({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name,
                                           "type": ctype, "hook": hook, "prio": prio,
                                           "policy": "accept"}}})
        cmds += rules(cfg)
    return {"nftables": cmds}


def removal() -> Json:
    return {"nftables": [{"add": {"table": _table()}}, {"delete": {"table": _table()}}]}


def available() -> bool:
    return shutil.which(NFT) is not None


def run(doc: Json) -> None:
    """Apply one JSON batch with `nft -j -f -` (one kernel transaction)."""
    if not available():
        raise VswitchError("ENOENT", "nft is not installed (Debian package nftables); "
                                     "networks with a subnet need it")
    try:
        r = subprocess.run([NFT, "-j", "-f", "-"], input=json.dumps(doc), text=True,
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise VswitchError("EIO", f"nft: {e}") from None
    if r.returncode != 0:
        first = next((ln for ln in r.stderr.splitlines() if ln.strip()), "failed")
        raise VswitchError("EIO", f"nft: {first.strip()}")


def list_table() -> Json | None:
    """The table as nft reports it (None: there is none)."""
    if not available():
        return None
    r = subprocess.run([NFT, "-j", "list", "table", FAMILY, TABLE], text=True,
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        return None
    data: Json = json.loads(r.stdout)
    return data
