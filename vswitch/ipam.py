"""Address allocation in a bridge's subnet (pure: no I/O, no switch).

Docker's bridge driver gives each container the next free address of the
network's subnet; the gateway holds one address and the network and
broadcast addresses are never handed out.  Here the lowest free host
address is taken, so an address freed by del-port is the next one handed
out again (what the issue asks for, and what a user reading `net/show`
expects), and the same inputs always give the same address.

Which addresses are taken is the caller's business (configuration: the
gateway, every port's address); this module only does the arithmetic.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address

# /8 is the widest subnet accepted (10.0.0.0/8); /30 the narrowest that
# holds a gateway and one port.
PREFIX_RANGE = (8, 30)


class AddressError(ValueError):
    """A problem with an address or subnet, as one sentence."""


def parse_subnet(text: str) -> IPv4Network:
    """'10.1.0.0/24' -> the network; refuses host bits, odd ranges, sizes
    outside PREFIX_RANGE."""
    if not isinstance(text, str) or "/" not in text:
        raise AddressError(f"{text!r} is not a subnet (like 10.1.0.0/24)")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise AddressError(f"{text!r} is not a subnet (like 10.1.0.0/24)") from None
    if not isinstance(net, IPv4Network):
        raise AddressError(f"{text}: subnet must be IPv4 (IPv6 is not supported yet)")
    if str(net) != text.strip():
        raise AddressError(f"{text} has host bits set; did you mean {net}?")
    lo, hi = PREFIX_RANGE
    if not lo <= net.prefixlen <= hi:
        raise AddressError(f"subnet {net}: prefix length must be {lo}..{hi}")
    for bad, why in ((ipaddress.ip_network("127.0.0.0/8"), "loopback"),
                     (ipaddress.ip_network("0.0.0.0/8"), "'this network'"),
                     (ipaddress.ip_network("224.0.0.0/3"), "multicast or reserved"),
                     (ipaddress.ip_network("169.254.0.0/16"), "link-local")):
        if net.overlaps(bad):
            raise AddressError(f"subnet {net} is in the {why} range {bad}")
    return net


def first_host(net: IPv4Network) -> IPv4Address:
    """The default gateway: the subnet's first host address (docker0's
    172.17.0.1)."""
    return net.network_address + 1


def is_host(net: IPv4Network, addr: IPv4Address) -> bool:
    return addr in net and addr not in (net.network_address, net.broadcast_address)


def parse_address(text: str, net: IPv4Network, what: str) -> IPv4Address:
    """A host address of net, given bare ('10.1.0.5') or with the subnet's
    own prefix length ('10.1.0.5/24')."""
    if not isinstance(text, str):
        raise AddressError(f"{what} must be a string")
    addr_s, slash, plen = text.partition("/")
    try:
        addr = ipaddress.IPv4Address(addr_s.strip())
    except ValueError:
        raise AddressError(f"{text!r} is not an IPv4 address") from None
    if addr not in net:
        raise AddressError(f"{addr} is outside the subnet {net}")
    if slash and plen.strip() != str(net.prefixlen):
        raise AddressError(f"{text}: the subnet is {net}; give {addr} or {addr}/{net.prefixlen}")
    if not is_host(net, addr):
        which = "network" if addr == net.network_address else "broadcast"
        raise AddressError(f"{addr} is the {which} address of {net}")
    return addr


def capacity(net: IPv4Network) -> int:
    """Host addresses a subnet has for ports (the gateway holds one)."""
    return net.num_addresses - 3


def allocate(net: IPv4Network, taken: Iterable[IPv4Address]) -> IPv4Address:
    """The lowest host address of net not in taken."""
    used = {int(a) for a in taken}
    first = int(net.network_address) + 1
    last = int(net.broadcast_address) - 1
    # Walk the taken addresses in order: the answer is the first gap, so
    # this costs O(len(taken)) even in a /8.
    candidate = first
    for a in sorted(u for u in used if first <= u <= last):
        if a > candidate:
            break
        candidate = a + 1
    if candidate > last:
        raise AddressError(f"subnet {net} is full ({capacity(net)} addresses for ports, "
                           "all taken)")
    return IPv4Address(candidate)
