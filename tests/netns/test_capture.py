"""`vswitchctl capture` against tcpdump inside the namespace: the pcap the
switch writes holds the frames the namespace itself sees (both directions,
whole 64 KB TCP segments, VLAN tags as on the wire); two captures of one
port at once; a capture ends when its port is deleted."""
from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import rdpcap

from ..helpers import PREFIX, VSWITCHCTL, ns, ping_eventually, sh, wait_for
from ..l2 import RawPort

pytestmark = pytest.mark.netns

H1_MAC, H2_MAC, TR_MAC = "02:00:00:00:c1:01", "02:00:00:00:c1:02", "02:00:00:00:c1:03"


@pytest.fixture
def captured(daemon):
    net = f"10.{random.randint(0, 255)}.{random.randint(0, 255)}"
    br = PREFIX + "cbr"
    daemon.start_with({"bridge": {br: {"port": {
        "h1": {"netns": PREFIX + "c1", "ip": f"{net}.1/24", "mac": H1_MAC},
        "h2": {"netns": PREFIX + "c2", "ip": f"{net}.2/24", "mac": H2_MAC},
        "tr": {"netns": PREFIX + "ctr", "trunks": "10"}}}}})
    for n in ("c1", "c2", "ctr"):
        ns(PREFIX + n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    assert ping_eventually(PREFIX + "c1", f"{net}.2")
    daemon.net, daemon.br = net, br
    return daemon


class Tcpdump:
    """tcpdump inside a namespace, writing a pcap, stopped by SIGINT."""

    def __init__(self, netns: str, path: Path) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            # --immediate-mode: without it frames wait in the kernel's ring
            # for up to a second, and a tcpdump stopped sooner never writes them
            ["ip", "netns", "exec", netns, "tcpdump", "-i", "eth0", "-s", "0", "-U", "-n",
             "--immediate-mode", "-B", "65536", "-w", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()       # "listening on eth0, ..."
        assert "listening" in line, line

    def stop(self) -> list:
        self.proc.send_signal(signal.SIGINT)
        _out, self.stats = self.proc.communicate(timeout=20)
        return list(rdpcap(str(self.path)))


class Capture:
    """vswitchctl capture PORT > file, started once its pcap header is out
    (the engine captures from then on), stopped like Ctrl-C."""

    def __init__(self, daemon, port: str, path: Path, *args: str) -> None:
        self.path = path
        self.out = open(path, "wb")
        self.proc = subprocess.Popen([VSWITCHCTL, "--sock", str(daemon.sock), "capture", port,
                                      *args], stdout=self.out, stderr=subprocess.PIPE)
        assert wait_for(lambda: path.stat().st_size >= 24, timeout=20), "no pcap header"

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str, list]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=20)
        self.out.close()
        return rc, self.proc.stderr.read().decode(), list(rdpcap(str(self.path)))


def between(frames, macs) -> Counter:
    """The frames from one of macs to another (or to everyone), as bytes."""
    return Counter(bytes(f) for f in frames
                   if f.src in macs and f.dst in (*macs, "ff:ff:ff:ff:ff:ff"))


