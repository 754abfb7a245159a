"""`vswitchctl capture PORT`: the frames crossing a port, as pcap.

The engine copies every frame an interface receives or sends (as on the
wire: VLAN tags in place, a GSO frame whole, as tcpdump in the namespace
sees it) into the upcall channel while capture is on for it; this module
turns those copies into pcap records for each client capturing that port.

Capture is on in the engine exactly for the interfaces some session wants,
and off otherwise (then it costs one predictable branch per burst received
and per frame sent).  Several sessions may capture one port: each gets
every frame.  A session's records wait in a bounded buffer; a client that
reads too slowly loses frames (counted, reported at the end), never the
daemon's memory or its event loop's time.

The control connection becomes a stream (see protocol.py): after the
"stream" reply come length-prefixed chunks of pcap, then a zero length and
a closing JSON line with the counts.  The session ends when --count frames
were captured, when the client closes its side, or when the port goes away.
"""
from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import protocol
from .config import ConfigError, check_int
from .datapath import UPCALL_CAPTURE
from .errors import VswitchError, invalid, not_found
from .upcall import Upcall

if TYPE_CHECKING:
    from .api import Params
    from .switch import PortRuntime, Switch

log = logging.getLogger(__name__)

LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 65535
MAX_BUFFERED = 8 * 1024 * 1024     # bytes of pcap records waiting per session
CHUNK = 256 * 1024                 # at most this much per write to a client
RECHECK_S = 1.0                    # how often sessions look at their port again


def pcap_header(snaplen: int) -> bytes:
    """The classic pcap file header (microsecond timestamps): read by
    tcpdump -r, Wireshark, tshark and every pcap library."""
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def pcap_record_header(up: Upcall) -> bytes:
    sec, nsec = divmod(up.time_ns, 1_000_000_000)
    return struct.pack("<IIII", sec, nsec // 1000, len(up.frame), up.orig_len)


@dataclass(eq=False)
class Session:
    port: str
    prt: PortRuntime                 # the port as it was when the capture began
    count: int | None
    snaplen: int
    records: deque[bytes] = field(default_factory=deque)   # record headers and frames
    buffered: int = 0
    captured: int = 0
    dropped: int = 0
    end: str | None = None           # why it ended
    queue_drops_before: int = 0      # the engine's capture drops when it began
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, up: Upcall) -> None:
        if self.end is not None:
            return
        size = 16 + len(up.frame)
        if self.buffered + size > MAX_BUFFERED:
            self.dropped += 1        # the client is not keeping up
            return
        # header and frame apart: the frame is copied once, into the chunk
        self.records.append(pcap_record_header(up))
        self.records.append(up.frame)
        self.buffered += size
        self.captured += 1
        if self.count is not None and self.captured >= self.count:
            self.end = "count"
        self.wake.set()

    def finish(self, why: str) -> None:
        if self.end is None:
            self.end = why
        self.wake.set()

    def take(self) -> bytes:
        out: list[bytes] = []
        size = 0
        while self.records and size < CHUNK:
            rec = self.records.popleft()
            out.append(rec)
            size += len(rec)
        self.buffered -= size
        return b"".join(out)


