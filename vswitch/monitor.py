"""Link events from the kernel, delivered into the asyncio loop.

A NETLINK_ROUTE socket subscribed to RTMGRP_LINK in the daemon's namespace,
read by the loop itself (add_reader): no thread and no polling, so a bond
learns of a lost carrier within the loop's next turn.  Messages are decoded
with pyroute2's rtnetlink parser.
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Callable

from pyroute2.netlink.rtnl.marshal import MarshalRtnl

log = logging.getLogger(__name__)
RTMGRP_LINK = 1
RTM_NEWLINK = 16
RTM_DELLINK = 17
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000


@dataclass(frozen=True)
class LinkEvent:
    name: str
    index: int
    up: bool          # administratively up and with carrier
    exists: bool      # False when the interface was deleted


class LinkMonitor:
    def __init__(self, callback: Callable[[LinkEvent], None]) -> None:
        self.callback = callback
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                                  | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((0, RTMGRP_LINK))
        self._marshal = MarshalRtnl()

    def attach(self, loop) -> None:
        loop.add_reader(self.sock.fileno(), self._readable)

    def close(self, loop) -> None:
        loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as e:   # ENOBUFS: events were lost; callers re-read state
                log.warning("link monitor: %s", e)
                return
            for msg in self._marshal.parse(data):
                kind = msg["header"]["type"]
                if kind not in (RTM_NEWLINK, RTM_DELLINK):
                    continue
                name = msg.get_attr("IFLA_IFNAME")
                if not name:
                    continue
                flags = msg["flags"]
                up = bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
                event = LinkEvent(name, msg["index"], up and kind == RTM_NEWLINK,
                                  kind == RTM_NEWLINK)
                try:
                    self.callback(event)
                except Exception:
                    log.exception("link event %s", event)
