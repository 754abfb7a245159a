"""UDP to collectors, never blocking the daemon.

One connected, non-blocking socket per collector: connecting makes the
kernel report a collector that is not listening (ICMP port unreachable) as
ECONNREFUSED on a later send, which we count instead of ignoring.  A send
that would block (socket buffer full) drops the datagram and is counted
too: flow export must never slow the control plane down, let alone the
datapath.
"""
from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass

from .settings import Target

log = logging.getLogger(__name__)


@dataclass
class SendStats:
    datagrams: int = 0
    bytes: int = 0
    refused: int = 0        # ECONNREFUSED: nobody listening there
    dropped: int = 0        # EAGAIN: socket buffer full
    errors: int = 0         # anything else (unreachable network, ...)

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


class Collector:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.stats = SendStats()
        family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK |
                                  socket.SOCK_CLOEXEC)
        try:
            self.sock.connect((target.host, target.port))
        except OSError as e:   # no route: keep the socket, count every send
            log.warning("collector %s: %s", target, e.strerror)

    def local_address(self) -> str | None:
        try:
            addr = self.sock.getsockname()[0]
        except OSError:
            return None
        return None if addr in ("0.0.0.0", "::") else addr

    def send(self, datagram: bytes) -> None:
        try:
            self.sock.send(datagram)
        except (BlockingIOError, InterruptedError):
            self.stats.dropped += 1
            return
        except ConnectionRefusedError:
            self.stats.refused += 1
            return
        except OSError as e:
            if e.errno == errno.EDESTADDRREQ:   # connect failed earlier: try again
                try:
                    self.sock.connect((self.target.host, self.target.port))
                except OSError:
                    pass
            self.stats.errors += 1
            return
        self.stats.datagrams += 1
        self.stats.bytes += len(datagram)

    def close(self) -> None:
        self.sock.close()


class Collectors:
    """The same datagrams to every collector of one protocol."""

    def __init__(self, targets: tuple[Target, ...]) -> None:
        self.list = [Collector(t) for t in targets]

    def send(self, datagrams: list[bytes]) -> None:
        for c in self.list:
            for d in datagrams:
                c.send(d)

    def stats(self) -> dict[str, dict[str, int]]:
        return {str(c.target): c.stats.to_json() for c in self.list}

    def close(self) -> None:
        for c in self.list:
            c.close()