def send_bulk(d, nbytes: int) -> None:
    """An exact TCP transfer h1 -> h2 (large segments: the TAPs take TSO)."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", PREFIX + "c2", "python3", "-c",
         "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
         "socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 5555)); s.listen(1); print('ready', "
         "flush=True); c, _ = s.accept(); n = 0\n"
         "while (b := c.recv(1 << 20)): n += len(b)\n"
         "print(n, flush=True)"], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    ns(PREFIX + "c1", "python3", "-c",
       f"import socket; s = socket.create_connection(('{d.net}.2', 5555)); "
       f"s.sendall(b'x' * {nbytes}); s.close()")
    out, _ = server.communicate(timeout=30)
    assert int(out.strip()) == nbytes


def test_capture_holds_what_the_namespace_sees(captured, tmp_path):
    d = captured
    inside = Tcpdump(PREFIX + "c1", tmp_path / "inside.pcap")
    cap = Capture(d, "h1", tmp_path / "switch.pcap")
    second = Capture(d, "h1", tmp_path / "second.pcap")     # two at once
    ns(PREFIX + "c1", "ping", "-c", "3", "-i", "0.2", "-s", "300", f"{d.net}.2")
    send_bulk(d, 2_000_000)
    time.sleep(0.5)
    seen_inside = inside.stop()
    rc, err, by_switch = cap.stop()
    rc2, _err2, by_second = second.stop()
    assert rc == 0 and rc2 == 0, err
    assert "frames captured on h1" in err
    ours = between(seen_inside, (H1_MAC, H2_MAC))
    theirs = between(by_switch, (H1_MAC, H2_MAC))
    assert sum(ours.values()) > 20
    # (if this fails on a loaded machine, the message says whether tcpdump or
    # the switch's queue dropped frames)
    assert theirs == ours, (inside.stats, err, d.call("upcall/show"),
                            [Ether(b).summary() for b in theirs - ours],
                            [Ether(b).summary() for b in ours - theirs])
    assert between(by_second, (H1_MAC, H2_MAC)) == ours
    # the transfer went through in large segments, captured whole, as inside
    assert max(len(f) for f in by_switch) > 10_000
    # both directions
    assert {f.src for f in by_switch} >= {H1_MAC, H2_MAC}
    # and the daemon turned capture off when the clients went away
    assert wait_for(lambda: d.call("upcall/show")["handlers"]["capture"] == [], timeout=10)


def test_capture_shows_vlan_tags_as_on_the_wire(captured, tmp_path):
    d = captured
    inside = Tcpdump(PREFIX + "ctr", tmp_path / "inside.pcap")
    cap = Capture(d, "tr", tmp_path / "switch.pcap")
    d.ctl("set", "port", "h1", "tag=10")
    # tagged frames sent from the trunk's namespace, and untagged ones from
    # h1 (an access port of VLAN 10 now) that reach the trunk tagged
    with RawPort("eth0", PREFIX + "ctr") as tr, RawPort("eth0", PREFIX + "c1") as h1:
        for i in range(3):
            tr.send(bytes(Ether(src=TR_MAC, dst="ff:ff:ff:ff:ff:ff", type=0x8100) /
                          Dot1Q(vlan=10, type=0x88b5) / (bytes([i]) * 50)))
            h1.send(bytes(Ether(src=H1_MAC, dst="ff:ff:ff:ff:ff:ff", type=0x88b5) /
                          (bytes([i]) * 50)))
    time.sleep(0.5)
    seen_inside = inside.stop()
    rc, err, by_switch = cap.stop()
    assert rc == 0, err
    tagged = [f for f in by_switch if Dot1Q in f]
    assert len([f for f in tagged if f.src == TR_MAC]) == 3
    assert len([f for f in tagged if f.src == H1_MAC and f[Dot1Q].vlan == 10]) == 3
    macs = (TR_MAC, H1_MAC)
    assert between(by_switch, macs) == between(seen_inside, macs)


def test_capture_ends_when_its_port_is_deleted(captured, tmp_path):
    d = captured
    cap = Capture(d, "h2", tmp_path / "switch.pcap")
    d.ctl("del-port", "h2")
    rc, err, _frames = _wait_end(cap)
    assert rc == 1 and "port deleted" in err


def _wait_end(cap: Capture):
    try:
        rc = cap.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        cap.proc.kill()
        raise
    cap.out.close()
    return rc, cap.proc.stderr.read().decode(), list(rdpcap(str(cap.path)))


def test_capture_errors(captured):
    d = captured
    r = d.ctl("capture", "nosuch", check=False)
    assert r.returncode == 1 and "no port named nosuch" in r.stderr
    r = sh("bash", "-c", f"{VSWITCHCTL} --sock {d.sock} capture h1 --count 0 > /dev/null",
           check=False)
    assert r.returncode == 1 and "count" in r.stderr
