"""Configuration parsing and the FILE:LINE errors of config files."""
from __future__ import annotations

from pathlib import Path

import pytest

from vswitch.config import ConfigError, parse_port, parse_switch, parse_trunks
from vswitch.config_file import ConfigFileError, load_config_file

GOOD = """\
[bridge.br0]
mac_aging = 60

[bridge.br0.port.h1]
netns = "h1"
ip = "10.0.0.1/24"
"""


def load(tmp_path: Path, text: str):
    f = tmp_path / "c.toml"
    f.write_text(text)
    return load_config_file(f)


def error_of(tmp_path: Path, text: str) -> ConfigFileError:
    with pytest.raises(ConfigFileError) as e:
        load(tmp_path, text)
    return e.value


def test_good_file(tmp_path):
    cfg = load(tmp_path, GOOD)
    port = cfg.bridges["br0"].ports["h1"]
    assert (port.netns, port.ip, port.device_name) == ("h1", ("10.0.0.1/24",), "eth0")
    assert cfg.bridges["br0"].mac_aging == 60
    assert cfg.bridges["br0"].mac_table_size == 8192


def test_toml_syntax_error_has_its_line(tmp_path):
    e = error_of(tmp_path, GOOD + "bad = = 1\n")
    assert e.line == 7 and "c.toml:7:" in str(e)


@pytest.mark.parametrize("line,text,needle", [
    (6, GOOD.replace('ip = "10.0.0.1/24"', 'ip = "10.0.0.300/24"'), "not an address"),
    (6, GOOD.replace('ip = "10.0.0.1/24"', 'ip = "10.0.0.1"'), "prefix length"),
    (2, GOOD.replace("mac_aging = 60", "mac_aging = 0"), "out of range"),
    (2, GOOD.replace("mac_aging = 60", 'mac_aging = "soon"'), "must be an integer"),
    (7, GOOD + "colour = 1\n", "unknown key 'colour'"),
    (7, GOOD + "tag = 5000\n", "out of range 1..4094"),
    (7, GOOD + "tag = 0\n", "out of range 1..4094"),
    (7, GOOD + 'mac = "01:00:5e:00:00:01"\n', "group"),
    (7, GOOD + 'mac = "xx"\n', "not a MAC"),
    (7, GOOD + 'type = "bridge"\n', "type must be"),
    (7, GOOD + 'ifname = "a-very-long-name0"\n', "longer than 15"),
    (4, GOOD.replace("port.h1]", "port.averyveryverylongname]"), "longer than 15"),
    (7, GOOD + 'trunks = "10,30-20"\n', "backwards"),
])
def test_semantic_errors_name_file_line_and_key(tmp_path, line, text, needle):
    e = error_of(tmp_path, text)
    assert needle in e.message, e.message
    assert e.line == line, (e.line, e.message)
    assert str(e).startswith(f"{tmp_path / 'c.toml'}:{line}: bridge br0")


def test_duplicate_port_across_bridges(tmp_path):
    e = error_of(tmp_path, GOOD + '\n[bridge.br1]\n[bridge.br1.port.h1]\nnetns = "x"\n')
    assert "already on bridge 'br0'" in e.message and e.line == 9


def test_two_ports_on_one_device(tmp_path):
    e = error_of(tmp_path, GOOD + '\n[bridge.br0.port.h2]\nnetns = "h1"\n')
    assert "interface 'eth0' in namespace 'h1' is already used by port 'h1'" in e.message
    assert e.line == 8


def test_static_fdb_entries(tmp_path):
    cfg = load(tmp_path, GOOD + '\n[[bridge.br0.fdb]]\nport = "h1"\nvlan = 0\n'
                                'mac = "02:00:00:00:00:AA"\n')
    s = cfg.bridges["br0"].static_macs[0]
    assert (s.port, s.vlan, s.mac) == ("h1", 0, "02:00:00:00:00:aa")
    e = error_of(tmp_path, GOOD + '\n[[bridge.br0.fdb]]\nport = "h1"\nmac = "02:00:00:00:00:01"\n'
                                  '\n[[bridge.br0.fdb]]\nport = "nope"\nmac = "02:00:00:00:00:02"\n')
    assert "no port 'nope'" in e.message and e.line == 13


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigFileError) as e:
        load_config_file(tmp_path / "missing.toml")
    assert "cannot read" in str(e.value)


def test_port_rules():
    with pytest.raises(ConfigError, match="system port"):
        parse_port("eth9", {"type": "system", "ip": "10.0.0.1/24"}, ())
    with pytest.raises(ConfigError, match="internal port"):
        parse_port("gw", {"type": "internal", "netns": "x"}, ())
    with pytest.raises(ConfigError, match="needs a tag"):
        parse_port("p", {"vlan_mode": "access"}, ())
    with pytest.raises(ConfigError, match="trunk port has no tag"):
        parse_port("p", {"vlan_mode": "trunk", "tag": 5}, ())
    assert parse_port("p", {"tag": 10}, ()).effective_vlan_mode == "access"
    assert parse_port("p", {}, ()).effective_vlan_mode == "trunk"


def test_trunks_syntax():
    assert parse_trunks("10,20,30-33", ()) == (10, 20, 30, 31, 32, 33)
    assert parse_trunks([5, "7"], ()) == (5, 7)
    assert parse_trunks("", ()) == ()
    with pytest.raises(ConfigError):
        parse_trunks("4095", ())


