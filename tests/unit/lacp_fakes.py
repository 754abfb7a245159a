"""A fake clock for the LACP machines, and wires between two of them."""
from __future__ import annotations

import heapq
from typing import Any, Callable

from vswitch.lacp.machine import Lacp, LacpSettings


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeTimers:
    """call_later/time like asyncio's loop; time moves only by advance()."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, FakeHandle, Callable[..., object], tuple]] = []
        self._seq = 0

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any
                   ) -> FakeHandle:
        h = FakeHandle()
        heapq.heappush(self._queue, (self.now + delay, self._seq, h, callback, args))
        self._seq += 1
        return h

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end:
            t, _, h, cb, args = heapq.heappop(self._queue)
            self.now = t
            if not h.cancelled:
                cb(*args)
        self.now = end


def settings(sysid: int, active: bool = True, fast: bool = True, fallback: bool = False,
             key: int = 1, priority: int = 65534) -> LacpSettings:
    return LacpSettings(active=active, fast=fast, fallback_ab=fallback,
                        system_id=bytes([2, 0, 0, 0, 0, sysid]), system_priority=priority,
                        key=key)


class Net:
    """Bonds (Lacp objects) on one fake clock, with point-to-point links
    between their members that can be cut in either direction."""

    DELAY = 0.001

    def __init__(self) -> None:
        self.timers = FakeTimers()
        self.bonds: dict[str, Lacp] = {}
        self.peer: dict[tuple[str, str], tuple[str, str]] = {}
        self.cut: set[tuple[str, str]] = set()    # (bond, member) whose sends are lost
        self.sent: list[tuple[str, str, bytes]] = []
        self.changes: dict[str, int] = {}

    def bond(self, name: str, s: LacpSettings, members: list[str]) -> Lacp:
        def send(member: str, frame: bytes, bond: str = name) -> bool:
            self.sent.append((bond, member, frame))
            dst = self.peer.get((bond, member))
            if dst is not None and (bond, member) not in self.cut:
                self.timers.call_later(self.DELAY, self._deliver, dst, frame)
            return True

        def changed(bond: str = name) -> None:
            self.changes[bond] = self.changes.get(bond, 0) + 1
        lacp = Lacp(name, s, self.timers, send, changed)
        self.bonds[name] = lacp
        for i, m in enumerate(members):
            lacp.add_port(m, 10 + i, bytes([2, 1, 0, 0, len(self.bonds), i]), False)
        return lacp

    def _deliver(self, dst: tuple[str, str], frame: bytes) -> None:
        self.bonds[dst[0]].receive(dst[1], frame)

    def link(self, a: tuple[str, str], b: tuple[str, str], up: bool = True) -> None:
        self.peer[a], self.peer[b] = b, a
        if up:
            self.set_link(a, True)

    def set_link(self, a: tuple[str, str], up: bool) -> None:
        b = self.peer[a]
        for bond, member in (a, b):
            self.bonds[bond].set_port(member, enabled=up)

    def run(self, seconds: float) -> None:
        self.timers.advance(seconds)

    def distributing(self, bond: str) -> list[str]:
        lacp = self.bonds[bond]
        return [n for n in lacp.ports if lacp.may_enable(n)]
