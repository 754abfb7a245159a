"""IPFIX export (RFC 7011) over UDP: templates, sampling options, flow records.

Three templates, one per kind of flow the cache keeps: IPv4 (256), IPv6
(257) and other Ethernet traffic (258), each with the ports' ofport
numbers, VLAN, MACs and ethertype.  Counts are *deltas* since the flow's
previous record (packetDeltaCount, octetDeltaCount): each packet is counted
once, in one record.  (Open vSwitch 3.1 sends exporter-wide running totals,
which nfdump then shows as every flow's own count.)

Sampling is said in an options record (template 259, scoped to the
observation domain): samplingInterval / samplingAlgorithm (1 = 1-in-N
deterministic) and the newer samplingPacketInterval / samplingPacketSpace
(1 selected, N - 1 skipped).  The counts in flow records are of the sampled
packets, as RFC 7011 collectors expect.

Over UDP a collector may start (or restart) at any time, so templates and
the options record are sent first and then every template_interval seconds
(RFC 7011, section 8.4).  The sequence number counts the data records sent
before each message, options records included.
"""
from __future__ import annotations

import struct
import time
from typing import Callable, Iterable

from ..datapath import FlowRecord

TEMPLATE_V4, TEMPLATE_V6, TEMPLATE_L2, TEMPLATE_SAMPLING = 256, 257, 258, 259
MAX_MESSAGE = 1400          # stays within a 1500-byte MTU with IP and UDP headers
U32 = 0xFFFFFFFF

Field = tuple[int, int, Callable[[FlowRecord], int | bytes]]   # IE id, length, value

_PORTS: list[Field] = [
    (10, 4, lambda r: r.in_port),            # ingressInterface
    (14, 4, lambda r: r.out_port),           # egressInterface
    (58, 2, lambda r: r.vlan),               # vlanId
    (56, 6, lambda r: r.src_mac),            # sourceMacAddress
    (80, 6, lambda r: r.dst_mac),            # destinationMacAddress
    (256, 2, lambda r: r.ethertype),         # ethernetType
]
_ICMP = (1, 58)


def _l4(icmp_ie: int) -> list[Field]:
    return [
        (4, 1, lambda r: r.proto),           # protocolIdentifier
        (5, 1, lambda r: r.tos),             # ipClassOfService
        (6, 2, lambda r: r.tcp_flags),       # tcpControlBits
        (7, 2, lambda r: 0 if r.proto in _ICMP else r.src_port),   # sourceTransportPort
        (11, 2, lambda r: 0 if r.proto in _ICMP else r.dst_port),  # destinationTransportPort
        (icmp_ie, 2, lambda r: r.dst_port if r.proto in _ICMP else 0),  # icmpTypeCode*
    ]


def _counts(wall_ms: Callable[[int], int]) -> list[Field]:
    return [
        (2, 8, lambda r: r.packets),         # packetDeltaCount
        (1, 8, lambda r: r.bytes),           # octetDeltaCount
        (152, 8, lambda r: wall_ms(r.first_ms)),  # flowStartMilliseconds
        (153, 8, lambda r: wall_ms(r.last_ms)),   # flowEndMilliseconds
        (136, 1, lambda r: r.end_reason),    # flowEndReason
    ]


def _pack(value: int | bytes, length: int) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.to_bytes(length, "big")


class Ipfix:
    """Turns flow records into IPFIX messages for one observation domain."""

    def __init__(self, obs_domain_id: int, sampling: int, template_interval: int) -> None:
        self.domain = obs_domain_id
        self.sampling = sampling
        self.template_interval = template_interval
        self.sequence = 0
        self.templates_sent_at: float | None = None
        self._offset_ms = 0          # wall clock ms minus datapath clock ms
        wall = self._wall_ms
        self.templates: dict[int, list[Field]] = {
            TEMPLATE_V4: [(8, 4, lambda r: r.src), (12, 4, lambda r: r.dst)] + _PORTS +
            _l4(32) + _counts(wall),
            TEMPLATE_V6: [(27, 16, lambda r: r.src), (28, 16, lambda r: r.dst)] + _PORTS +
            _l4(139) + _counts(wall),
            TEMPLATE_L2: _PORTS + _counts(wall),
        }

    def _wall_ms(self, t_ms: int) -> int:
        return t_ms + self._offset_ms

    @staticmethod
    def template_for(r: FlowRecord) -> int:
        return {0x0800: TEMPLATE_V4, 0x86DD: TEMPLATE_V6}.get(r.ethertype, TEMPLATE_L2)

    def _template_set(self) -> bytes:
        body = b""
        for tid, flds in self.templates.items():
            body += struct.pack("!HH", tid, len(flds))
            body += b"".join(struct.pack("!HH", ie, ln) for ie, ln, _ in flds)
        # options template: scope observationDomainId; samplingInterval,
        # samplingAlgorithm, samplingPacketInterval, samplingPacketSpace
        opts = struct.pack("!HHH", TEMPLATE_SAMPLING, 5, 1) + b"".join(
            struct.pack("!HH", ie, ln) for ie, ln in ((149, 4), (34, 4), (35, 1), (305, 4),
                                                       (306, 4)))
        return (struct.pack("!HH", 2, 4 + len(body)) + body +
                struct.pack("!HH", 3, 4 + len(opts)) + opts)

    def _options_set(self) -> bytes:
        rec = struct.pack("!IIBII", self.domain, self.sampling, 1, 1, self.sampling - 1)
        return struct.pack("!HH", TEMPLATE_SAMPLING, 4 + len(rec)) + rec

    def _message(self, sets: bytes, n_records: int, wall: float) -> bytes:
        head = struct.pack("!HHIII", 10, 16 + len(sets), int(wall) & U32,
                           self.sequence & U32, self.domain)
        self.sequence += n_records
        return head + sets

    def _record(self, tid: int, r: FlowRecord) -> bytes:
        return b"".join(_pack(get(r), ln) for _, ln, get in self.templates[tid])

    def messages(self, records: Iterable[FlowRecord], now_ms: int,
                 wall: float | None = None) -> list[bytes]:
        """now_ms: the datapath clock now; wall: seconds since the epoch."""
        wall = time.time() if wall is None else wall
        self._offset_ms = int(wall * 1000) - now_ms
        out = []
        if self.templates_sent_at is None or wall - self.templates_sent_at >= \
                self.template_interval:
            out.append(self._message(self._template_set() + self._options_set(), 1, wall))
            self.templates_sent_at = wall
        by_tid: dict[int, list[bytes]] = {}
        for r in records:
            tid = self.template_for(r)
            by_tid.setdefault(tid, []).append(self._record(tid, r))
        for tid, recs in by_tid.items():
            i = 0
            while i < len(recs):
                body, n = b"", 0
                while i < len(recs) and 16 + 4 + len(body) + len(recs[i]) <= MAX_MESSAGE:
                    body += recs[i]
                    i += 1
                    n += 1
                out.append(self._message(struct.pack("!HH", tid, 4 + len(body)) + body, n,
                                         wall))
        return out
