"""Thin wrapper over the C engine (csrc/vswitch.h).

One method per engine call, ids in and out, negative errno turned into
VswitchError.  No policy lives here: names, validation and persistence are
the Switch's business.  Every call is a control-plane call (per
configuration change or per ``show``), never per frame.
"""
from __future__ import annotations

import ipaddress
import socket
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

from ._engine import ffi, lib
from .errors import VswitchError

DROP_REASONS: tuple[str, ...] = tuple(
    ffi.string(lib.vs_drop_reason_name(i)).decode() for i in range(lib.VS_DROP__COUNT)
)

IFACE_FD = lib.VS_IFACE_FD
IFACE_PACKET = lib.VS_IFACE_PACKET
IFACE_VXLAN = lib.VS_IFACE_VXLAN
MAX_REMOTES = lib.VS_MAX_REMOTES
VNET_HDR = lib.VS_IFACE_F_VNET_HDR
NO_OFFLOAD = lib.VS_IFACE_F_NO_OFFLOAD

VLAN_MODES = {
    "trunk": lib.VS_VLAN_TRUNK,
    "access": lib.VS_VLAN_ACCESS,
    "native-tagged": lib.VS_VLAN_NATIVE_TAGGED,
    "native-untagged": lib.VS_VLAN_NATIVE_UNTAGGED,
}
UPCALL_CAPTURE = lib.VS_UPCALL_CAPTURE
UPCALL_SLOW_PROTO = lib.VS_UPCALL_SLOW_PROTO
UPCALL_SAMPLE = lib.VS_UPCALL_SAMPLE
UPCALL_REASONS = {UPCALL_CAPTURE: "capture", UPCALL_SLOW_PROTO: "slow_proto",
                  UPCALL_SAMPLE: "sample"}
UPCALL_RX = lib.VS_UPCALL_RX
UPCALL_TX = lib.VS_UPCALL_TX
CLAIM_LACP = lib.VS_CLAIM_LACP

BOND_MODES = {
    "none": lib.VS_BOND_NONE,
    "active-backup": lib.VS_BOND_ACTIVE_BACKUP,
    "balance-slb": lib.VS_BOND_BALANCE_SLB,
    "balance-tcp": lib.VS_BOND_BALANCE_TCP,
}


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise VswitchError.from_errno(-rc, what)
    return rc


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def mac_str(raw: Iterable[int]) -> str:
    return ":".join(f"{b:02x}" for b in raw)


@dataclass
class IfaceStats:
    rx_packets: int = 0
    rx_bytes: int = 0
    rx_forwarded: int = 0
    rx_upcall: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    drops: dict[str, int] = field(default_factory=lambda: {r: 0 for r in DROP_REASONS})

    def __iadd__(self, other: "IfaceStats") -> "IfaceStats":
        self.rx_packets += other.rx_packets
        self.rx_bytes += other.rx_bytes
        self.rx_forwarded += other.rx_forwarded
        self.rx_upcall += other.rx_upcall
        self.tx_packets += other.tx_packets
        self.tx_bytes += other.tx_bytes
        for r, n in other.drops.items():
            self.drops[r] += n
        return self

    def to_json(self) -> dict:
        return {"rx_packets": self.rx_packets, "rx_bytes": self.rx_bytes,
                "rx_forwarded": self.rx_forwarded, "rx_upcall": self.rx_upcall,
                "tx_packets": self.tx_packets, "tx_bytes": self.tx_bytes,
                "drops": dict(self.drops)}


def ip_be(addr: str | None) -> int:
    """An IPv4 address as the engine keeps it (network byte order in a u32)."""
    if not addr:
        return 0
    return int.from_bytes(socket.inet_aton(str(ipaddress.IPv4Address(addr))), sys.byteorder)


def ip_str(raw: int) -> str | None:
    return socket.inet_ntoa(raw.to_bytes(4, sys.byteorder)) if raw else None


@dataclass(frozen=True)
class UpcallStats:
    queued: dict[str, int]      # by reason
    dropped: dict[str, int]     # queue full: the control plane fell behind
    pending: int
    pending_bytes: int
    capacity_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"queued": dict(self.queued), "dropped": dict(self.dropped),
                "pending": self.pending, "pending_bytes": self.pending_bytes,
                "capacity_bytes": self.capacity_bytes}


@dataclass(frozen=True)
class TraceOutput:
    port: int                 # engine ids
    iface: int
    vlan: int
    tagged: bool
    mirror: int | None        # the mirror slot whose copy this is


