"""The 64-byte test frames and the trafgen configurations that send them.

"64-byte frame" is the Ethernet minimum counted with its 4-byte FCS, as in
RFC 2544: 60 bytes handed to the kernel, which adds no FCS on a TAP or veth.
"""
from __future__ import annotations

import struct

FRAME_LEN = 60            # 64 on a wire, minus the FCS
ETH_P_IP = 0x0800
ETH_P_LOCAL = 0x88B5      # IEEE "local experimental" ethertype: no protocol handler takes it
UDP_PORT = 9              # discard; nothing listens in B (it answers at most ~1 ICMP/s)
FDB_MACS = 65536
# Source MACs of the FDB test: locally administered unicast, the last 4 bytes
# are trafgen's counter (00:00:00:00 .. 00:00:ff:ff).
FDB_MAC_BASE = "0a:fd:00:00:00:00"


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def ip_bytes(ip: str) -> bytes:
    return bytes(int(x) for x in ip.split("."))


def ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def udp64(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str) -> bytes:
    """Ethernet/IPv4/UDP, 60 bytes, valid IP checksum, UDP checksum 0 (none)."""
    ip_len = FRAME_LEN - 14
    udp_len = ip_len - 20
    ip_hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0x4000, 64, 17, 0,
                         ip_bytes(src_ip), ip_bytes(dst_ip))
    ip_hdr = ip_hdr[:10] + struct.pack("!H", ipv4_checksum(ip_hdr)) + ip_hdr[12:]
    udp_hdr = struct.pack("!HHHH", UDP_PORT, UDP_PORT, udp_len, 0)
    frame = mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", ETH_P_IP) + ip_hdr + udp_hdr
    return frame + bytes(FRAME_LEN - len(frame))


def l2_64(src_mac: str, dst_mac: str) -> bytes:
    """60 bytes of ethertype 0x88b5: B's kernel drops it at protocol dispatch,
    so the receiver costs next to nothing and the switch is the bottleneck."""
    frame = mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", ETH_P_LOCAL)
    return frame + bytes(FRAME_LEN - len(frame))


def trafgen_bytes(frame: bytes) -> str:
    """One trafgen packet block of literal bytes."""
    rows = [", ".join(f"0x{b:02x}" for b in frame[i:i + 12]) for i in range(0, len(frame), 12)]
    return "{\n  " + ",\n  ".join(rows) + "\n}\n"


def trafgen_fdb(dst_mac: str) -> str:
    """L2 frames from FDB_MACS distinct source MACs, one new source per frame
    in turn: trafgen's ``dinc`` increments the last 4 bytes of the field at
    run time, wrapping at the given maximum."""
    return ("{ eth(da=%s, sa=%s, sa=dinc(0, %d), type=0x%04x), fill(0x00, %d) }\n"
            % (dst_mac, FDB_MAC_BASE, FDB_MACS - 1, ETH_P_LOCAL, FRAME_LEN - 14))
