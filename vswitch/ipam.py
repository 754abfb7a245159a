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
from typing import Iterable, Union

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# IPv4: /8 is the widest subnet accepted (10.0.0.0/8), /30 the narrowest
# that holds a gateway and one port.  IPv6: a /64 (what SLAAC and everyone
# else expects of a LAN) or narrower.
PREFIX_RANGE = {4: (8, 30), 6: (64, 120)}
EXAMPLE = {4: "10.1.0.0/24", 6: "fd00:1::/64"}
RESERVED = {
    4: (("127.0.0.0/8", "loopback"), ("0.0.0.0/8", "'this network'"),
        ("224.0.0.0/3", "multicast or reserved"), ("169.254.0.0/16", "link-local")),
    6: (("::/8", "reserved"), ("fe80::/10", "link-local"), ("ff00::/8", "multicast")),
}


class AddressError(ValueError):
    """A problem with an address or subnet, as one sentence."""


def parse_subnet(text: str, version: int = 4) -> Network:
    """'10.1.0.0/24' (or, version 6, 'fd00:1::/64') -> the network;
    refuses host bits, reserved ranges, sizes outside PREFIX_RANGE."""
    example = EXAMPLE[version]
    if not isinstance(text, str) or "/" not in text:
        raise AddressError(f"{text!r} is not a subnet (like {example})")
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise AddressError(f"{text!r} is not a subnet (like {example})") from None
    if net.version != version:
        key = "subnet6" if net.version == 6 else "subnet"
        raise AddressError(f"{text} is an IPv{net.version} subnet; give it as {key}")
    if net.network_address != ipaddress.ip_interface(text.strip()).ip:
        raise AddressError(f"{text} has host bits set; did you mean {net}?")
    lo, hi = PREFIX_RANGE[version]
    if not lo <= net.prefixlen <= hi:
        raise AddressError(f"subnet {net}: prefix length must be {lo}..{hi}")
    for bad, why in RESERVED[version]:
        if net.overlaps(ipaddress.ip_network(bad)):
            raise AddressError(f"subnet {net} is in the {why} range {bad}")
    return net


def first_host(net: Network) -> Address:
    """The default gateway: the subnet's first host address (docker0's
    172.17.0.1)."""
    return net.network_address + 1


def is_host(net: Network, addr: Address) -> bool:
    """An address a port may hold: not the network address (IPv6's
    subnet-router anycast), not IPv4's broadcast."""
    if addr.version != net.version or addr not in net or addr == net.network_address:
        return False
    return net.version == 6 or addr != net.broadcast_address


def parse_address(text: str, net: Network, what: str) -> Address:
    """A host address of net, given bare ('10.1.0.5') or with the subnet's
    own prefix length ('10.1.0.5/24')."""
    if not isinstance(text, str):
        raise AddressError(f"{what} must be a string")
    addr_s, slash, plen = text.partition("/")
    try:
        addr = ipaddress.ip_address(addr_s.strip())
    except ValueError:
        raise AddressError(f"{text!r} is not an IPv{net.version} address") from None
    if addr.version != net.version:
        raise AddressError(f"{text!r} is not an IPv{net.version} address")
    if addr not in net:
        raise AddressError(f"{addr} is outside the subnet {net}")
    if slash and plen.strip() != str(net.prefixlen):
        raise AddressError(f"{text}: the subnet is {net}; give {addr} or {addr}/{net.prefixlen}")
    if not is_host(net, addr):
        which = "network" if addr == net.network_address else "broadcast"
        raise AddressError(f"{addr} is the {which} address of {net}")
    return addr


def capacity(net: Network) -> int:
    """Host addresses a subnet has for ports (the gateway holds one)."""
    return net.num_addresses - (3 if net.version == 4 else 2)


def allocate(net: Network, taken: Iterable[Address]) -> Address:
    """The lowest host address of net not in taken."""
    used = {int(a) for a in taken if a.version == net.version}
    first = int(net.network_address) + 1
    last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
    # Walk the taken addresses in order: the answer is the first gap, so
    # this costs O(len(taken)) even in a /8 or a /64.
    candidate = first
    for a in sorted(u for u in used if first <= u <= last):
        if a > candidate:
            break
        candidate = a + 1
    if candidate > last:
        raise AddressError(f"subnet {net} is full ({capacity(net)} addresses for ports, "
                           "all taken)")
    return net.network_address.__class__(candidate)
