"""The network keys of the configuration, their rules, and allocation
(vswitch/netconfig.py through config.py, as files and the API use them)."""
from __future__ import annotations

from pathlib import Path

import pytest

from vswitch.config import ConfigError, parse_switch
from vswitch.config_file import ConfigFileError, load_config_file
from vswitch.ctl import build_request, parse_argv
from vswitch.netconfig import assign_addresses, parse_publish, set_bridge_network

GOOD = """\
[bridge.br0]
subnet = "10.88.0.0/24"

[bridge.br0.port.web]
netns = "web"
publish = ["8080:80", "5353:53/udp"]

[bridge.br0.port.db]
netns = "db"
ip = "10.88.0.10"
"""


def cfg(**bridges):
    return parse_switch({"bridge": bridges})


def test_file_with_a_network(tmp_path: Path):
    f = tmp_path / "n.toml"
    f.write_text(GOOD)
    c = load_config_file(f)
    br = c.bridges["br0"]
    assert (br.subnet, br.gateway, br.masquerade) == ("10.88.0.0/24", None, None)
    assert str(br.gateway_address) == "10.88.0.1" and br.masquerading
    assert br.ports["web"].publish == ("8080:80/tcp", "5353:53/udp")
    assert br.ports["web"].ip == ()                     # allocated later, not by parsing
    assert br.ports["db"].ip == ("10.88.0.10/24",)      # a bare address gets the prefix
    assert br.to_json()["subnet"] == "10.88.0.0/24"
    assert "gateway" not in br.to_json()


@pytest.mark.parametrize("extra,line,needle", [
    ('gateway = "10.88.1.1"\n', 3, "10.88.1.1 is outside the subnet 10.88.0.0/24"),
    ('masquerade = "maybe"\n', 3, "masquerade must be true or false"),
])
def test_bridge_key_errors_have_their_line(tmp_path: Path, extra, line, needle):
    f = tmp_path / "n.toml"
    f.write_text(GOOD.replace('subnet = "10.88.0.0/24"\n', 'subnet = "10.88.0.0/24"\n' + extra))
    with pytest.raises(ConfigFileError) as e:
        load_config_file(f)
    assert e.value.line == line and needle in str(e.value), str(e.value)


@pytest.mark.parametrize("data,needle", [
    ({"br0": {"gateway": "10.0.0.1"}}, "a gateway needs a subnet"),
    ({"br0": {"subnet": "10.0.0.0/24", "port": {"p": {"ip": "10.0.1.2/24"}}}},
     "10.0.1.2 is outside the subnet 10.0.0.0/24"),
    ({"br0": {"subnet": "10.0.0.0/24", "port": {"p": {"ip": "10.0.0.1/24"}}}},
     "10.0.0.1 is the gateway's address"),
    ({"br0": {"subnet": "10.0.0.0/24", "port": {"p": {"ip": ["10.0.0.2/24", "10.0.0.3/24"]}}}},
     "has one IPv4 address, not 2"),
    ({"br0": {"subnet": "10.0.0.0/24", "port": {"p": {"ip": "10.0.0.2"},
                                                 "q": {"ip": "10.0.0.2/24"}}}},
     "10.0.0.2 is already port p's address"),
    ({"br0": {"subnet": "10.0.0.0/24", "port": {"br0": {"netns": "x"}}}},
     "belongs to the bridge's own internal port"),
    ({"br0": {"subnet": "10.0.0.0/24"}, "br1": {"port": {"br0": {"type": "system"}}}},
     "belongs to bridge br0's own internal port"),
    ({"br0": {"subnet": "10.0.0.0/16"}, "br1": {"subnet": "10.0.5.0/24"}},
     "subnet 10.0.5.0/24 overlaps bridge br0's 10.0.0.0/16"),
    ({"br0": {"port": {"p": {"netns": "x", "publish": ["80:80"]}}}},
     "publishing ports needs an IPv4 subnet on bridge br0"),
    ({"br0": {"subnet": "10.0.0.0/24", "port": {"p": {"type": "internal",
                                                       "publish": ["80:80"]}}}},
     "has no address to publish"),
    ({"br0": {"subnet": "10.0.0.0/24", "port": {"p": {"netns": "a", "publish": ["80:80"]},
                                                 "q": {"netns": "b", "publish": "80:81"}}}},
     "host port 80/tcp is already published by port p"),
])
def test_network_rules(data, needle):
    with pytest.raises(ConfigError) as e:
        cfg(**data)
    assert needle in str(e.value), str(e.value)


