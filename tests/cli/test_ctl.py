"""vswitchctl as a user types it: output, exit codes, and every kind of bad
input answered with a one-line error that changes nothing."""
from __future__ import annotations

import json
import socket

import pytest

from ..helpers import PREFIX, name

pytestmark = pytest.mark.netns


def snapshot(d):
    return json.dumps(d.show(), sort_keys=True), d.db.read_text()


def fails(d, *args: str, needle: str) -> None:
    before = snapshot(d)
    r = d.ctl(*args, check=False)
    assert r.returncode == 1, (args, r.returncode, r.stdout)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("vswitchctl: "), r.stderr
    assert needle in r.stderr, r.stderr
    assert snapshot(d) == before, f"{args} changed something"


def test_bridge_commands(daemon):
    daemon.start()
    b1, b2 = name("b1"), name("b2")
    daemon.ctl("add-br", b1)
    daemon.ctl("add-br", b2, "mac_aging=30", "mac_table_size=100")
    assert daemon.ctl("list-br").stdout.split() == sorted([b1, b2])
    assert daemon.ctl("br-exists", b1).returncode == 0
    assert daemon.ctl("br-exists", name("zz"), check=False).returncode == 2
    stats = daemon.ctl("fdb/stats-show", b2).stdout
    assert "Current/maximum MAC entries in the table: 0/100" in stats
    assert "MAC aging time (seconds)                : 30" in stats
    daemon.ctl("set", "bridge", b2, "mac_aging=45")
    assert json.loads(daemon.ctl("fdb/stats-show", b2, "--json").stdout)["mac_aging"] == 45
    daemon.ctl("del-br", b1)
    assert daemon.ctl("list-br").stdout.split() == [b2]
    daemon.ctl("del-br", b1, "--if-exists")
    daemon.restart()
    assert daemon.ctl("list-br").stdout.split() == [b2]
    assert json.loads(daemon.ctl("fdb/stats-show", b2, "--json").stdout)["mac_aging"] == 45


def test_show_text_and_json(lab):
    text = lab.ctl("show").stdout
    assert f"Bridge {lab.br}" in text
    assert "Port h1: up" in text and f"netns: {PREFIX}h1" in text and "ip: 10.0.0.1/24" in text
    data = json.loads(lab.ctl("show", "--json").stdout)
    ports = data["bridges"][0]["ports"]
    assert [p["name"] for p in ports] == ["h1", "h2", "h3"]
    assert ports[0]["device"] == "eth0" and ports[0]["device_mac"] == "02:00:00:00:00:01"


def test_port_stats(lab):
    from ..helpers import ping_eventually
    assert ping_eventually(PREFIX + "h1", "10.0.0.2")
    rows = json.loads(lab.ctl("port/stats", lab.br, "--json").stdout)
    by = {r["port"]: r for r in rows}
    assert by["h1"]["rx_packets"] > 0 and by["h2"]["tx_packets"] > 0
    assert set(by["h1"]["drops"]) >= {"runt", "oversize", "vlan", "same_port", "tx_error"}
    text = lab.ctl("port/stats").stdout
    assert f"{lab.br} port h1:" in text and "rx pkts=" in text


def test_static_fdb_entries_are_kept_across_restarts(lab):
    mac = "02:aa:00:00:00:01"
    lab.ctl("fdb/add", lab.br, "h2", "0", mac)
    assert f"h2     0  {mac}  static" in lab.ctl("fdb/show", lab.br).stdout
    lab.ctl("fdb/flush", lab.br)
    assert mac in lab.ctl("fdb/show", lab.br).stdout
    lab.restart()
    rows = json.loads(lab.ctl("fdb/show", lab.br, "--json").stdout)
    assert {"port": "h2", "vlan": 0, "mac": mac, "age": None, "static": True} in rows
    lab.ctl("fdb/del", lab.br, "0", mac)
    lab.restart()
    assert mac not in lab.ctl("fdb/show", lab.br).stdout


