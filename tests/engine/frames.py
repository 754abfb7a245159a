"""Frames for engine tests, built with scapy."""
from __future__ import annotations

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

BCAST = "ff:ff:ff:ff:ff:ff"


def mac(n: int) -> str:
    return f"02:00:00:00:{(n >> 8) & 0xff:02x}:{n & 0xff:02x}"


def frame(src: str, dst: str, vlan: int | None = None, prio: int = 0,
          size: int = 0, outer_ad: bool = False, inner: int | None = None) -> bytes:
    pkt = Ether(src=src, dst=dst)
    if vlan is not None:
        pkt = pkt / (Dot1AD(vlan=vlan, prio=prio) if outer_ad else Dot1Q(vlan=vlan, prio=prio))
    if inner is not None:
        pkt = pkt / Dot1Q(vlan=inner)
    pkt = pkt / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)
    raw = bytes(pkt)
    if size > len(raw):
        raw += bytes(size - len(raw))
    return raw


def ping(src: str, dst: str) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())