@dataclass(frozen=True)
class RawTrace:
    steps: list[tuple[int, int, int, int]]    # (VS_TRACE_* kind, a, b, c)
    outputs: list[TraceOutput]
    drop: str | None
    in_iface: int
    steps_lost: int


@dataclass(frozen=True)
class FdbEntry:
    port: int
    vlan: int
    mac: str
    age: int
    is_static: bool
    remote: str | None = None   # tunnel ports: the remote the MAC is behind


@dataclass(frozen=True)
class RemoteStats:
    ip: str
    src_ip: str | None     # the source address the route to ip picks; None: no route
    rx_packets: int
    rx_bytes: int
    tx_packets: int
    tx_bytes: int
    tx_errors: int


@dataclass(frozen=True)
class FdbStats:
    entries: int
    static_entries: int
    max_entries: int
    aging: int
    learned: int
    expired: int
    evicted: int
    moved: int


@dataclass(frozen=True)
class FlowRecord:
    """One flow's counts since its last record (csrc/vswitch.h,
    struct vs_flow_record).  Addresses are 4 bytes for IPv4, 16 for IPv6,
    empty for other traffic."""
    src: bytes
    dst: bytes
    src_mac: bytes
    dst_mac: bytes
    in_port: int
    out_port: int
    vlan: int
    ethertype: int
    src_port: int
    dst_port: int
    proto: int
    tos: int
    tcp_flags: int
    end_reason: int
    packets: int
    bytes: int
    first_ms: int
    last_ms: int


FLOW_STATS_FIELDS = ("flows", "max_flows", "packets", "unsampled", "created", "expired_idle",
                     "expired_active", "flushed", "no_room", "skipped", "truncated",
                     "fragments", "bad_length")


def _flow_record(r: Any) -> FlowRecord:
    alen = {0x0800: 4, 0x86dd: 16}.get(r.ethertype, 0)
    return FlowRecord(bytes(r.src)[:alen], bytes(r.dst)[:alen], bytes(r.src_mac),
                      bytes(r.dst_mac), r.in_port, r.out_port, r.vlan, r.ethertype,
                      r.src_port, r.dst_port, r.proto, r.tos, r.tcp_flags, r.end_reason,
                      r.packets, r.bytes, r.first_ms, r.last_ms)


