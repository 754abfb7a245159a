"""Address arithmetic of a subnet (vswitch/ipam.py)."""
from __future__ import annotations

import ipaddress

import pytest

from vswitch.ipam import (AddressError, allocate, capacity, first_host, parse_address,
                          parse_subnet)

A = ipaddress.IPv4Address
NET = ipaddress.IPv4Network("10.1.0.0/29")


def test_first_host_is_the_default_gateway():
    assert first_host(ipaddress.IPv4Network("172.17.0.0/16")) == A("172.17.0.1")


def test_allocate_takes_the_lowest_free_host():
    assert allocate(NET, {A("10.1.0.1")}) == A("10.1.0.2")
    assert allocate(NET, {A("10.1.0.1"), A("10.1.0.2"), A("10.1.0.4")}) == A("10.1.0.3")
    assert allocate(NET, {A("10.1.0.2"), A("10.1.0.3")}) == A("10.1.0.1")
    # addresses outside the subnet do not count
    assert allocate(NET, {A("10.9.0.1"), A("10.1.0.1")}) == A("10.1.0.2")


def test_allocate_never_hands_out_network_or_broadcast():
    taken = {A(f"10.1.0.{i}") for i in range(1, 7)}
    with pytest.raises(AddressError, match=r"10.1.0.0/29 is full \(5 addresses"):
        allocate(NET, taken)
    assert capacity(NET) == 5


def test_allocate_in_a_wide_subnet_is_quick():
    net = ipaddress.IPv4Network("10.0.0.0/8")
    taken = {net.network_address + i for i in range(1, 5001)}
    assert allocate(net, taken) == net.network_address + 5001


@pytest.mark.parametrize("text,needle", [
    ("10.1.0.1/24", "host bits set; did you mean 10.1.0.0/24"),
    ("10.1.0.0", "not a subnet"),
    ("10.1.0.0/31", "prefix length must be 8..30"),
    ("10.0.0.0/7", "prefix length must be 8..30"),
    ("127.0.0.0/8", "loopback"),
    ("224.1.0.0/16", "multicast"),
    ("169.254.0.0/16", "link-local"),
    ("fd00::/64", "IPv6 subnet; give it as subnet6"),
    ("nonsense/24", "not a subnet"),
])
def test_bad_subnets(text, needle):
    with pytest.raises(AddressError, match=needle):
        parse_subnet(text)


def test_addresses_in_a_subnet():
    net = parse_subnet("10.1.0.0/24")
    assert parse_address("10.1.0.9", net, "ip") == A("10.1.0.9")
    assert parse_address("10.1.0.9/24", net, "ip") == A("10.1.0.9")
    for text, needle in (("10.1.0.9/16", "give 10.1.0.9 or 10.1.0.9/24"),
                         ("10.2.0.9", "outside the subnet 10.1.0.0/24"),
                         ("10.1.0.0", "network address"),
                         ("10.1.0.255", "broadcast address"),
                         ("10.1.0", "not an IPv4 address")):
        with pytest.raises(AddressError, match=needle):
            parse_address(text, net, "ip")


@pytest.mark.parametrize("text,needle", [
    ("fd00:1::1/64", "host bits set; did you mean fd00:1::/64"),
    ("fd00:1::/48", "prefix length must be 64..120"),
    ("fe80::/64", "link-local"),
    ("ff02::/64", "multicast"),
    ("10.0.0.0/24", "IPv4 subnet; give it as subnet"),
])
def test_bad_ipv6_subnets(text, needle):
    with pytest.raises(AddressError, match=needle):
        parse_subnet(text, 6)


def test_ipv6_addresses():
    net = parse_subnet("fd00:1::/64", 6)
    gw = first_host(net)
    assert str(gw) == "fd00:1::1"
    assert str(allocate(net, {gw})) == "fd00:1::2"
    assert str(allocate(net, {gw, ipaddress.ip_address("fd00:1::2")})) == "fd00:1::3"
    assert str(parse_address("fd00:1::9/64", net, "ip")) == "fd00:1::9"
    with pytest.raises(AddressError, match="network address"):
        parse_address("fd00:1::", net, "ip")
    with pytest.raises(AddressError, match="not an IPv6 address"):
        parse_address("10.0.0.1", net, "ip")
    small = parse_subnet("fd00:1::/120", 6)      # ::1 gateway, ::2 to ::ff for ports
    assert capacity(small) == 254
    taken = {small.network_address + i for i in range(1, 256)}
    with pytest.raises(AddressError, match="full"):
        allocate(small, taken)
    assert str(allocate(small, taken - {small.network_address + 255})) == "fd00:1::ff"
