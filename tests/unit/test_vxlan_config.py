"""VXLAN port settings: Open vSwitch's option names, validated the same
way for the CLI, the config file and the database."""
from __future__ import annotations

from pathlib import Path

import pytest

from vswitch.config import ConfigError, parse_port, parse_switch
from vswitch.config_file import ConfigFileError, load_config_file

FILE = """\
[bridge.br0.port.h1]
netns = "h1"

[bridge.br0.port.vx]
type = "vxlan"
remote_ip = ["10.1.0.2", "10.1.0.3"]
local_ip = "10.1.0.1"
key = 42
"""


def vx(**kw):
    return parse_port("vx", {"type": "vxlan", **kw}, ("bridge", "br0", "port", "vx"))


def test_defaults_and_round_trip():
    p = vx(remote_ip="10.1.0.2, 10.1.0.3")
    assert p.remote_ip == ("10.1.0.2", "10.1.0.3")
    assert (p.key, p.dst_port, p.local_ip, p.csum, p.df_default, p.ttl) == (None,) * 6
    assert p.to_json() == {"type": "vxlan", "remote_ip": ["10.1.0.2", "10.1.0.3"]}
    full = vx(remote_ip="10.1.0.2", local_ip="10.1.0.1", key="7", dst_port="8472",
              csum="false", df_default="true", ttl="9", mtu="1400", tag="10")
    again = parse_port("vx", full.to_json(), ("p",))
    assert again == full and (full.key, full.dst_port, full.ttl, full.mtu) == (7, 8472, 9, 1400)


@pytest.mark.parametrize("settings,needle", [
    ({}, "needs remote_ip"),
    ({"remote_ip": ""}, "at least one remote_ip"),
    ({"remote_ip": "10.1.0.2,10.1.0.2"}, "listed twice"),
    ({"remote_ip": "fd00::2"}, "not an IPv4 address"),
    ({"remote_ip": "239.1.1.1"}, "multicast"),
    ({"remote_ip": "0.0.0.0"}, "not a usable address"),
    ({"remote_ip": ",".join(f"10.2.0.{i}" for i in range(1, 66))}, "at most 64"),
    ({"remote_ip": "10.1.0.2", "key": 1 << 24}, "out of range 0..16777215"),
    ({"remote_ip": "10.1.0.2", "key": "flow"}, "key=flow"),
    ({"remote_ip": "10.1.0.2", "key": "-1"}, "out of range"),
    ({"remote_ip": "10.1.0.2", "dst_port": 0}, "out of range 1..65535"),
    ({"remote_ip": "10.1.0.2", "ttl": 0}, "out of range 1..255"),
    ({"remote_ip": "10.1.0.2", "csum": "maybe"}, "true or false"),
    ({"remote_ip": "10.1.0.2", "local_ip": "10.1.0.2"}, "cannot be a remote"),
    ({"remote_ip": "10.1.0.2", "netns": "x"}, "no device of its own"),
    ({"remote_ip": "10.1.0.2", "ip": "10.9.0.1/24"}, "no device of its own"),
    ({"remote_ip": "10.1.0.2", "mtu": 65400}, "out of range 68..65000"),
])
def test_bad_settings(settings, needle):
    with pytest.raises(ConfigError) as e:
        vx(**settings)
    assert needle in str(e.value)


def test_tunnel_keys_belong_to_vxlan_ports():
    with pytest.raises(ConfigError) as e:
        parse_port("h1", {"netns": "h1", "remote_ip": "10.1.0.2"}, ("p",))
    assert "for vxlan ports" in str(e.value)


def test_two_tunnels_may_not_claim_the_same_remote_and_vni():
    base = {"type": "vxlan", "remote_ip": "10.1.0.2", "key": 5}
    ok = {"bridge": {"br0": {"port": {"a": base, "b": {**base, "key": 6}}}}}
    parse_switch(ok)
    ok2 = {"bridge": {"br0": {"port": {"a": base, "b": {**base, "dst_port": 8472}}}}}
    parse_switch(ok2)
    bad = {"bridge": {"br0": {"port": {"a": base}}, "br1": {"port": {"b": base}}}}
    with pytest.raises(ConfigError) as e:
        parse_switch(bad)
    assert "already receives VNI 5 from 10.1.0.2" in str(e.value)


def test_config_file(tmp_path: Path):
    f = tmp_path / "c.toml"
    f.write_text(FILE)
    port = load_config_file(f).bridges["br0"].ports["vx"]
    assert (port.remote_ip, port.local_ip, port.key) == (("10.1.0.2", "10.1.0.3"),
                                                         "10.1.0.1", 42)
    f.write_text(FILE.replace("key = 42", "key = 99999999"))
    with pytest.raises(ConfigFileError) as e:
        load_config_file(f)
    assert "c.toml:8:" in str(e.value) and "out of range" in str(e.value)