class Datapath:
    """The engine: bridges, ports and interfaces by numeric id."""

    def __init__(self) -> None:
        dp = lib.vs_dp_new()
        if dp == ffi.NULL:
            raise VswitchError("ENOMEM", "cannot create the datapath")
        self._dp = dp

    # --- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        _check(lib.vs_dp_start(self._dp), "start forwarding thread")

    def stop(self) -> None:
        _check(lib.vs_dp_stop(self._dp), "stop forwarding thread")

    def close(self) -> None:
        """Stop the thread and close every interface fd."""
        if self._dp is not None:
            lib.vs_dp_free(self._dp)
            self._dp = None

    def notify_fd(self) -> int:
        return lib.vs_dp_notify_fd(self._dp)

    def set_clock(self, now_ms: int | None) -> None:
        lib.vs_dp_set_clock(self._dp, -1 if now_ms is None else now_ms)

    def now_ms(self) -> int:
        return lib.vs_dp_now_ms(self._dp)

    def set_busy_poll(self, usec: int) -> None:
        lib.vs_dp_set_busy_poll(self._dp, usec)

    def run_periodic(self) -> None:
        lib.vs_dp_run_periodic(self._dp)

    # --- bridges -------------------------------------------------------------
    def add_bridge(self, mac_table_size: int, mac_aging: int) -> int:
        return _check(lib.vs_br_add(self._dp, mac_table_size, mac_aging), "add bridge")

    def del_bridge(self, br: int) -> None:
        _check(lib.vs_br_del(self._dp, br), "delete bridge")

    def set_mac_aging(self, br: int, seconds: int) -> None:
        _check(lib.vs_br_set_mac_aging(self._dp, br, seconds), "set mac_aging")

    def set_mac_table_size(self, br: int, entries: int) -> None:
        _check(lib.vs_br_set_mac_table_size(self._dp, br, entries), "set mac_table_size")

    # --- ports -----------------------------------------------------------------
    def add_port(self, br: int) -> int:
        return _check(lib.vs_port_add(self._dp, br), "add port")

    def del_port(self, port: int) -> None:
        _check(lib.vs_port_del(self._dp, port), "delete port")

    def set_vlan(self, port: int, mode: str, tag: int | None, trunks: Iterable[int]) -> None:
        vids = list(trunks)
        bitmap = ffi.NULL
        if vids:
            bitmap = ffi.new("uint8_t[512]")
            for v in vids:
                bitmap[v >> 3] |= 1 << (v & 7)
        _check(lib.vs_port_set_vlan(self._dp, port, VLAN_MODES[mode], tag or 0, bitmap),
               "set VLAN configuration")

    def set_bond_mode(self, port: int, mode: str) -> None:
        _check(lib.vs_port_set_bond_mode(self._dp, port, BOND_MODES[mode]), "set bond mode")

    def set_active(self, port: int, iface: int | None) -> None:
        _check(lib.vs_port_set_active(self._dp, port, -1 if iface is None else iface),
               "set active member")

    def get_active(self, port: int) -> int | None:
        out = ffi.new("int *")
        _check(lib.vs_port_get_active(self._dp, port, out), "get active member")
        return None if out[0] < 0 else out[0]

    def set_slb_bucket(self, port: int, bucket: int, iface: int | None) -> None:
        _check(lib.vs_port_set_slb_bucket(self._dp, port, bucket,
                                          -1 if iface is None else iface), "set SLB bucket")

    def set_lag(self, port: int, on: bool) -> None:
        _check(lib.vs_port_set_lag(self._dp, port, int(on)), "set LACP admission")

    def send_learning_packets(self, port: int) -> int:
        return _check(lib.vs_port_send_learning_packets(self._dp, port), "send learning packets")

    def take_slb_loads(self, port: int) -> list[int]:
        loads = ffi.new("uint64_t[]", lib.VS_SLB_BUCKETS)
        _check(lib.vs_port_take_slb_loads(self._dp, port, loads), "read SLB loads")
        return list(loads)

    # --- interfaces --------------------------------------------------------------
    def add_iface(self, port: int, fd: int, kind: int, flags: int, mtu: int) -> int:
        """Attach fd; the engine owns (and closes) it from now on, even on error."""
        return _check(lib.vs_iface_add(self._dp, port, fd, kind, flags, mtu), "attach interface")

    def del_iface(self, iface: int) -> None:
        _check(lib.vs_iface_del(self._dp, iface), "detach interface")

    def set_mtu(self, iface: int, mtu: int) -> None:
        _check(lib.vs_iface_set_mtu(self._dp, iface, mtu), "set MTU")

    def set_enabled(self, iface: int, enabled: bool) -> None:
        _check(lib.vs_iface_set_enabled(self._dp, iface, int(enabled)), "enable member")

    def iface_failed(self, iface: int) -> bool:
        st = _check(lib.vs_iface_state(self._dp, iface), "interface state")
        return bool(st & lib.VS_IFACE_S_FAILED)

    def iface_stats(self, iface: int) -> IfaceStats:
        raw = ffi.new("struct vs_iface_stats *")
        _check(lib.vs_iface_stats(self._dp, iface, raw), "interface statistics")
        return IfaceStats(raw.rx_packets, raw.rx_bytes, raw.rx_forwarded, raw.rx_upcall,
                          raw.tx_packets, raw.tx_bytes,
                          {r: raw.drops[i] for i, r in enumerate(DROP_REASONS)})

    def send(self, iface: int, frame: bytes) -> None:
        _check(lib.vs_iface_send(self._dp, iface, frame, len(frame)), "send frame")

    def inject(self, iface: int, frame: bytes) -> None:
        _check(lib.vs_dp_inject(self._dp, iface, frame, len(frame)), "inject frame")

    # --- VXLAN tunnels -------------------------------------------------------------
    def add_tunnel(self, port: int, vni: int, remotes: Iterable[str], local_ip: str | None,
                   dst_port: int, mtu: int, ttl: int = 0, csum: bool = True,
                   df: bool = False, udp_gso: bool = False) -> int:
        """Attach a VXLAN tunnel interface to port; returns its interface id."""
        cfg = ffi.new("struct vs_tunnel_cfg *")
        cfg.vni = vni
        cfg.local_ip = ip_be(local_ip)
        cfg.dst_port = dst_port
        cfg.ttl = ttl
        cfg.flags = ((lib.VS_TUN_F_CSUM if csum else 0) | (lib.VS_TUN_F_DF if df else 0)
                     | (lib.VS_TUN_F_UDP_GSO if udp_gso else 0))
        ips = [ip_be(r) for r in remotes]
        arr = ffi.new("uint32_t[]", ips)
        what = f"open VXLAN socket {local_ip or '0.0.0.0'}:{dst_port}"
        return _check(lib.vs_tunnel_add(self._dp, port, cfg, arr, len(ips), mtu), what)

    def set_tunnel_remotes(self, iface: int, remotes: Iterable[str]) -> None:
        ips = [ip_be(r) for r in remotes]
        arr = ffi.new("uint32_t[]", ips)
        _check(lib.vs_tunnel_set_remotes(self._dp, iface, arr, len(ips)), "set remotes")

    def tunnel_remote_stats(self, iface: int) -> list[RemoteStats]:
        buf = ffi.new("struct vs_remote_stats[]", MAX_REMOTES)
        n = _check(lib.vs_tunnel_remote_stats(self._dp, iface, buf, MAX_REMOTES),
                   "remote statistics")
        return [RemoteStats(ip_str(r.ip) or "0.0.0.0", ip_str(r.src_ip), r.rx_packets,
                            r.rx_bytes, r.tx_packets, r.tx_bytes, r.tx_errors)
                for r in buf[0:n]]

    # --- the upcall channel (vswitch/upcall.py drains it) ------------------------
    def upcall_fd(self) -> int:
        return lib.vs_upcall_fd(self._dp)

    def upcall_recv(self, meta: Any, buf: Any, buflen: int) -> bool:
        """Take one upcall into the caller's cffi meta and buffer; False when
        none waits.  (Buffers come from the caller: this runs per frame.)"""
        return bool(lib.vs_upcall_recv(self._dp, meta, buf, buflen))

    def upcall_stats(self) -> UpcallStats:
        raw = ffi.new("struct vs_upcall_stats *")
        _check(lib.vs_upcall_stats(self._dp, raw), "upcall statistics")
        return UpcallStats({r: raw.queued[i] for i, r in UPCALL_REASONS.items()},
                           {r: raw.dropped[i] for i, r in UPCALL_REASONS.items()},
                           raw.pending, raw.pending_bytes, raw.capacity_bytes)

    def set_claim(self, iface: int, claims: int) -> None:
        _check(lib.vs_iface_set_claim(self._dp, iface, claims), "set protocol claim")

    def set_capture(self, iface: int, snaplen: int) -> None:
        """Copy the interface's frames to the upcall queue (snaplen 0: stop)."""
        _check(lib.vs_iface_set_capture(self._dp, iface, snaplen), "set capture")

    # --- mirrors -------------------------------------------------------------------
    def mirror_set(self, br: int, slot: int, *, select_all: bool, src: Iterable[int],
                   dst: Iterable[int], vlans: Iterable[int], output_port: int | None,
                   output_vlan: int | None) -> None:
        """Create or replace a mirror (engine port ids; empty vlans: all)."""
        cfg = ffi.new("struct vs_mirror_config *")
        cfg.select_all = int(select_all)
        for field_name, ids in (("select_src", src), ("select_dst", dst)):
            bitmap = getattr(cfg, field_name)
            for p in ids:
                bitmap[p >> 3] |= 1 << (p & 7)
        vids = list(vlans)
        cfg.all_vlans = int(not vids)
        for v in vids:
            cfg.select_vlan[v >> 3] |= 1 << (v & 7)
        cfg.output_port = -1 if output_port is None else output_port
        cfg.output_vlan = output_vlan or 0
        _check(lib.vs_mirror_set(self._dp, br, slot, cfg), "set mirror")

    def mirror_del(self, br: int, slot: int) -> None:
        _check(lib.vs_mirror_del(self._dp, br, slot), "delete mirror")

    def mirror_stats(self, br: int, slot: int) -> tuple[int, int]:
        """(frames, bytes) mirrored."""
        raw = ffi.new("struct vs_mirror_stats *")
        _check(lib.vs_mirror_stats(self._dp, br, slot, raw), "mirror statistics")
        return raw.tx_packets, raw.tx_bytes

    # --- trace ---------------------------------------------------------------------
    def trace(self, iface: int, frame: bytes) -> RawTrace:
        """What the engine would do with frame arriving on iface (nothing is
        sent, learned or counted)."""
        out = ffi.new("struct vs_trace *")
        _check(lib.vs_dp_trace(self._dp, iface, frame, len(frame), out), "trace")
        steps = [(s.kind, s.a, s.b, s.c) for s in out.steps[0:out.n_steps]]
        outputs = [TraceOutput(o.port, o.iface, o.vlan, bool(o.tagged),
                               None if o.mirror < 0 else o.mirror)
                   for o in out.outputs[0:out.n_outputs]]
        drop = DROP_REASONS[out.drop] if 0 <= out.drop < len(DROP_REASONS) else None
        return RawTrace(steps, outputs, drop, out.in_iface, out.steps_lost)

    # --- FDB ---------------------------------------------------------------------
    def fdb_add_static(self, br: int, port: int, vlan: int, mac: str) -> None:
        _check(lib.vs_fdb_add_static(self._dp, br, port, vlan, mac_bytes(mac)), "add FDB entry")

    def fdb_del(self, br: int, vlan: int, mac: str) -> None:
        _check(lib.vs_fdb_del(self._dp, br, vlan, mac_bytes(mac)), "delete FDB entry")

    def fdb_flush(self, br: int, port: int | None = None) -> int:
        return _check(lib.vs_fdb_flush(self._dp, br, -1 if port is None else port), "flush FDB")

    def fdb_lookup(self, br: int, vlan: int, mac: str) -> int | None:
        rc = lib.vs_fdb_lookup(self._dp, br, vlan, mac_bytes(mac))
        if rc == -2:  # ENOENT
            return None
        return _check(rc, "look up FDB")

    def fdb_dump(self, br: int) -> list[FdbEntry]:
        cap = 1024
        while True:
            buf = ffi.new("struct vs_fdb_entry[]", cap)
            n = _check(lib.vs_fdb_dump(self._dp, br, buf, cap), "dump FDB")
            if n <= cap:
                return [FdbEntry(e.port, e.vlan, mac_str(e.mac), e.age, bool(e.is_static),
                                 ip_str(e.remote_ip))
                        for e in buf[0:n]]
            cap = n + 64  # the table grew between calls: try again, larger

    def fdb_stats(self, br: int) -> FdbStats:
        raw = ffi.new("struct vs_fdb_stats *")
        _check(lib.vs_fdb_stats(self._dp, br, raw), "FDB statistics")
        return FdbStats(raw.entries, raw.static_entries, raw.max_entries, raw.aging,
                        raw.learned, raw.expired, raw.evicted, raw.moved)

    # --- flow accounting (csrc/flow.c) ------------------------------------------
    def flow_configure(self, br: int, cache: int, *, max_flows: int, sampling: int,
                       idle_timeout_ms: int, active_timeout_ms: int, ipv4_only: bool) -> None:
        cfg = ffi.new("struct vs_flow_config *", {
            "max_flows": max_flows, "sampling": sampling, "idle_timeout_ms": idle_timeout_ms,
            "active_timeout_ms": active_timeout_ms,
            "flags": lib.VS_FLOW_F_IPV4_ONLY if ipv4_only else 0})
        _check(lib.vs_flow_configure(self._dp, br, cache, cfg), "configure flow cache")

    def flow_off(self, br: int, cache: int) -> None:
        _check(lib.vs_flow_configure(self._dp, br, cache, ffi.NULL), "turn flow cache off")

    def flow_collect(self, br: int, cache: int, flush: bool = False) -> list[FlowRecord]:
        """Every record that is due now (all flows with flush)."""
        out: list[FlowRecord] = []
        buf = ffi.new("struct vs_flow_record[]", 1024)
        while True:
            n = _check(lib.vs_flow_collect(self._dp, br, cache, int(flush), buf, 1024),
                       "collect flows")
            out += [_flow_record(buf[i]) for i in range(n)]
            if n < 1024:
                return out

    def flow_stats(self, br: int, cache: int) -> dict[str, int]:
        raw = ffi.new("struct vs_flow_stats *")
        _check(lib.vs_flow_stats(self._dp, br, cache, raw), "flow cache statistics")
        return {f: getattr(raw, f) for f in FLOW_STATS_FIELDS}

    def flow_set_sampling(self, br: int, rate: int, header_bytes: int) -> None:
        """sFlow packet samples to the upcall channel; rate 0: off."""
        _check(lib.vs_flow_set_sampling(self._dp, br, rate, header_bytes), "set sFlow sampling")

    def flow_sampling_stats(self, br: int) -> dict[str, int]:
        out = ffi.new("uint64_t[3]")
        _check(lib.vs_flow_sampling_stats(self._dp, br, out), "sFlow sampling statistics")
        return {"seen": out[0], "sampled": out[1], "dropped": out[2]}

    def set_ofport(self, port: int, ofport: int) -> None:
        _check(lib.vs_port_set_ofport(self._dp, port, ofport), "set port number")
