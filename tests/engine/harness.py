"""Drive the C engine through cffi with real file descriptors.

Each port gets one end of an AF_UNIX SOCK_SEQPACKET socketpair (datagram
boundaries, like a TAP); the test keeps the other end.  Frames go in with
Datapath.inject(), which runs the whole forwarding path in the caller's
thread, and come out as datagrams on the test's ends, so a test sees
exactly the bytes the engine would write to a TAP.  No thread runs unless a
test starts one, so "nothing arrived" is a definite answer.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from vswitch.datapath import IFACE_FD, VNET_HDR, Datapath


@dataclass
class TestPort:
    port: int
    iface: int
    sock: socket.socket
    vnet: bool


class Engine:
    def __init__(self, mac_table_size: int = 8192, mac_aging: int = 300) -> None:
        self.dp = Datapath()
        self.dp.set_clock(1_000_000)
        self.br = self.dp.add_bridge(mac_table_size, mac_aging)
        self.ports: list[TestPort] = []

    def close(self) -> None:
        self.dp.close()
        for p in self.ports:
            p.sock.close()

    def add_port(self, br: int | None = None, vnet: bool = False, mtu: int = 1500,
                 bond_mode: str | None = None, members: int = 1) -> TestPort:
        port = self.dp.add_port(self.br if br is None else br)
        if bond_mode:
            self.dp.set_bond_mode(port, bond_mode)
        first = None
        for _ in range(members):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            theirs.setblocking(False)
            iface = self.dp.add_iface(port, ours.detach(), IFACE_FD,
                                      VNET_HDR if vnet else 0, mtu)
            tp = TestPort(port, iface, theirs, vnet)
            self.ports.append(tp)
            first = first or tp
        assert first is not None
        return first

    def members(self, port: int) -> list[TestPort]:
        return [p for p in self.ports if p.port == port]

    def send(self, tp: TestPort, frame: bytes) -> None:
        self.dp.inject(tp.iface, (bytes(10) if tp.vnet else b"") + frame)

    def recv_all(self, tp: TestPort) -> list[bytes]:
        out = []
        while True:
            try:
                data = tp.sock.recv(70000)
            except BlockingIOError:
                return out
            out.append(data[10:] if tp.vnet else data)

    def advance(self, seconds: float) -> None:
        self.dp.set_clock(self.dp.now_ms() + int(seconds * 1000))
        self.dp.run_periodic()

    def stats(self, tp: TestPort):
        return self.dp.iface_stats(tp.iface)
