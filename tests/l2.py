"""Raw Ethernet inside a test namespace: send any frame, receive frames
with their VLAN tags (this kernel has no 802.1Q sub-interfaces, so tagged
traffic is sent and captured this way).

A socket is opened inside a namespace by switching the calling thread into
it with setns(2), creating the socket, and switching back: a socket stays in
the namespace it was created in.  Receiving asks for PACKET_AUXDATA, because
the kernel moves a received VLAN tag out of the frame; it is put back here.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import struct
import time
from typing import Callable, Iterator

SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
ETH_P_ALL = 0x0003
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def in_netns(netns: str) -> Iterator[None]:
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


class RawPort:
    """An AF_PACKET socket on one interface, possibly inside a namespace."""

    def __init__(self, ifname: str, netns: str | None = None) -> None:
        ctx = in_netns(netns) if netns else contextlib.nullcontext()
        with ctx:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            s.bind((ifname, ETH_P_ALL))
        self.sock = s

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawPort":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def drain(self) -> None:
        while select.select([self.sock], [], [], 0)[0]:
            self.sock.recv(70000)

    def recv(self, timeout: float = 2.0) -> bytes | None:
        """The next incoming frame (tag restored), or None at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            data, anc, _flags, addr = self.sock.recvmsg(70000, socket.CMSG_SPACE(32))
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            for level, kind, blob in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(blob) >= 20:
                    status, _len, _snap, _mac, _net, tci, tpid = struct.unpack(
                        "<IIIHHHH", blob[:20])
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = 0x8100
                        data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
            return data

    def expect(self, match: Callable[[bytes], bool], timeout: float = 3.0) -> bytes | None:
        """The first incoming frame for which match() is true."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            frame = self.recv(left)
            if frame is None:
                return None
            if match(frame):
                return frame
        return None
