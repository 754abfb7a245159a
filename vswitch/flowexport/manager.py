"""Flow export of every bridge: engine flow caches on and off, records
collected once a second and sent to the collectors.

The engine owns the counting (csrc/flow.c, in the forwarding pass); this
module owns the protocols.  Once a second (`tick`) it asks the engine for
the records that are due -- flows idle past their idle timeout, or active
past their active timeout -- turns them into NetFlow v5 and IPFIX
datagrams, and every sflow_polling seconds sends sFlow counter samples of
every port.  sFlow packet samples arrive on the upcall channel (the engine
picks them in the same pass, csrc/flow.c) and leave in datagrams of a few
samples, at the latest on the next tick.  Turning an export off, changing its settings or stopping the
daemon first collects every flow still in the cache (flowEndReason
"forced end"), so no counted packet is lost on the way.

Thread safety: all of it runs on the daemon's asyncio thread; the engine
calls take the datapath lock for one short scan each.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any, Callable

from .._engine import lib
from ..datapath import UPCALL_SAMPLE, Datapath, IfaceStats
from ..upcall import Upcall, UpcallChannel
from .ipfix import Ipfix
from .netflow import NetFlowV5
from .sender import Collectors
from .settings import NETFLOW_MAX_FLOWS, FlowExport
from .sflow import OUTPUT_DISCARD, OUTPUT_MULTIPLE, PacketSample, PortCounters, SflowAgent

log = logging.getLogger(__name__)

NETFLOW_CACHE, IPFIX_CACHE = 0, 1
VS_OUT_FLOOD, VS_OUT_DROP = lib.VS_FLOW_OUT_FLOOD, lib.VS_FLOW_OUT_DROP
TICK_S = 1.0
IN_DROPS = ("runt", "bad_vnet_hdr", "reserved_dst", "vlan", "same_port", "bond", "no_member",
            "oversize")
OUT_DROPS = ("no_gso", "tx_error", "iface_down")


@dataclass
class PortView:
    """What sFlow needs of a port, from the switch's runtime."""
    name: str
    ofport: int
    ifaces: list[int]
    up: bool


PortsOf = Callable[[], list[PortView]]


class _NetFlow:
    def __init__(self, dp: Datapath, br: int, fe: FlowExport) -> None:
        self.dp, self.br = dp, br
        dp.flow_configure(br, NETFLOW_CACHE, max_flows=NETFLOW_MAX_FLOWS, sampling=1,
                          idle_timeout_ms=fe.get("netflow_idle_timeout") * 1000,
                          active_timeout_ms=fe.get("netflow_active_timeout") * 1000,
                          ipv4_only=True)
        self.proto = NetFlowV5(dp.now_ms(), fe.get("netflow_engine_type"),
                               fe.get("netflow_engine_id"))
        self.out = Collectors(fe.netflow)

    def tick(self, flush: bool = False) -> None:
        recs = self.dp.flow_collect(self.br, NETFLOW_CACHE, flush)
        if recs:
            self.out.send(self.proto.datagrams(recs, self.dp.now_ms()))

    def stop(self) -> None:
        self.tick(flush=True)
        self.dp.flow_off(self.br, NETFLOW_CACHE)
        self.out.close()

    def stats(self) -> dict[str, Any]:
        return {"cache": self.dp.flow_stats(self.br, NETFLOW_CACHE),
                "flow_sequence": self.proto.flow_sequence, "collectors": self.out.stats()}


class _Ipfix:
    def __init__(self, dp: Datapath, br: int, fe: FlowExport) -> None:
        self.dp, self.br = dp, br
        dp.flow_configure(br, IPFIX_CACHE, max_flows=fe.get("ipfix_cache_max_flows"),
                          sampling=fe.get("ipfix_sampling"),
                          idle_timeout_ms=fe.get("ipfix_cache_idle_timeout") * 1000,
                          active_timeout_ms=fe.get("ipfix_cache_active_timeout") * 1000,
                          ipv4_only=False)
        self.proto = Ipfix(fe.get("ipfix_obs_domain_id"), fe.get("ipfix_sampling"),
                           fe.get("ipfix_template_interval"))
        self.out = Collectors(fe.ipfix)

    def tick(self, flush: bool = False) -> None:
        recs = self.dp.flow_collect(self.br, IPFIX_CACHE, flush)
        msgs = self.proto.messages(recs, self.dp.now_ms())
        if msgs:
            self.out.send(msgs)

    def stop(self) -> None:
        self.tick(flush=True)
        self.dp.flow_off(self.br, IPFIX_CACHE)
        self.out.close()

    def stats(self) -> dict[str, Any]:
        return {"cache": self.dp.flow_stats(self.br, IPFIX_CACHE),
                "sequence": self.proto.sequence, "collectors": self.out.stats()}


def port_counters(dp: Datapath, p: PortView) -> PortCounters:
    total = IfaceStats()
    for i in p.ifaces:
        total += dp.iface_stats(i)
    return PortCounters(p.ofport, p.up, total.rx_bytes, total.rx_packets,
                        sum(total.drops[r] for r in IN_DROPS), total.tx_bytes,
                        total.tx_packets, sum(total.drops[r] for r in OUT_DROPS))


