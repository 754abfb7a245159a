"""Text forms of replies, for people (`--json` gives the data itself)."""
from __future__ import annotations

import ipaddress

from typing import Any

from .config import format_trunks


def lines(result: list[str], params: dict[str, Any]) -> str:
    return "\n".join(result)


def flushed(result: int, params: dict[str, Any]) -> str:
    return f"table successfully flushed ({result} learned entries removed)"


def _port_details(p: dict[str, Any]) -> list[str]:
    out = [f"ofport: {p['ofport']}"] if p.get("ofport") else []
    out.append(f"type: {p['type']}")
    if p.get("netns"):
        out.append(f"netns: {p['netns']}")
    if p.get("device"):
        out.append(f"interface: {p['device']}")
    if p.get("ip"):
        out.append("ip: " + ", ".join(p["ip"]))
    if p.get("device_mac"):
        out.append(f"mac: {p['device_mac']}")
    if p["type"] == "vxlan":
        out.append("remote_ip: " + ",".join(p.get("remote_ip", ())))
        out.append(f"key: {p.get('key', 0)}")
        if p.get("local_ip"):
            out.append(f"local_ip: {p['local_ip']}")
        out.append(f"dst_port: {p.get('dst_port', 4789)}")
    if p.get("device_mtu"):
        inner = " (inner)" if p["type"] == "vxlan" else ""
        out.append(f"mtu: {p['device_mtu']}{inner}")
    if p.get("local"):
        out.append("the bridge's own port (gateway)")
    return out


def _vlan(p: dict[str, Any]) -> str | None:
    mode = p.get("vlan_mode", "trunk")
    raw = p.get("trunks", "")
    trunks = raw if isinstance(raw, str) else format_trunks(tuple(raw))
    if mode == "trunk":
        return f"vlan_mode: trunk, trunks: {trunks}" if trunks else None
    text = f"vlan_mode: {mode}, tag: {p.get('tag')}"
    return text + (f", trunks: {trunks}" if trunks else "")


def show(result: dict[str, Any], params: dict[str, Any]) -> str:
    out = []
    for br in result["bridges"]:
        out.append(f"Bridge {br['name']}")
        out.append(f"    mac_aging: {br['mac_aging']}, mac_table_size: {br['mac_table_size']}")
        net = _bridge_network(br)
        if net:
            out.append("    " + net)
        for proto, fe in br.get("flow_export", {}).items():
            out.append(f"    {proto}: " + ", ".join(fe["targets"]))
        for p in br["ports"]:
            state = p["state"] + (f" ({p['error']})" if p.get("error") else "")
            out.append(f"    Port {p['name']}: {state}")
            out.append("        " + ", ".join(_port_details(p)))
            vlan = _vlan(p)
            if vlan:
                out.append("        " + vlan)
            net = _port_network(p)
            if net:
                out.append("        " + net)
            if p.get("warning"):
                out.append("        warning: " + p["warning"])
    return "\n".join(out) if out else "(no bridges)"


def _port_network(p: dict[str, Any]) -> str | None:
    parts = []
    if p.get("publish"):
        parts.append("publish: " + ", ".join(p["publish"]))
    if p.get("default_route"):
        parts.append(f"default route: {p['default_route']}")
    if p.get("default_route6"):
        parts.append(f"IPv6 default route: {p['default_route6']}")
    return ", ".join(parts) or None


def _bridge_network(br: dict[str, Any]) -> str | None:
    parts = []
    for skey, gkey in (("subnet", "gateway"), ("subnet6", "gateway6")):
        if br.get(skey):
            gw = br.get(gkey) or str(ipaddress.ip_network(br[skey]).network_address + 1)
            parts.append(f"{skey}: {br[skey]}, {gkey}: {gw}")
    if br.get("subnet"):
        parts.append("masquerade: " + ("false" if br.get("masquerade") is False else "true"))
    return ", ".join(parts) or None


