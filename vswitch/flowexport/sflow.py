"""sFlow version 5 datagrams (sflow.org, sflow_version_5.txt): packet
samples (a frame's first bytes, with the sampling rate and pool) and counter
samples (generic interface counters, one per port every polling interval).

Interfaces are named by their ofport number as ifIndex, as in NetFlow and
IPFIX, so one number means one port to every collector.  Counter samples
go out for every port of the bridge, TAPs in namespaces included (Open
vSwitch 3.1 sends none for those).  Counters are from the switch's side of
the port: ifIn* is what the switch received from it.  Counters the engine
does not keep (multicast and broadcast split) are "unknown": all ones, as
the specification asks.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

U32 = 0xFFFFFFFF
UNKNOWN = U32
MAX_DATAGRAM = 1400
FLOW_SAMPLE, COUNTERS_SAMPLE = 1, 2
RAW_HEADER, GENERIC_IF_COUNTERS = 1, 1
OUTPUT_MULTIPLE = 0x80000000   # the output field of a flood: "several", count unknown
OUTPUT_DISCARD = 0x40000000    # dropped (reason 0: unknown)


@dataclass(frozen=True)
class PortCounters:
    ifindex: int
    up: bool
    in_octets: int
    in_packets: int
    in_discards: int
    out_octets: int
    out_packets: int
    out_discards: int


@dataclass(frozen=True)
class PacketSample:
    input: int            # ofport
    output: int           # ofport, or OUTPUT_MULTIPLE / OUTPUT_DISCARD
    frame_length: int     # the whole frame
    header: bytes         # its first bytes
    sample_pool: int      # frames seen where this one was picked
    drops: int            # samples lost before this one


def _counters_record(c: PortCounters) -> bytes:
    body = struct.pack("!IIQII" "QIIIIII" "QIIIIII",
                       c.ifindex, 6, 0, 1, 3 if c.up else 1,
                       c.in_octets, c.in_packets & U32, UNKNOWN, UNKNOWN, c.in_discards & U32,
                       0, 0,
                       c.out_octets, c.out_packets & U32, UNKNOWN, UNKNOWN,
                       c.out_discards & U32, 0, 0)
    return struct.pack("!II", GENERIC_IF_COUNTERS, len(body)) + body


class SflowAgent:
    """Builds datagrams for one agent (one bridge) and keeps its sequences."""

    def __init__(self, agent: str, sub_agent_id: int, boot_ms: int) -> None:
        addr = ipaddress.ip_address(agent)
        self.agent = struct.pack("!I", 1 if addr.version == 4 else 2) + addr.packed
        self.sub_agent_id = sub_agent_id
        self.boot_ms = boot_ms
        self.datagram_seq = 0
        self.sample_seq: dict[tuple[int, int], int] = {}   # (kind, source) -> sequence

    def _next(self, kind: int, source: int) -> int:
        n = self.sample_seq.get((kind, source), 0) + 1
        self.sample_seq[(kind, source)] = n
        return n

    def counter_sample(self, c: PortCounters) -> bytes:
        rec = _counters_record(c)
        body = struct.pack("!III", self._next(COUNTERS_SAMPLE, c.ifindex), c.ifindex, 1) + rec
        return struct.pack("!II", COUNTERS_SAMPLE, len(body)) + body

    def packet_sample(self, s: PacketSample, rate: int) -> bytes:
        hdr = s.header
        pad = b"\0" * (-len(hdr) % 4)
        raw = struct.pack("!IIII", 1, s.frame_length + 4, 4, len(hdr)) + hdr + pad
        rec = struct.pack("!II", RAW_HEADER, len(raw)) + raw
        body = struct.pack("!IIIIIIII", self._next(FLOW_SAMPLE, s.input), s.input, rate,
                           s.sample_pool & U32, s.drops & U32, s.input, s.output, 1) + rec
        return struct.pack("!II", FLOW_SAMPLE, len(body)) + body

    def datagrams(self, samples: list[bytes], now_ms: int) -> list[bytes]:
        """Pack samples into as few datagrams as fit."""
        out: list[bytes] = []
        i = 0
        while i < len(samples):
            chunk: list[bytes] = []
            size = 28 + len(self.agent)
            while i < len(samples) and (not chunk or size + len(samples[i]) <= MAX_DATAGRAM):
                chunk.append(samples[i])
                size += len(samples[i])
                i += 1
            self.datagram_seq += 1
            head = struct.pack("!I", 5) + self.agent + struct.pack(
                "!IIII", self.sub_agent_id, self.datagram_seq,
                max(0, now_ms - self.boot_ms) & U32, len(chunk))
            out.append(head + b"".join(chunk))
        return out