class _Sflow:
    def __init__(self, dp: Datapath, br: int, fe: FlowExport, ports: PortsOf) -> None:
        self.dp, self.br, self.ports = dp, br, ports
        self.out = Collectors(fe.sflow)
        agent = fe.sflow_agent or next(
            (a for a in (c.local_address() for c in self.out.list) if a), "127.0.0.1")
        self.agent = SflowAgent(agent, br, dp.now_ms())
        self.polling = fe.get("sflow_polling")
        self.sampling = fe.get("sflow_sampling")
        self.header = fe.get("sflow_header")
        self.next_poll = 0.0
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.samples = 0
        dp.flow_set_sampling(br, self.sampling, self.header)

    def on_sample(self, up: Upcall) -> None:
        in_port, out, pool, drops = up.args
        output = {VS_OUT_FLOOD: OUTPUT_MULTIPLE, VS_OUT_DROP: OUTPUT_DISCARD}.get(out, out)
        s = PacketSample(in_port, output, up.orig_len, up.frame, pool, drops)
        sample = self.agent.packet_sample(s, self.sampling)
        self.pending.append(sample)
        self.pending_bytes += len(sample)
        self.samples += 1
        if self.pending_bytes >= 1200:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.out.send(self.agent.datagrams(self.pending, self.dp.now_ms()))
            self.pending, self.pending_bytes = [], 0

    def tick(self, now: float) -> None:
        self.flush()
        if self.polling and now >= self.next_poll:
            self.next_poll = now + self.polling
            self.send_counters()

    def send_counters(self) -> None:
        samples = [self.agent.counter_sample(port_counters(self.dp, p)) for p in self.ports()]
        if samples:
            self.out.send(self.agent.datagrams(samples, self.dp.now_ms()))

    def stop(self) -> None:
        self.dp.flow_set_sampling(self.br, 0, 0)
        self.flush()
        self.out.close()

    def stats(self) -> dict[str, Any]:
        return {"datagrams": self.agent.datagram_seq, "samples": self.samples,
                "sampling": self.dp.flow_sampling_stats(self.br),
                "collectors": self.out.stats()}


class BridgeExport:
    """The exports of one bridge, each started, changed and stopped alone."""

    def __init__(self, dp: Datapath, br: int, ports: PortsOf) -> None:
        self.dp, self.br, self.ports = dp, br, ports
        self.fe = FlowExport()
        self.netflow: _NetFlow | None = None
        self.ipfix: _Ipfix | None = None
        self.sflow: _Sflow | None = None

    @property
    def active(self) -> bool:
        return bool(self.netflow or self.ipfix or self.sflow)

    def apply(self, fe: FlowExport) -> None:
        """Make the running exports match fe: a protocol whose settings did
        not change keeps running (and counting) untouched.  If one cannot
        start (no memory for its cache), what was running is put back."""
        old = self.fe
        try:
            self._apply(fe)
        except BaseException:
            self._apply(old)
            raise

    def _apply(self, fe: FlowExport) -> None:
        for proto in ("netflow", "ipfix", "sflow"):
            if self.fe.protocol(proto) == fe.protocol(proto):
                continue
            running = getattr(self, proto)
            if running:
                running.stop()
                setattr(self, proto, None)
            # what runs now is "off" for this protocol, whatever comes next
            off: dict[str, Any] = {k: None for k in self.fe.protocol(proto)}
            off[proto] = ()
            self.fe = replace(self.fe, **off)
            if getattr(fe, proto):
                if proto == "netflow":
                    self.netflow = _NetFlow(self.dp, self.br, fe)
                elif proto == "ipfix":
                    self.ipfix = _Ipfix(self.dp, self.br, fe)
                else:
                    self.sflow = _Sflow(self.dp, self.br, fe, self.ports)
            self.fe = replace(self.fe, **fe.protocol(proto))

    def tick(self, now: float) -> None:
        for exp in (self.netflow, self.ipfix):
            if exp:
                exp.tick()
        if self.sflow:
            self.sflow.tick(now)

    def stop(self) -> None:
        self.apply(FlowExport())

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("netflow", "ipfix", "sflow"):
            exp = getattr(self, name)
            if exp:
                out[name] = exp.stats()
        return out


class FlowExports:
    """Every bridge's exports, and the once-a-second timer that drives them
    (running only while some bridge exports something)."""

    def __init__(self, dp: Datapath, loop: asyncio.AbstractEventLoop | None,
                 upcalls: UpcallChannel) -> None:
        self.dp = dp
        self.loop = loop
        self.bridges: dict[str, BridgeExport] = {}
        self._timer: asyncio.TimerHandle | None = None
        upcalls.register(UPCALL_SAMPLE, self._on_sample)

    def _on_sample(self, up: Upcall) -> None:
        for be in self.bridges.values():
            if be.br == up.bridge and be.sflow:
                be.sflow.on_sample(up)
                return

    def apply(self, bridge: str, br_id: int, fe: FlowExport | None, ports: PortsOf) -> None:
        be = self.bridges.get(bridge)
        if be is None or be.br != br_id:
            be = self.bridges[bridge] = BridgeExport(self.dp, br_id, ports)
        be.apply(fe or FlowExport())
        if not be.active:
            del self.bridges[bridge]
        self._arm()

    def forget(self, bridge: str) -> None:
        """The bridge is going away: export what it counted, then drop it."""
        be = self.bridges.pop(bridge, None)
        if be:
            try:
                be.stop()
            except Exception:   # the engine bridge may already be gone
                log.exception("flow export of %s: final collection failed", bridge)
        self._arm()

    def stop(self) -> None:
        for name in list(self.bridges):
            self.forget(name)

    def stats(self, bridge: str) -> dict[str, Any]:
        be = self.bridges.get(bridge)
        return be.stats() if be else {}

    def tick(self) -> None:
        now = self.loop.time() if self.loop else 0.0
        for name, be in list(self.bridges.items()):
            try:
                be.tick(now)
            except Exception:
                log.exception("flow export of %s failed this second", name)

    def _arm(self) -> None:
        if self.loop is None:
            return
        if self.bridges and self._timer is None:
            self._timer = self.loop.call_later(TICK_S, self._fire)
        elif not self.bridges and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self.tick()
        self._arm()