def net_show(result: dict[str, Any], params: dict[str, Any]) -> str:
    out = [f"Network {result['bridge']}"]
    port = (f"(port {result['gateway_port']}, {result.get('gateway_state', 'down')}, "
            f"mac {result.get('gateway_mac') or '-'})")
    if result["subnet"]:
        out.append(f"    subnet: {result['subnet']}, gateway: {result['gateway']} {port}")
        out.append(f"    masquerade: {'true' if result['masquerade'] else 'false'}, "
                   f"IPv4 forwarding: {'on' if result['ip_forward'] else 'off'}, "
                   "nftables: " + (result["nftables"] or
                                   "NOT APPLIED: " + result.get("nftables_error", "?")))
    if result.get("subnet6"):
        out.append(f"    subnet6: {result['subnet6']}, gateway6: {result['gateway6']} "
                   + ("" if result["subnet"] else port))
        out.append("    IPv6: routed, no NAT; IPv6 forwarding: "
                   + ("on" if result.get("ip6_forward") else "off"))
    if not result["subnet"] and not result.get("subnet6"):
        out.append("    no subnet (layer 2 only: no gateway, no addresses handed out, no NAT)")
    for p in result["ports"]:
        out.append(f"    Port {p['name']}: {p['state']}")
        fields = [f"netns: {p['netns']}" if p.get("netns") else f"type: {p['type']}",
                  f"ipv4: {p['ipv4'] or '-'}"]
        if p.get("ipv6"):
            fields.append(f"ipv6: {p['ipv6']}")
        fields.append(f"mac: {p['mac'] or '-'}")
        out.append("        " + ", ".join(fields))
        extra = _port_network(p)
        if extra:
            out.append("        " + extra)
    return "\n".join(out)


def fdb_show(result: list[dict[str, Any]], params: dict[str, Any]) -> str:
    width = max([4] + [len(r["port"]) for r in result])
    # Tunnel ports: the remote the MAC is behind, on the same line.
    remotes = any(r.get("remote") for r in result)
    out = [f"{'port':>{width}}  VLAN  MAC                Age" + ("  Remote" if remotes else "")]
    for r in result:
        age = "static" if r["static"] else str(r["age"])
        line = f"{r['port']:>{width}}  {r['vlan']:4d}  {r['mac']}  {age:>6}"
        if r.get("remote"):
            line += f"  {r['remote']}"
        out.append(line)
    return "\n".join(out)


def fdb_stats(result: dict[str, int], params: dict[str, Any]) -> str:
    return "\n".join([
        f"Statistics for bridge \"{params['bridge']}\":",
        f"  Current/maximum MAC entries in the table: {result['entries']}/{result['max_entries']}",
        f"  Current static MAC entries in the table : {result['static_entries']}",
        f"  Total number of learned MAC entries     : {result['learned']}",
        f"  Total number of expired MAC entries     : {result['expired']}",
        f"  Total number of evicted MAC entries     : {result['evicted']}",
        f"  Total number of port moved MAC entries  : {result['moved']}",
        f"  MAC aging time (seconds)                : {result['mac_aging']}",
    ])


def port_stats(result: list[dict[str, Any]], params: dict[str, Any]) -> str:
    out = []
    for r in result:
        drops = {k: v for k, v in r["drops"].items() if v}
        out.append(f"{r['bridge']} port {r['port']}:")
        if r.get("ofport"):
            out.append(f"    ofport: {r['ofport']}")
        out.append(f"    rx pkts={r['rx_packets']}, bytes={r['rx_bytes']}")
        out.append(f"    tx pkts={r['tx_packets']}, bytes={r['tx_bytes']}")
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "none"
        out.append(f"    drops: {dropped}")
        for rem in r.get("remotes", ()):
            src = f" from {rem['source']}" if rem.get("source") else " (no route)"
            out.append(f"    remote {rem['remote']}{src}: rx pkts={rem['rx_packets']}, "
                       f"bytes={rem['rx_bytes']}; tx pkts={rem['tx_packets']}, "
                       f"bytes={rem['tx_bytes']}, errors={rem['tx_errors']}")
    return "\n".join(out)


def bond_show(result: list[dict[str, Any]], params: dict[str, Any]) -> str:
    out = []
    for b in result:
        out.append(f"---- {b['name']} ----")
        out.append(f"bridge: {b['bridge']}")
        out.append(f"bond_mode: {b['bond_mode']}")
        out.append(f"bond_updelay: {b['bond_updelay']} ms")
        out.append(f"bond_downdelay: {b['bond_downdelay']} ms")
        out.append(f"bond-primary: {b['bond_primary'] or '(none)'}")
        detect = b["bond_detect_mode"]
        if detect == "miimon":
            detect += f" every {b['bond_miimon_interval']} ms"
        out.append(f"bond-detect-mode: {detect}")
        if b["bond_mode"] in ("balance-slb", "balance-tcp"):
            out.append(f"bond-rebalance-interval: {b['bond_rebalance_interval']} ms")
        out.append(f"lacp_status: {b.get('lacp_status', 'off')}")
        if b.get("lacp", "off") != "off":
            out.append(f"lacp: {b['lacp']}, lacp-time: {b['lacp_time']}, "
                       f"lacp_fallback_ab: {str(b['lacp_fallback_ab']).lower()}")
        if b.get("effective_mode", b["bond_mode"]) != b["bond_mode"]:
            out.append(f"running as: {b['effective_mode']} (lacp-fallback-ab)")
        out.append(f"active member: {b['active_member'] or '(none)'}")
        for m in b["members"]:
            state = "enabled" if m["enabled"] else "disabled"
            extra = []
            if m["active"]:
                extra.append("active")
            extra.append("carrier" if m["carrier"] else "no carrier")
            if not m["present"]:
                extra.append("interface missing")
            if m["admin"] == "disabled":
                extra.append("disabled by bond/disable-member")
            if m.get("pending"):
                extra.append(f"{m['pending']} pending")
            if "buckets" in m:
                extra.append(f"{m['buckets']} hash buckets")
            out.append(f"member {m['name']}: {state} ({', '.join(extra)})")
            for h in m.get("hashes", []):
                out.append(f"  hash {h['hash']}: {h['load_bytes'] // 1024} kB load")
        out.append("")
    return "\n".join(out).rstrip()


