"""The control plane's end of the upcall channel (csrc/upcall.c).

The engine queues frames meant for the control plane -- capture copies,
frames an interface claims for a protocol (LACPDUs), sampled frames (sFlow)
-- in one bounded ring and makes an eventfd readable while any wait.  One
reader on the daemon's asyncio loop (add_reader on that fd) drains the ring
in batches and hands each upcall to the handler registered for its reason.

Handlers run on the event loop: they must not block (queue the work, or
write without waiting).  A batch is bounded, so a flood of upcalls never
starves the control socket: what is left keeps the fd readable and the loop
comes back to it after everything else that is ready.  When Python falls
behind, the engine drops and counts (``stats()``); nothing grows without
bound.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable

from ._engine import ffi
from .datapath import UPCALL_REASONS, Datapath, UpcallStats
from .errors import VswitchError

log = logging.getLogger(__name__)

# Upcalls handled per wake-up before the loop runs other callbacks.
BATCH = 256
# Big enough for any frame the engine handles (VS_MAX_FRAME).
BUF_SIZE = 65536


@dataclass(frozen=True, slots=True)
class Upcall:
    reason: int           # datapath.UPCALL_CAPTURE / UPCALL_SLOW_PROTO / UPCALL_SAMPLE
    bridge: int           # engine ids
    port: int
    iface: int
    direction: int        # datapath.UPCALL_RX (received on iface) or UPCALL_TX (sent by it)
    orig_len: int         # the frame's length on the wire
    time_ns: int          # CLOCK_REALTIME when the engine queued it
    args: tuple[int, int, int, int]   # reason-specific words
    frame: bytes          # its first len bytes (all of it unless snapped)


Handler = Callable[[Upcall], None]


class UpcallChannel:
    def __init__(self, dp: Datapath) -> None:
        self.dp = dp
        self._handlers: dict[int, Handler] = {}
        self._status: dict[int, Callable[[], Any]] = {}
        self._meta = ffi.new("struct vs_upcall *")
        self._buf = ffi.new("uint8_t[]", BUF_SIZE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self.unhandled = 0        # upcalls of a reason nobody registered
        self.handler_errors = 0

    def register(self, reason: int, handler: Handler,
                 status: Callable[[], Any] | None = None) -> None:
        """Send upcalls of `reason` to `handler` (one handler per reason);
        status(), if given, describes the handler's state for upcall/show."""
        if reason not in UPCALL_REASONS:
            raise VswitchError("EINVAL", f"unknown upcall reason {reason}")
        if reason in self._handlers and self._handlers[reason] is not handler:
            raise VswitchError("EBUSY", f"upcall reason {UPCALL_REASONS[reason]} already "
                                        "has a handler")
        self._handlers[reason] = handler
        if status is not None:
            self._status[reason] = status

    def unregister(self, reason: int) -> None:
        self._handlers.pop(reason, None)
        self._status.pop(reason, None)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fd = self.dp.upcall_fd()
        loop.add_reader(self._fd, self.drain)

    def detach(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None

    def drain(self, limit: int = BATCH) -> int:
        """Dispatch up to `limit` waiting upcalls; returns how many."""
        meta, buf, n = self._meta, self._buf, 0
        while n < limit and self.dp.upcall_recv(meta, buf, BUF_SIZE):
            n += 1
            handler = self._handlers.get(meta.reason)
            if handler is None:
                self.unhandled += 1
                continue
            up = Upcall(meta.reason, meta.bridge, meta.port, meta.iface, meta.direction,
                        meta.orig_len, meta.time_ns, tuple(meta.args),
                        ffi.buffer(buf, meta.len)[:])
            try:
                handler(up)
            except Exception:   # one bad handler must not stop the channel
                self.handler_errors += 1
                log.exception("upcall handler for %s failed", UPCALL_REASONS[up.reason])
        return n

    def stats(self) -> UpcallStats:
        return self.dp.upcall_stats()

    def show(self) -> dict[str, Any]:
        """upcall/show: the queue's counters and each handler's state."""
        return {**self.stats().to_json(), "unhandled": self.unhandled,
                "handler_errors": self.handler_errors,
                "handlers": {UPCALL_REASONS[r]: (self._status[r]() if r in self._status else None)
                             for r in sorted(self._handlers)}}