class CaptureManager:
    def __init__(self, sw: Switch) -> None:
        self.sw = sw
        self.sessions: set[Session] = set()
        self._by_iface: dict[int, list[Session]] = {}
        self._enabled: dict[int, int] = {}     # engine iface -> snaplen set there
        self._timer: asyncio.TimerHandle | None = None
        sw.upcalls.register(UPCALL_CAPTURE, self._on_upcall, self.status)

    def status(self) -> list[dict[str, Any]]:
        return [{"port": s.port, "captured": s.captured, "dropped": s.dropped,
                 "buffered_bytes": s.buffered, "count": s.count}
                for s in sorted(self.sessions, key=lambda s: s.port)]

    # --- engine side --------------------------------------------------------------
    def _on_upcall(self, up: Upcall) -> None:
        for s in self._by_iface.get(up.iface, ()):
            if s.prt.port_id == up.port:     # not a reused iface id of another port
                s.add(up)

    def _current(self, s: Session) -> PortRuntime | None:
        """The session's port if it still exists as the same port."""
        found = self.sw.config.find_port(s.port)
        if not found:
            return None
        rt = self.sw.bridges.get(found[0].name)
        prt = rt.ports.get(s.port) if rt else None
        return prt if prt is s.prt else None

    def reconcile(self) -> None:
        """Capture on in the engine for exactly the interfaces some session
        wants; sessions whose port is gone end.  Called when sessions come
        and go, after every configuration change, and every RECHECK_S (an
        interface re-attached after a link event has a new engine id)."""
        want: dict[int, int] = {}
        by_iface: dict[int, list[Session]] = {}
        for s in list(self.sessions):
            if s.end is not None:
                continue
            if self._current(s) is None:
                s.finish("port deleted")
                continue
            for i in s.prt.ifaces:
                want[i] = max(want.get(i, 0), s.snaplen)
                by_iface.setdefault(i, []).append(s)
        for i in set(self._enabled) - set(want):
            self._set(i, 0)
        for i, snap in want.items():
            self._set(i, snap)     # again each time: an id may have been reused
        self._enabled = want
        self._by_iface = by_iface
        if self._timer:
            self._timer.cancel()
            self._timer = None
        if self.sessions and self.sw.loop:
            self._timer = self.sw.loop.call_later(RECHECK_S, self.reconcile)

    def _set(self, iface: int, snaplen: int) -> None:
        try:
            self.sw.dp.set_capture(iface, snaplen)
        except VswitchError as e:
            if e.code != "ENOENT":    # an interface that is gone captures nothing
                raise

    # --- the streaming request ---------------------------------------------------------
    def open(self, p: Params) -> Session:
        """Validate a capture request and start its session."""
        name = p.text("port")
        try:
            raw_count, raw_snap = p.opt_value("count"), p.opt_value("snaplen")
            count = None if raw_count is None else \
                check_int(raw_count, ("count",), "count", 1, 2**31 - 1)
            snaplen = DEFAULT_SNAPLEN if raw_snap is None else \
                check_int(raw_snap, ("snaplen",), "snaplen", 14, DEFAULT_SNAPLEN)
        except ConfigError as e:
            raise invalid(f"capture: {e.message}") from None
        p.done()
        found = self.sw.config.find_port(name)
        if not found:
            raise not_found(f"no port named {name}")
        prt = self.sw.bridges[found[0].name].ports[name]
        if not prt.ifaces:
            state = self.sw.port_state(prt)
            raise VswitchError("ENETDOWN", f"port {name} has no interface to capture on "
                                           f"({state[1] or state[0]})")
        s = Session(name, prt, count, snaplen,
                    queue_drops_before=self._queue_drops())
        self.sessions.add(s)
        self.reconcile()
        log.info("capture on %s started (%d session(s))", name, len(self.sessions))
        return s

    def _queue_drops(self) -> int:
        return self.sw.upcalls.stats().dropped["capture"]

    def close(self, s: Session) -> None:
        self.sessions.discard(s)
        self.reconcile()
        log.info("capture on %s ended (%s): %d frames, %d dropped", s.port, s.end,
                 s.captured, s.dropped)

    @staticmethod
    def _send(writer: asyncio.StreamWriter, s: Session) -> None:
        data = s.take()
        writer.write(protocol.chunk_header(len(data)))
        writer.write(data)

    async def stream(self, req_id: Any, p: Params, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        s = self.open(p)
        try:
            writer.write(protocol.reply(req_id, {"stream": "pcap", "linktype": LINKTYPE_ETHERNET,
                                                 "snaplen": s.snaplen}))
            writer.write(protocol.chunk(pcap_header(s.snaplen)))
            await writer.drain()
            # Anything from the client (its end of file, above all) stops it.
            client = asyncio.ensure_future(reader.read(1))
            try:
                while True:
                    # (a busy port never empties the buffer: look at the
                    # client between chunks, or its Ctrl-C would go unseen)
                    while s.records and not client.done():
                        self._send(writer, s)
                        await writer.drain()
                    if client.done():
                        s.finish("stopped")
                    if s.end is not None:
                        break
                    s.wake.clear()
                    waiter = asyncio.ensure_future(s.wake.wait())
                    done, _ = await asyncio.wait({waiter, client},
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if client in done:
                        waiter.cancel()
                        s.finish("stopped")
            finally:
                client.cancel()
            while s.records:         # what was captured before the end
                self._send(writer, s)
                await writer.drain()
            writer.write(protocol.chunk(b""))
            # queue_dropped: copies the engine could not queue while this
            # capture ran (of any capture: the queue is shared)
            writer.write(protocol.reply(req_id, {
                "captured": s.captured, "dropped": s.dropped, "end": s.end,
                "queue_dropped": self._queue_drops() - s.queue_drops_before}))
            await writer.drain()
        finally:
            s.finish("client gone")
            self.close(s)