def lacp_show(result: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """Like `ovs-appctl lacp/show`."""
    out = []
    for b in result:
        a, p = b["actor"], b["partner"]
        out.append(f"---- {b['bond']} ----")
        out.append(f"  status: {b['status']}")
        out.append(f"  sys_id: {a['system_id']}  sys_priority: {a['system_priority']}  "
                   f"key: {a['key']}")
        out.append(f"  partner sys_id: {p['system_id']}  sys_priority: "
                   f"{p['system_priority']}  key: {p['key']}")
        for m in b["members"]:
            out.append("")
            out.append(f"member: {m['name']}: "
                       f"{'distributing' if m['distributing'] else 'not distributing'}")
            out.append(f"  port_id: {m['port_id']}")
            out.append(f"  actor state: {' '.join(m['actor_state']) or '(none)'}")
            out.append(f"  partner state: {' '.join(m['partner_state']) or '(none)'}")
            out.append(f"  PDUs sent: {m['pdus_tx']}, received: {m['pdus_rx']}, "
                       f"bad: {m['pdus_bad']}")
        out.append("")
    return "\n".join(out).rstrip() if out else "(no bond runs LACP)"


def reloaded(result: dict[str, list[str]], params: dict[str, Any]) -> str:
    from .reload import summary
    return summary(result)


def list_mirrors(result: list[dict[str, Any]], params: dict[str, Any]) -> str:
    out = []
    for m in result:
        if m["select_all"]:
            sel = "select_all"
        else:
            parts = []
            if m["select_src_port"]:
                parts.append("from " + ",".join(m["select_src_port"]))
            if m["select_dst_port"]:
                parts.append("to " + ",".join(m["select_dst_port"]))
            sel = " or ".join(parts) or "nothing (its ports were deleted)"
        if m["select_vlan"]:
            sel += f", VLANs {format_trunks(tuple(m['select_vlan']))}"
        dest = f"port {m['output_port']}" if m["output_port"] else f"VLAN {m['output_vlan']}"
        state = "" if m["active"] else " (inactive: its output port is not attached)"
        out.append(f"{m['name']}: {sel} -> {dest}{state}; "
                   f"tx_packets={m['tx_packets']}, tx_bytes={m['tx_bytes']}")
    return "\n".join(out) if out else f"(no mirrors on {params['bridge']})"


def trace(result: dict[str, Any], params: dict[str, Any]) -> str:
    flow = " ".join(f"{k}={v}" for k, v in params["flow"].items())
    lines = [f"Bridge: {params['bridge']}", f"Flow: {flow}", ""]
    lines += [f"{i:2d}. {s}" for i, s in enumerate(result["steps"], 1)]
    lines.append("")
    if result["outputs"]:
        outs = []
        for o in result["outputs"]:
            where = o["port"] if o["interface"] == o["port"] else f"{o['port']} ({o['interface']})"
            outs.append(f"{where} " + (f"vlan {o['vlan']}" if o["tagged"] else "untagged"))
        lines.append("Result: output to " + ", ".join(outs))
    elif result["drop"]:
        lines.append(f"Result: dropped ({result['drop']})")
    else:
        lines.append("Result: no output (no port to send it to)")
    return "\n".join(lines)


def upcall_show(result: dict[str, Any], params: dict[str, Any]) -> str:
    out = [f"queue: {result['pending']} waiting ({result['pending_bytes']} of "
           f"{result['capacity_bytes']} bytes)"]
    for reason in result["queued"]:
        out.append(f"  {reason}: queued {result['queued'][reason]}, "
                   f"dropped {result['dropped'][reason]}")
    if result["unhandled"] or result["handler_errors"]:
        out.append(f"unhandled: {result['unhandled']}, handler errors: "
                   f"{result['handler_errors']}")
    for c in result["handlers"].get("capture") or []:
        out.append(f"capture on {c['port']}: {c['captured']} frames, {c['dropped']} dropped")
    return "\n".join(out)
