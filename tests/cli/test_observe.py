"""capture, mirrors and trace as a user types them: pipes into tcpdump,
Ctrl-C, a closed pipe, a terminal; one-line errors that change nothing;
mirrors persisted; trace's text and JSON."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from ..helpers import PREFIX, VSWITCHCTL, sh, wait_for
from .test_ctl import fails

pytestmark = pytest.mark.netns


def pinging(lab, count: int = 40) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", PREFIX + "h1", "ping", "-c", str(count),
                             "-i", "0.1", "10.0.0.2"], stdout=subprocess.DEVNULL)


def ctl_cmd(lab, *args: str) -> str:
    return " ".join([VSWITCHCTL, "--sock", str(lab.sock), *args])


def captures(lab) -> list:
    return lab.call("upcall/show")["handlers"]["capture"]


def test_capture_count_into_tcpdump(lab):
    ping = pinging(lab)
    try:
        r = sh("bash", "-c", ctl_cmd(lab, "capture", "h1", "--count", "20") +
               " | tcpdump -r - -nn", timeout=60)
    finally:
        ping.kill()
        ping.wait()
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 20, r.stdout
    # Mostly the pings (two frames every 0.1 s); a namespace that has just come
    # up also sends a few IPv6 frames of its own (MLD reports, neighbour
    # solicitations) and there may be an ARP exchange.
    assert sum("10.0.0.1 > 10.0.0.2: ICMP echo request" in x or
               "10.0.0.2 > 10.0.0.1: ICMP echo reply" in x for x in lines) >= 12, lines
    assert "vswitchctl: 20 frames captured on h1" in r.stderr
    assert "reading from file -, link-type EN10MB (Ethernet)" in r.stderr


def test_capture_stops_quietly_on_a_closed_pipe(lab):
    ping = pinging(lab)
    try:
        r = sh("bash", "-c", ctl_cmd(lab, "capture", "h1") +
               ' | head -c 100 > /dev/null; echo "status ${PIPESTATUS[0]}"', timeout=60)
    finally:
        ping.kill()
        ping.wait()
    assert r.stdout.strip() == "status 0" and r.stderr == ""
    # the daemon noticed the client went away and stopped capturing
    assert wait_for(lambda: captures(lab) == [], timeout=10)


def test_capture_stops_cleanly_on_ctrl_c(lab, tmp_path):
    ping = pinging(lab)
    out = tmp_path / "c.pcap"
    try:
        with open(out, "wb") as f:
            p = subprocess.Popen([VSWITCHCTL, "--sock", str(lab.sock), "capture", "h1"],
                                 stdout=f, stderr=subprocess.PIPE)
            assert wait_for(lambda: out.stat().st_size > 200, timeout=20)
            assert len(captures(lab)) == 1
            p.send_signal(signal.SIGINT)
            rc = p.wait(timeout=20)
    finally:
        ping.kill()
        ping.wait()
    assert rc == 0
    err = p.stderr.read().decode()
    assert "frames captured on h1" in err and "Traceback" not in err
    r = sh("tcpdump", "-r", str(out), "-nn", check=False)
    assert r.returncode == 0 and "truncated" not in r.stderr and r.stdout.count("ICMP") >= 1
    assert wait_for(lambda: captures(lab) == [], timeout=10)


def test_capture_refuses_a_terminal(lab):
    master, slave = os.openpty()
    try:
        r = subprocess.run([VSWITCHCTL, "--sock", str(lab.sock), "capture", "h1"],
                           stdout=slave, stderr=subprocess.PIPE, timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 1 and b"redirect it to a file or a pipe" in r.stderr
    assert captures(lab) == []


def test_mirror_commands_and_errors(lab):
    br = lab.br
    for args, needle in [
            (("add-mirror", br, "m0", "select_src_port=h1"), "give output_port or output_vlan"),
            (("add-mirror", br, "m0", "select_src_port=h1", "output_port=h3",
              "output_vlan=5"), "exclude each other"),
            (("add-mirror", br, "m0", "select_src_port=nope", "output_port=h3"),
             "no port 'nope' on this bridge"),
            (("add-mirror", br, "m0", "select_all=true", "output_vlan=5000"), "out of range"),
            (("add-mirror", br, "m0", "select_vlan=10", "output_port=h3"), "selects nothing"),
            (("add-mirror", br, "m0", "select_all=maybe", "output_port=h3"), "true or false"),
            (("add-mirror", br, "m0", "colour=red", "output_port=h3"), "unknown mirror key"),
            (("add-mirror", PREFIX + "nobr", "m0", "select_all=true", "output_port=h3"),
             "no bridge"),
            (("del-mirror", br, "m9"), "no mirror named m9")]:
        fails(lab, *args, needle=needle)
    lab.ctl("add-mirror", br, "m0", "select_src_port=h1,h2", "select_vlan=0,10-12",
            "output_port=h3")
    fails(lab, "add-mirror", br, "m0", "select_all=true", "output_port=h3",
          needle="already has a mirror named m0")
    fails(lab, "del-port", "h3", needle="output of mirror m0")
    text = lab.ctl("list-mirrors", br).stdout
    assert text.startswith("m0: from h1,h2, VLANs 0,10-12 -> port h3;"), text
    (m,) = json.loads(lab.ctl("list-mirrors", br, "--json").stdout)
    assert (m["select_src_port"], m["select_vlan"], m["output_port"], m["active"]) == \
        (["h1", "h2"], [0, 10, 11, 12], "h3", True)
    # a selected port that goes leaves the selection; the change is kept
    lab.ctl("del-port", "h2")
    lab.restart()
    (m,) = json.loads(lab.ctl("list-mirrors", br, "--json").stdout)
    # (its counter is not checked: h1's namespace sends IPv6 frames of its own)
    assert m["select_src_port"] == ["h1"]
    stored = json.loads(lab.db.read_text())["config"]["bridge"][br]["mirror"]
    assert stored == [{"name": "m0", "select_src_port": ["h1"], "select_vlan": [0, 10, 11, 12],
                       "output_port": "h3"}]
    lab.ctl("del-mirror", br, "m0")
    lab.ctl("del-mirror", br, "m0", "--if-exists")
    assert lab.ctl("list-mirrors", br).stdout.strip() == f"(no mirrors on {br})"
    lab.ctl("del-port", "h3")          # no longer an output: may go


def test_trace_text_json_and_errors(lab):
    br = lab.br
    text = lab.ctl("trace", br, "in_port=h1", "dl_src=02:00:00:00:00:01",
                   "dl_dst=ff:ff:ff:ff:ff:ff").stdout
    assert "flood" in text and "Result: output to h2 untagged, h3 untagged" in text
    t = json.loads(lab.ctl("trace", br, "in_port=h1", "dl_src=02:00:00:00:00:01",
                           "dl_dst=ff:ff:ff:ff:ff:ff", "dl_vlan=7", "--json").stdout)
    assert set(t) == {"steps", "outputs", "drop"}
    assert all(set(o) == {"port", "interface", "vlan", "tagged"} for o in t["outputs"])
    assert sorted((o["port"], o["vlan"], o["tagged"]) for o in t["outputs"]) == \
        [("h2", 7, True), ("h3", 7, True)]
    before = lab.call("port/stats", bridge=br)
    for args, needle in [
            (("trace", br, "in_port=h1", "dl_dst=02:00:00:00:00:02"), "needs dl_src"),
            (("trace", br, "in_port=h1", "dl_src=zz", "dl_dst=02:00:00:00:00:02"),
             "not a MAC address"),
            (("trace", br, "in_port=h9", "dl_src=02:00:00:00:00:01",
              "dl_dst=02:00:00:00:00:02"), "no port or bond member named h9"),
            (("trace", br, "in_port=h1", "dl_src=02:00:00:00:00:01",
              "dl_dst=02:00:00:00:00:02", "nw_src=1.2.3.4"), "unknown trace field"),
            (("trace", br, "in_port=h1", "dl_src=02:00:00:00:00:01",
              "dl_dst=02:00:00:00:00:02", "dl_vlan=4096"), "out of range"),
            (("trace", br, "in_port=h1", "dl_src=02:00:00:00:00:01",
              "dl_dst=02:00:00:00:00:02", "dl_type=0x8100"), "dl_vlan"),
            (("trace", PREFIX + "nobr", "in_port=h1", "dl_src=02:00:00:00:00:01",
              "dl_dst=02:00:00:00:00:02"), "no bridge")]:
        fails(lab, *args, needle=needle)
    # tracing counts nothing (pings may run meanwhile: compare what a trace
    # could have touched, the drops and the FDB of a MAC nobody uses)
    lab.ctl("trace", br, "in_port=h1", "dl_src=02:00:00:00:0f:0f", "dl_dst=02:00:00:00:00:02")
    assert all(r["mac"] != "02:00:00:00:0f:0f" for r in lab.call("fdb/show", bridge=br))
    after = lab.call("port/stats", bridge=br)
    assert [r["drops"] for r in after] == [r["drops"] for r in before]