def test_set_port_changes_addresses_in_place(lab):
    from ..helpers import ns, ping_eventually
    lab.ctl("set", "port", "h3", "ip=10.0.0.33/24")
    addrs = ns(PREFIX + "h3", "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert "10.0.0.33/24" in addrs and "10.0.0.3/24" not in addrs
    assert ping_eventually(PREFIX + "h1", "10.0.0.33")
    assert lab.port("h3")["ip"] == ["10.0.0.33/24"] and lab.port("h3")["state"] == "up"
    lab.restart()
    assert ping_eventually(PREFIX + "h1", "10.0.0.33")


def test_set_bridge_table_size_persists(lab):
    lab.ctl("set", "bridge", lab.br, "mac_table_size=50", "mac_aging=20")
    lab.restart()
    s = json.loads(lab.ctl("fdb/stats-show", lab.br, "--json").stdout)
    assert (s["max_entries"], s["mac_aging"]) == (50, 20)


def test_errors_change_nothing(lab):
    br = lab.br
    fails(lab, "add-port", name("nobr"), "x1", needle="no bridge named")
    fails(lab, "add-port", br, "h1", needle="already exists")
    fails(lab, "add-port", br, "h9", "--netns", PREFIX + "h9", "--ip", "10.0.0.300/24",
          needle="not an address")
    fails(lab, "add-port", br, "h9", "--netns", PREFIX + "h9", "--ip", "10.0.0.9",
          needle="prefix length")
    fails(lab, "add-port", br, "h9", "--netns", PREFIX + "h9", "--mac", "02:00:00:00:00",
          needle="not a MAC")
    fails(lab, "add-port", br, "h9", "--netns", PREFIX + "h9", "--mac", "03:00:00:00:00:01",
          needle="group")
    fails(lab, "add-port", br, "a-name-of-16-chr", needle="longer than 15")
    fails(lab, "add-port", br, "h9", "--netns", PREFIX + "h9", "--ifname", "x" * 16,
          needle="longer than 15")
    fails(lab, "add-port", br, "h9", "type=bridge", needle="type must be")
    fails(lab, "add-port", br, "h9", "colour=red", needle="unknown key 'colour'")
    fails(lab, "add-port", br, "h9", "--netns", PREFIX + "h1", needle="already used by port 'h1'")
    fails(lab, "add-port", br, "h9", "--netns", PREFIX + "h1", "--ifname", "lo",
          needle="lo is the namespace's loopback interface")
    fails(lab, "add-port", br, "h9", "tag=4095", needle="out of range")
    fails(lab, "del-port", br, "nope", needle="no port named nope")
    fails(lab, "del-br", name("nobr"), needle="no bridge named")
    fails(lab, "set", "bridge", br, "mac_aging=0", needle="out of range")
    fails(lab, "set", "bridge", br, "mac_aging=soon", needle="must be an integer")
    fails(lab, "set", "bridge", br, "speed=10", needle="unknown bridge setting")
    fails(lab, "set", "port", "h1", "speed=10", needle="unknown port setting")
    fails(lab, "set", "port", "h1", "mac=02:00:00:00:00:77", needle="cannot be changed live")
    fails(lab, "set", "port", "h1", "ip=10.0.0.7", needle="prefix length")
    fails(lab, "set", "port", "h1", "tag=0", needle="out of range")
    fails(lab, "set", "port", "h1", "vlan_mode=access", needle="needs a tag")
    fails(lab, "set", "port", "nope", "tag=5", needle="no port named")
    fails(lab, "set", "interface", "h1", "tag=5", needle="cannot set")
    fails(lab, "fdb/add", br, "nope", "0", "02:00:00:00:00:09", needle="no port named")
    fails(lab, "fdb/add", br, "h1", "5000", "02:00:00:00:00:09", needle="out of range")
    fails(lab, "fdb/add", br, "h1", "0", "ff:ff:ff:ff:ff:ff", needle="group")
    fails(lab, "fdb/del", br, "0", "02:00:00:00:00:77", needle="no FDB entry")
    fails(lab, "frobnicate", needle="unknown command")
    fails(lab, "add-br", needle="takes 1 argument")
    fails(lab, "list-br", "--netns", "x", needle="does not take --netns")
    fails(lab, "add-br", name("b"), "--bogus", needle="unknown option --bogus")
    assert lab.ctl("del-port", br, "nope", "--if-exists").returncode == 0
    # a namespace that a failed add-port would have created is gone again
    assert PREFIX + "h9" not in {p.name for p in __import__("pathlib").Path("/run/netns").iterdir()}


def test_no_daemon_is_a_clear_error(daemon):
    r = daemon.ctl("show", check=False)
    assert r.returncode == 1 and "is vswitchd running?" in r.stderr


def raw_exchange(sock_path, payload: bytes) -> list[dict]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(sock_path))
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return [json.loads(line) for line in data.splitlines()]


def test_control_socket_rejects_garbage_and_keeps_serving(daemon):
    daemon.start()
    replies = raw_exchange(daemon.sock, b"this is not json\n[1,2]\n"
                           b'{"id": 7, "method": "no-such"}\n'
                           b'{"id": 8, "method": "add-br", "params": {"bridge": 5}}\n'
                           b'{"id": 9, "method": "add-br", "params": {"bridge": "x", "zz": 1}}\n'
                           b'{"id": 10, "method": "list-br"}\n')
    assert [r.get("error", {}).get("code") for r in replies] == \
        ["EINVAL", "EINVAL", "ENOSYS", "EINVAL", "EINVAL", None]
    assert replies[2]["id"] == 7 and "unknown method" in replies[2]["error"]["message"]
    assert replies[5] == {"id": 10, "result": []}
    big = b'{"id": 1, "method": "list-br", "params": {"pad": "' + b"x" * (1 << 20) + b'"}}\n'
    replies = raw_exchange(daemon.sock, big)
    assert replies[0]["error"]["code"] == "E2BIG"
    assert daemon.call("list-br") == []
    assert oct(daemon.sock.stat().st_mode & 0o777) == "0o600"


