"""AF_PACKET sockets for `system` ports (existing interfaces, veth ends).

Options, and why:
  PACKET_VNET_HDR         frames carry a virtio-net header both ways, so a
                          veth peer's partial checksums and TSO segments
                          are described rather than silently broken;
  PACKET_AUXDATA          the VLAN tag veth strips on receive comes back
                          beside the frame; the engine reinserts it;
  PACKET_IGNORE_OUTGOING  our own transmissions are not read back;
  promiscuous membership  a NIC delivers frames for every MAC (veth does
                          anyway); dropped with the socket.
The socket is created with protocol 0 (no frames) and bound to ETH_P_ALL
on the interface only once configured, so no frame slips in early.
"""
from __future__ import annotations

import socket
import struct

from .errors import VswitchError

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 0x0003
RCVBUF = 4 * 1024 * 1024


def open_packet_socket(ifname: str, ifindex: int, vnet: bool = True) -> tuple[int, bool]:
    """Return a non-blocking AF_PACKET fd bound to the interface, and whether
    it speaks the virtio-net header (without it the engine segments and
    checksums in software what it sends there)."""
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
    except OSError as e:
        raise VswitchError.from_errno(e.errno or 5, f"open packet socket for {ifname}") from None
    try:
        if vnet:
            try:
                s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            except OSError:
                vnet = False     # an old kernel: plain frames, software offloads
        s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
        s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        s.bind((ifname, ETH_P_ALL))
    except OSError as e:
        s.close()
        raise VswitchError.from_errno(e.errno or 5, f"attach to {ifname}") from None
    return s.detach(), vnet