def test_round_trip_through_json():
    cfg = parse_switch({"bridge": {"br0": {"mac_table_size": 100, "port": {
        "a": {"netns": "n", "ip": ["10.0.0.1/24", "fd00::1/64"], "tag": 10,
              "vlan_mode": "native-untagged", "trunks": "20-22"},
        "b": {"type": "internal"}}}}})
    assert parse_switch(cfg.to_json()) == cfg


def test_bond_in_a_config_file(tmp_path):
    cfg = load(tmp_path, '[bridge.br0.port.bond0]\ntype = "bond"\n'
                         'interfaces = ["eth1", "eth2"]\nbond-primary = "eth2"\n'
                         'bond_mode = "balance-slb"\nbond_updelay = 200\ntrunks = "10,20"\n')
    b = cfg.bridges["br0"].ports["bond0"]
    assert (b.interfaces, b.bond_primary, b.bond_mode, b.bond_updelay, b.trunks) == \
        (("eth1", "eth2"), "eth2", "balance-slb", 200, (10, 20))
    assert b.bond_setting("bond_downdelay") == 0
    e = error_of(tmp_path, '[bridge.br0.port.bond0]\ntype = "bond"\n'
                           'interfaces = ["eth1", "eth1"]\n')
    assert "listed twice" in e.message and e.line == 3
    e = error_of(tmp_path, '[bridge.br0.port.b1]\ntype = "bond"\ninterfaces = ["eth1"]\n'
                           '[bridge.br0.port.b2]\ntype = "bond"\ninterfaces = ["eth1", "x"]\n')
    assert "already used by port 'b1'" in e.message and e.line == 4
    e = error_of(tmp_path, '[bridge.br0.port.p]\nnetns = "n"\nbond_mode = "active-backup"\n')
    assert "is for bonds" in e.message and e.line == 3


def test_duplicate_names_in_a_file(tmp_path):
    # the same bridge (or port) twice is a TOML error, reported with its line
    e = error_of(tmp_path, GOOD + '\n[bridge.br0]\nmac_aging = 5\n')
    assert e.line == 8 and "br0" in e.message
    e = error_of(tmp_path, GOOD + '\n[bridge.br0.port.h1]\nnetns = "x"\n')
    assert e.line == 8
    e = error_of(tmp_path, GOOD + 'ip = "10.0.0.9/24"\n')
    assert e.line == 7 and "ip" in e.message


def test_error_at_the_end_of_the_document_names_the_last_line(tmp_path):
    """Issue 14 (9): was reported as line 1."""
    text = GOOD + "\n" * 3 + "garbage = [\n"
    f = tmp_path / "end.toml"
    f.write_text(text)
    with pytest.raises(ConfigFileError) as e:
        load_config_file(f)
    assert e.value.line == text.count("\n")
    assert str(e.value).startswith(f"{f}:{text.count(chr(10))}: ")


def test_lacp_in_a_config_file(tmp_path):
    cfg = load(tmp_path, '[bridge.br0.port.bond0]\ntype = "bond"\n'
                         'interfaces = ["eth1", "eth2"]\nbond_mode = "balance-tcp"\n'
                         'lacp = "active"\nlacp-time = "fast"\nlacp-fallback-ab = true\n'
                         'lacp-system-id = "02:AA:00:00:00:01"\nlacp-system-priority = 10\n')
    b = cfg.bridges["br0"].ports["bond0"]
    assert (b.lacp, b.lacp_time, b.lacp_fallback_ab, b.lacp_system_id,
            b.lacp_system_priority) == ("active", "fast", True, "02:aa:00:00:00:01", 10)
    assert parse_switch(cfg.to_json()) == cfg          # the database keeps all of it
    plain = load(tmp_path, '[bridge.br0.port.bond0]\ntype = "bond"\n'
                           'interfaces = ["eth1", "eth2"]\n').bridges["br0"].ports["bond0"]
    assert (plain.bond_setting("lacp"), plain.bond_setting("lacp_time"),
            plain.bond_setting("lacp_fallback_ab")) == ("off", "slow", False)
    head = '[bridge.br0.port.bond0]\ntype = "bond"\ninterfaces = ["eth1", "eth2"]\n'
    for extra, needle, line in (
            ('bond_mode = "balance-tcp"\n', "balance-tcp needs LACP", 4),
            ('bond_mode = "balance-tcp"\nlacp = "off"\n', "balance-tcp needs LACP", 4),
            ('lacp = "yes"\n', "lacp must be one of active, passive, off", 4),
            ('lacp-time = "quick"\n', "lacp-time must be one of fast, slow", 4),
            ('lacp-system-priority = 70000\n', "out of range 1..65535", 4),
            ('lacp-system-id = "00:00:00:00:00:00"\n', "not a usable MAC", 4),
            ('lacp-fallback-ab = "perhaps"\n', "must be true or false", 4)):
        e = error_of(tmp_path, head + extra)
        assert needle in e.message and e.line == line, (extra, e)
    e = error_of(tmp_path, '[bridge.br0.port.p]\nnetns = "n"\nlacp = "active"\n')
    assert "is for bonds" in e.message and e.line == 3
