"""The CNI spec's own rules, with vswitch-cni run as a runtime runs it: the
environment, the configuration on stdin, the result or error on stdout.
Real namespaces, a real vswitchd, host-local from containernetworking-plugins
for IPAM."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..helpers import BIN, PREFIX, sh, wait_for
from .runtimes import CNI_BIN

pytestmark = pytest.mark.netns
PLUGIN = str(BIN / "vswitch-cni")


def run_cni(command: str, conf: Any, container: str = "c1", netns: str | None = None,
            ifname: str = "eth0", env: dict[str, str] | None = None
            ) -> tuple[int, dict[str, Any] | None]:
    e = {"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": command,
         "CNI_CONTAINERID": container, "CNI_IFNAME": ifname, "CNI_PATH": str(CNI_BIN),
         "CNI_NETNS": netns or ""}
    e.update(env or {})
    stdin = conf if isinstance(conf, str) else json.dumps(conf)
    r = subprocess.run([PLUGIN], input=stdin, env=e, capture_output=True, text=True,
                       timeout=120)
    out = json.loads(r.stdout) if r.stdout.strip() else None
    return r.returncode, out


@pytest.fixture
def cni(switch_ns, tmp_path: Path):
    switch_ns.start()
    br = PREFIX + "cb"
    switch_ns.ctl("add-br", br)
    subnet = f"10.{random.randint(64, 127)}.{random.randint(0, 255)}"
    ctr = PREFIX + "c1"
    sh("ip", "netns", "add", ctr)

    def conf(version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
        c = {"cniVersion": version, "name": "spec", "type": "vswitch", "bridge": br,
             "socket": str(switch_ns.sock),
             "ipam": {"type": "host-local", "ranges": [[{"subnet": f"{subnet}.0/24"}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(tmp_path / "ipam")}}
        c.update(extra)
        return c

    class Env:
        pass
    env = Env()
    env.d, env.br, env.conf, env.ctr = switch_ns, br, conf, ctr  # type: ignore[attr-defined]
    env.netns = f"/run/netns/{ctr}"                                # type: ignore[attr-defined]
    env.ipam_dir = tmp_path / "ipam" / "spec"                      # type: ignore[attr-defined]
    env.subnet = subnet                                            # type: ignore[attr-defined]
    yield env
    sh("ip", "netns", "del", ctr, check=False)


def reserved(ipam_dir: Path) -> list[str]:
    if not ipam_dir.exists():
        return []
    return sorted(p.name for p in ipam_dir.iterdir() if p.name[0].isdigit()
                  and not p.name.startswith("last_"))


def test_version():
    rc, out = run_cni("VERSION", '{"cniVersion": "1.0.0"}')
    assert rc == 0
    assert out == {"cniVersion": "1.0.0",
                   "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}


def test_add_gives_the_spec_result_and_a_port_like_any_other(cni):
    rc, res = run_cni("ADD", cni.conf(), netns=cni.netns)
    assert rc == 0, res
    assert res["cniVersion"] == "1.0.0"
    [iface] = res["interfaces"]
    assert iface["name"] == "eth0" and iface["sandbox"] == cni.netns
    [ip] = res["ips"]
    assert ip["address"].startswith(cni.subnet + ".") and ip["interface"] == 0
    assert ip["gateway"] == f"{cni.subnet}.1" and "version" not in ip   # 1.0.0: no version
    assert res["routes"] == [{"dst": "0.0.0.0/0"}]
    # the namespace has it: name, MAC, address, the IPAM route
    link = json.loads(sh("ip", "-n", cni.ctr, "-j", "addr", "show", "eth0").stdout)[0]
    assert link["address"] == iface["mac"]
    assert f"{ip['address']}" in [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]]
    assert f"default via {cni.subnet}.1 dev eth0" in sh("ip", "-n", cni.ctr, "route").stdout
    # and vswitch has a port for it, with the runtime's identifiers
    [port] = [p for b in cni.d.show()["bridges"] for p in b["ports"]]
    assert port["state"] == "up" and port["netns"] == cni.netns
    assert port["external_ids"] == {"cni-container-id": "c1", "cni-ifname": "eth0",
                                    "cni-network": "spec"}


def test_add_twice_is_refused_and_changes_nothing(cni):
    rc, first = run_cni("ADD", cni.conf(), netns=cni.netns)
    assert rc == 0
    before = reserved(cni.ipam_dir)
    rc, err = run_cni("ADD", cni.conf(), netns=cni.netns)
    assert rc != 0 and err["code"] == 101 and "already has interface eth0" in err["msg"]
    assert reserved(cni.ipam_dir) == before          # no second address taken
    rc, _ = run_cni("CHECK", cni.conf(prevResult=first), netns=cni.netns)
    assert rc == 0                                   # the first one is intact


def test_check_after_add_and_after_damage(cni):
    rc, res = run_cni("ADD", cni.conf(), netns=cni.netns)
    assert rc == 0
    rc, out = run_cni("CHECK", cni.conf(prevResult=res), netns=cni.netns)
    assert (rc, out) == (0, None)
    sh("ip", "-n", cni.ctr, "addr", "flush", "dev", "eth0")
    rc, err = run_cni("CHECK", cni.conf(prevResult=res), netns=cni.netns)
    assert rc != 0 and err["code"] == 102 and "lacks" in err["msg"]
    rc, err = run_cni("CHECK", cni.conf(), netns=cni.netns)     # no prevResult
    assert rc != 0 and err["code"] == 7


def test_del_twice_and_del_of_nothing_succeed(cni):
    rc, _ = run_cni("ADD", cni.conf(), netns=cni.netns)
    assert rc == 0 and len(reserved(cni.ipam_dir)) == 1
    assert run_cni("DEL", cni.conf(), netns=cni.netns) == (0, None)
    assert [p for b in cni.d.show()["bridges"] for p in b["ports"]] == []
    assert reserved(cni.ipam_dir) == []              # host-local released it
    assert sh("ip", "-n", cni.ctr, "link", "show", "eth0", check=False).returncode != 0
    assert run_cni("DEL", cni.conf(), netns=cni.netns) == (0, None)
    assert run_cni("DEL", cni.conf(), netns="") == (0, None)        # netns already gone
    assert run_cni("DEL", cni.conf(), container="never-added", netns=cni.netns) == (0, None)


@pytest.mark.parametrize("conf, code", [
    ("{not json", 6),
    ('["a list"]', 6),
    ({"cniVersion": "1.0.0", "name": "x", "type": "vswitch"}, 7),                 # no bridge
    ({"cniVersion": "9.9.9", "name": "x", "type": "vswitch", "bridge": "b"}, 1),  # version
    ({"name": "x", "type": "vswitch", "bridge": "b"}, 7),                          # none
    ({"cniVersion": "1.0.0", "name": "x", "type": "vswitch", "bridge": "b",
      "ipMasq": True}, 2),
])
def test_bad_configurations_get_the_spec_codes(cni, conf, code):
    rc, err = run_cni("ADD", conf, netns=cni.netns)
    assert rc != 0 and err["code"] == code, err
    assert set(err) >= {"cniVersion", "code", "msg"}
    assert [p for b in cni.d.show()["bridges"] for p in b["ports"]] == []


def test_bad_environment_and_unknown_bridge(cni):
    rc, err = run_cni("ADD", cni.conf(), netns=cni.netns, env={"CNI_CONTAINERID": ""})
    assert rc != 0 and err["code"] == 4
    rc, err = run_cni("NOPE", cni.conf(), netns=cni.netns)
    assert rc != 0 and err["code"] == 4
    rc, err = run_cni("ADD", cni.conf(bridge="nosuchbr"), netns=cni.netns)
    assert rc != 0 and err["code"] == 7 and "no bridge nosuchbr" in err["msg"]
    rc, err = run_cni("ADD", cni.conf(), netns="/run/netns/" + PREFIX + "none")
    assert rc != 0 and err["code"] == 3
    rc, err = run_cni("CHECK", cni.conf(version="0.3.1", prevResult={}), netns=cni.netns)
    assert rc != 0 and err["code"] == 1              # CHECK came with 0.4.0
    assert reserved(cni.ipam_dir) == []


def test_older_result_versions_name_the_ip_version(cni):
    rc, res = run_cni("ADD", cni.conf(version="0.4.0"), netns=cni.netns)
    assert rc == 0 and res["cniVersion"] == "0.4.0"
    assert res["ips"][0]["version"] == "4"


def test_vswitchd_down_is_try_again_later(cni):
    cni.d.stop()
    rc, err = run_cni("ADD", cni.conf(), netns=cni.netns)
    assert rc != 0 and err["code"] == 11
    assert reserved(cni.ipam_dir) == []


def test_proc_pid_netns_survives_a_restart_and_is_never_confused(cni):
    """containerd's kind of path: /proc/PID/ns/net.  After kill -9 the TAP is
    re-created in that same namespace; once the process is gone the port
    says its namespace is gone (and nothing lands in another namespace)."""
    holder = subprocess.Popen(["ip", "netns", "exec", cni.ctr, "sleep", "600"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        # ip netns exec has entered the namespace once the inode is the same
        assert wait_for(lambda: Path(path).exists() and
                        os.stat(path).st_ino == os.stat(cni.netns).st_ino, 10)
        rc, res = run_cni("ADD", cni.conf(), netns=path)
        assert rc == 0, res
        cni.d.stop(signal.SIGKILL)
        assert wait_for(lambda: sh("ip", "-n", cni.ctr, "link", "show", "eth0",
                                   check=False).returncode != 0, 10)
        cni.d.start()
        assert wait_for(lambda: sh("ip", "-n", cni.ctr, "link", "show", "eth0",
                                   check=False).returncode == 0, 10)
        [port] = [p for b in cni.d.show()["bridges"] for p in b["ports"]]
        assert port["state"] == "up" and port["netns"] == path
    finally:
        holder.kill()
        holder.wait()
    cni.d.restart()
    [port] = [p for b in cni.d.show()["bridges"] for p in b["ports"]]
    assert port["state"] == "down" and "is gone" in port["error"]
    assert run_cni("DEL", cni.conf(), netns=path) == (0, None)


def test_a_config_file_does_not_take_containers_ports_away(cni, tmp_path):
    """reload of a file, and a start with --config, keep what CNI made."""
    rc, res = run_cni("ADD", cni.conf(), netns=cni.netns)
    assert rc == 0
    own = tmp_path / "own.toml"
    own.write_text(f'[bridge."{PREFIX}own"]\n')
    cni.d.ctl("reload", str(own))
    cni.d.stop()
    cni.d.start(own)
    by_bridge = {b["name"]: [p["name"] for p in b["ports"]] for b in cni.d.show()["bridges"]}
    assert by_bridge[PREFIX + "own"] == [] and len(by_bridge[cni.br]) == 1
    assert run_cni("CHECK", cni.conf(prevResult=res), netns=cni.netns) == (0, None)


def test_without_ipam_the_bridge_hands_out_the_address(cni):
    sn = f"10.{random.randint(224, 250)}.{random.randint(0, 255)}"
    br = PREFIX + "sb"
    cni.d.ctl("add-br", br, f"subnet={sn}.0/24")
    conf = cni.conf(bridge=br)
    del conf["ipam"]
    rc, res = run_cni("ADD", conf, netns=cni.netns)
    assert rc == 0, res
    assert res["ips"] == [{"address": f"{sn}.2/24", "interface": 0, "gateway": f"{sn}.1"}]
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": f"{sn}.1"}]
    assert f"default via {sn}.1 dev eth0" in sh("ip", "-n", cni.ctr, "route").stdout
    assert run_cni("CHECK", dict(conf, prevResult=res), netns=cni.netns) == (0, None)
    assert run_cni("DEL", conf, netns=cni.netns) == (0, None)
    [net] = [b for b in cni.d.show()["bridges"] if b["name"] == br]
    assert [p for p in net["ports"] if not p.get("local")] == []
