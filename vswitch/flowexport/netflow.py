"""NetFlow v5 export: flow records of IPv4 traffic, 30 to a datagram.

The format is Cisco's (a 24-byte header, 48-byte records, all big endian);
Open vSwitch's ofproto/netflow.c fills it the same way, with two
differences we keep on purpose:

- flow_sequence counts *flows* sent before this datagram, as the format
  says, so a collector that checks it (nfdump's "Sequence failures") sees
  none; OVS increments it by one per datagram.
- A ToS and a sampling interval of 1 are reported as they are; interface
  numbers are the ports' ofport numbers (`vswitchctl show`), 65535 for a
  flood and 65533 for a drop as in OVS.
"""
from __future__ import annotations

import struct
import time
from typing import Iterable

from ..datapath import FlowRecord

HEADER = struct.Struct("!HHIIIIBBH")
RECORD = struct.Struct("!4s4s4sHHIIIIHHBBBBHHBBH")
MAX_RECORDS = 30
U32 = 0xFFFFFFFF


class NetFlowV5:
    """Turns flow records into NetFlow v5 datagrams; keeps the sequence."""

    def __init__(self, boot_ms: int, engine_type: int = 0, engine_id: int = 0) -> None:
        self.boot_ms = boot_ms          # datapath clock when export started: sysUptime 0
        self.engine_type = engine_type
        self.engine_id = engine_id
        self.flow_sequence = 0

    def _uptime(self, t_ms: int) -> int:
        return max(0, t_ms - self.boot_ms) & U32

    def datagrams(self, records: Iterable[FlowRecord], now_ms: int,
                  wall: float | None = None) -> list[bytes]:
        """now_ms: the datapath clock now; wall: seconds since the epoch."""
        recs = [r for r in records if r.ethertype == 0x0800]
        wall = time.time() if wall is None else wall
        out = []
        for i in range(0, len(recs), MAX_RECORDS):
            chunk = recs[i:i + MAX_RECORDS]
            secs = int(wall)
            head = HEADER.pack(5, len(chunk), self._uptime(now_ms), secs,
                               int((wall - secs) * 1e9), self.flow_sequence & U32,
                               self.engine_type, self.engine_id, 0)
            body = b"".join(self._record(r) for r in chunk)
            self.flow_sequence += len(chunk)
            out.append(head + body)
        return out

    def _record(self, r: FlowRecord) -> bytes:
        icmp = r.proto == 1
        return RECORD.pack(r.src, r.dst, bytes(4), r.in_port, r.out_port,
                           min(r.packets, U32), min(r.bytes, U32),
                           self._uptime(r.first_ms), self._uptime(r.last_ms),
                           0 if icmp else r.src_port, r.dst_port,
                           0, r.tcp_flags, r.proto, r.tos, 0, 0, 0, 0, 0)


assert HEADER.size == 24 and RECORD.size == 48