def test_values_the_kernel_would_refuse_are_refused_first(lab):
    """Issue 14 (5, 6): each was accepted, then failed in the kernel under a
    temporary device name -- or, for 0.0.0.0/0, was stored and never applied."""
    br, h9 = lab.br, PREFIX + "h9"
    fails(lab, "add-port", br, "h9", "--netns", h9, "--ip", "10.0.0.9/24",
          "--ip", "10.0.0.9/24", needle="address 10.0.0.9 is listed twice")
    fails(lab, "add-port", br, "h9", "--netns", h9, "--ip", "::/0",
          needle="the unspecified address")
    fails(lab, "add-port", br, "h9", "--netns", h9, "--ip", "0.0.0.0/0",
          needle="the unspecified address")
    fails(lab, "add-port", br, "h9", "--netns", h9, "--ip", "224.0.0.5/24",
          needle="a multicast address")
    fails(lab, "add-port", br, "h9", "--netns", h9, "--ip", "127.0.0.2/8",
          needle="a loopback address")
    fails(lab, "add-port", br, "lo", "type=system", needle="lo is the loopback interface")
    fails(lab, "add-port", br, "h9", "--netns", h9, "mtu=65535", needle="out of range 68..65521")
    fails(lab, "set", "port", "h1", "ip=0.0.0.0/0", needle="the unspecified address")
    fails(lab, "set", "port", "h1", "tag", needle="expected KEY=VALUE, got 'tag'")
    # the largest MTU a TAP takes is accepted and applied
    lab.ctl("add-port", br, "h9", "--netns", h9, "mtu=65521")
    assert lab.port("h9")["device_mtu"] == 65521 and lab.port("h9")["state"] == "up"


def test_kernel_refusals_name_the_port_and_setting(lab):
    """What only the kernel can refuse is reported with the port and the
    setting, never a temporary device name: here an IPv6 address in a
    namespace of the user's own where IPv6 is off."""
    from ..helpers import ns, sh
    h9 = PREFIX + "h9"
    sh("ip", "netns", "add", h9)
    try:
        ns(h9, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1")
        r = lab.ctl("add-port", lab.br, "h9", "--netns", h9, "--ip", "fd00::9/64",
                    check=False)
        assert r.returncode == 1, r
        assert r.stderr.startswith("vswitchctl: port h9: add ip fd00::9/64: "), r.stderr
        assert "vst" not in r.stderr
        assert "h9" not in lab.ctl("list-ports", lab.br).stdout
        assert "eth0" not in ns(h9, "ip", "-o", "link").stdout
    finally:
        sh("ip", "netns", "del", h9, check=False)


def test_set_port_takes_several_addresses(lab):
    """Issue 14 (11): as add-port --ip A --ip B can."""
    from ..helpers import ns
    lab.ctl("set", "port", "h3", "ip=10.0.0.33/24,10.0.0.34/24")
    assert lab.port("h3")["ip"] == ["10.0.0.33/24", "10.0.0.34/24"]
    lab.ctl("set", "port", "h3", "ip=10.0.0.35/24", "ip=10.0.0.36/24")
    assert lab.port("h3")["ip"] == ["10.0.0.35/24", "10.0.0.36/24"]
    addrs = ns(PREFIX + "h3", "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert "10.0.0.35/24" in addrs and "10.0.0.36/24" in addrs and "10.0.0.33" not in addrs
    # removing the primary address takes the kernel's secondaries with it:
    # the one that stays is put back
    lab.ctl("set", "port", "h3", "ip=10.0.0.36/24")
    addrs = ns(PREFIX + "h3", "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert "10.0.0.36/24" in addrs and "10.0.0.35" not in addrs
    usage = lab.ctl("--help").stdout
    assert "ip (ip=A,B or ip=A ip=B)" in usage and "[offload=false]" in usage


def test_trunk_ranges_stay_ranges(lab):
    """Issue 14 (13): trunks=0-4094 was kept as a list of 4095 numbers."""
    lab.ctl("add-port", lab.br, "h9", "--netns", PREFIX + "h9", "trunks=0-4094")
    assert lab.port("h9")["trunks"] == "0-4094"
    assert len(lab.ctl("show", "--json").stdout) < 8000
    assert '"trunks": "0-4094"' in lab.db.read_text()
    assert "trunks: 0-4094" in lab.ctl("show").stdout
    lab.restart()
    assert lab.port("h9")["trunks"] == "0-4094"
