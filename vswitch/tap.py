"""Creating TAP devices: /dev/net/tun, TUNSETIFF, offloads.

The fd is what the engine reads and writes; the device lives as long as the
fd is open (no TUNSETPERSIST), so a crashed daemon leaves no TAP behind.
Opened with IFF_VNET_HDR: every frame carries a virtio-net header, which
lets the namespace hand over 64 KB TCP segments with checksums still to do
(TUNSETOFFLOAD says it may); the engine passes them on untouched to ports
that speak the header, which all TAP and system ports do.
"""
from __future__ import annotations

import fcntl
import os
import struct

from .errors import VswitchError

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40

# Tried in order: an unknown bit makes TUNSETOFFLOAD fail with EINVAL, so
# older kernels without UDP segmentation offload fall back to TCP only.
OFFLOAD_SETS = (
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6,
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN,
)


def open_tap(name: str, offloads: bool = True) -> int:
    """Create TAP `name` in the calling namespace; returns its fd (O_CLOEXEC)."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise VswitchError.from_errno(e.errno or 5, "open /dev/net/tun") from None
    try:
        ifr = struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        if offloads:
            for bits in OFFLOAD_SETS:
                try:
                    fcntl.ioctl(fd, TUNSETOFFLOAD, bits)
                    break
                except OSError:
                    continue
        else:
            fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
    except OSError as e:
        os.close(fd)
        raise VswitchError.from_errno(e.errno or 5, f"create TAP {name}") from None
    return fd