def test_the_same_host_port_on_two_protocols_is_fine():
    c = cfg(br0={"subnet": "10.0.0.0/24", "port": {
        "p": {"netns": "a", "publish": "53:53/udp"}, "q": {"netns": "b", "publish": "53:53"}}})
    assert c.bridges["br0"].ports["q"].publish == ("53:53/tcp",)


@pytest.mark.parametrize("value,needle", [
    ("80", "is not HOSTPORT:PORT"),
    ("80:80/sctp", "is not HOSTPORT:PORT"),
    ("0:80", "port 0 is out of range"),
    ("80:70000", "port 70000 is out of range"),
    ("80:80,80:81/tcp", "host port 80/tcp is listed twice"),
    (5, "publish must be a list"),
])
def test_bad_publish(value, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_publish(value, ("publish",))


def test_allocation_fills_gaps_and_keeps_previous_addresses():
    c = cfg(br0={"subnet": "10.0.0.0/24", "port": {
        "a": {"netns": "a"}, "b": {"netns": "b", "ip": "10.0.0.2"}, "c": {"netns": "c"},
        "gw": {"type": "internal"}}})
    first = assign_addresses(c)
    ips = {n: p.ip for n, p in first.bridges["br0"].ports.items()}
    assert ips == {"a": ("10.0.0.3/24",), "b": ("10.0.0.2/24",), "c": ("10.0.0.4/24",),
                   "gw": ()}
    # the same file again, with the previous configuration: the same addresses,
    # even when a port ahead of them in the file is gone
    c2 = cfg(br0={"subnet": "10.0.0.0/24", "port": {"c": {"netns": "c"}, "a": {"netns": "a"}}})
    again = assign_addresses(c2, first)
    assert {n: p.ip for n, p in again.bridges["br0"].ports.items()} == \
        {"a": ("10.0.0.3/24",), "c": ("10.0.0.4/24",)}
    # an explicit address beats a previous allocation: that port moves
    c3 = cfg(br0={"subnet": "10.0.0.0/24", "port": {"a": {"netns": "a"},
                                                     "n": {"netns": "n", "ip": "10.0.0.3"}}})
    moved = assign_addresses(c3, first)
    assert moved.bridges["br0"].ports["a"].ip == ("10.0.0.2/24",)


def test_a_full_subnet_names_the_port_without_room():
    c = cfg(br0={"subnet": "10.0.0.0/30", "port": {"a": {"netns": "a"}, "b": {"netns": "b"}}})
    with pytest.raises(ConfigError) as e:
        assign_addresses(c)
    assert str(e.value) == ("bridge br0 port b: subnet 10.0.0.0/30 is full "
                            "(1 addresses for ports, all taken)")


def test_set_bridge_network_readdresses_and_clears():
    c = assign_addresses(cfg(br0={"subnet": "10.0.0.0/24", "gateway": "10.0.0.254", "port": {
        "a": {"netns": "a"}, "b": {"netns": "b", "ip": "10.0.0.9"},
        "keep": {"netns": "k", "ip": ["fd00::5/64"]}}}))
    assert c.bridges["br0"].ports["keep"].ip == ("10.0.0.2/24", "fd00::5/64")
    br = c.bridges["br0"]
    # wider: the same addresses, the gateway still valid so kept
    wide = set_bridge_network(c, br, {"subnet": "10.0.0.0/16"}).bridges["br0"]
    assert wide.gateway == "10.0.0.254"
    # (with the gateway at .254, .1 was free for a port)
    assert [wide.ports[p].ip for p in ("a", "b", "keep")] == \
        [("10.0.0.1/16",), ("10.0.0.9/16",), ("10.0.0.2/16", "fd00::5/64")]
    # elsewhere: addressed again in order, the gateway back to the default
    moved = set_bridge_network(c, br, {"subnet": "10.5.0.0/24"}).bridges["br0"]
    assert moved.gateway is None and str(moved.gateway_address) == "10.5.0.1"
    assert [moved.ports[p].ip for p in ("a", "b", "keep")] == \
        [("10.5.0.2/24",), ("10.5.0.3/24",), ("10.5.0.4/24", "fd00::5/64")]
    # cleared: no gateway, addresses kept as plain addresses
    cleared = set_bridge_network(c, br, {"subnet": ""}).bridges["br0"]
    assert (cleared.subnet, cleared.gateway) == (None, None)
    assert cleared.ports["a"].ip == ("10.0.0.1/24",)
    with pytest.raises(ConfigError, match="a gateway needs a subnet"):
        set_bridge_network(c, br, {"subnet": "", "gateway": "10.0.0.1"})


def test_ctl_publish_and_net_show():
    method, params = build_request(parse_argv(
        ["add-port", "br0", "web", "--netns", "web", "--publish", "8080:80",
         "--publish=53:53/udp"]))
    assert params["settings"]["publish"] == ["8080:80", "53:53/udp"]
    assert build_request(parse_argv(["net/show", "br0", "--json"])) == \
        ("net/show", {"bridge": "br0"})


def test_ipv6_beside_ipv4():
    c = assign_addresses(cfg(br0={
        "subnet": "10.0.0.0/24", "subnet6": "fd00:5::/64", "port": {
            "a": {"netns": "a"}, "b": {"netns": "b", "ip": ["fd00:5::9", "10.0.0.9"]},
            "v6only": {"netns": "c", "ip": "fd00:5::2/64"}}}))
    ports = c.bridges["br0"].ports
    assert ports["a"].ip == ("10.0.0.2/24", "fd00:5::3/64")
    assert ports["b"].ip == ("fd00:5::9/64", "10.0.0.9/24")     # as given, prefixes added
    assert ports["v6only"].ip == ("10.0.0.3/24", "fd00:5::2/64")
    br = c.bridges["br0"]
    assert str(br.gateway_of(6)) == "fd00:5::1" and br.to_json()["subnet6"] == "fd00:5::/64"
    moved = set_bridge_network(c, br, {"subnet6": "fd00:6::/64"}).bridges["br0"]
    assert [moved.ports[p].ip for p in ("a", "b", "v6only")] == [
        ("10.0.0.2/24", "fd00:6::2/64"), ("10.0.0.9/24", "fd00:6::3/64"),
        ("10.0.0.3/24", "fd00:6::4/64")]


@pytest.mark.parametrize("data,needle", [
    ({"br0": {"gateway6": "fd00::1"}}, "a gateway6 needs a subnet6"),
    ({"br0": {"subnet6": "10.0.0.0/24"}}, "IPv4 subnet; give it as subnet"),
    ({"br0": {"subnet": "fd00::/64"}}, "IPv6 subnet; give it as subnet6"),
    ({"br0": {"subnet6": "fd00::/64", "gateway6": "fd01::1"}}, "outside the subnet fd00::/64"),
    ({"br0": {"subnet6": "fd00::/64", "port": {"p": {"ip": "fd00:1::5/64"}}}},
     "fd00:1::5 is outside the subnet fd00::/64"),
    ({"br0": {"subnet6": "fd00::/64", "port": {"p": {"ip": "fd00::1"}}}},
     "fd00::1 is the gateway's address"),
    ({"br0": {"subnet6": "fd00::/64"}, "br1": {"subnet6": "fd00::/64"}},
     "subnet fd00::/64 overlaps bridge br0's fd00::/64"),
    ({"br0": {"subnet6": "fd00::/64", "port": {"p": {"netns": "x", "publish": "80:80"}}}},
     "needs an IPv4 subnet"),
])
def test_ipv6_rules(data, needle):
    with pytest.raises(ConfigError) as e:
        cfg(**data)
    assert needle in str(e.value), str(e.value)
