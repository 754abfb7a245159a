"""The control socket under misuse: only root gets in, a client that sends
half a line and stalls blocks nobody, and 50 clients changing ports at once
leave a consistent, persisted state."""
from __future__ import annotations

import json
import socket
import subprocess
import threading
import time

import pytest

from vswitch.client import Client

from ..helpers import PREFIX, name

pytestmark = pytest.mark.netns


def test_only_root_can_connect(daemon, tmp_path):
    daemon.sock = tmp_path / "private" / "vswitchd.sock"
    daemon.start()
    assert oct(daemon.sock.stat().st_mode & 0o777) == "0o600"
    assert oct(daemon.sock.parent.stat().st_mode & 0o777) == "0o700"
    # connect as "nobody", with a program nobody may run (perl)
    probe = ("use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]); "
             "print $s ? 'connected' : \"refused: $!\";")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "perl", "-e", probe, str(daemon.sock)],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.startswith("refused: Permission denied"), r.stdout + r.stderr


def test_a_stalled_half_line_blocks_nobody(daemon):
    daemon.start()
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(str(daemon.sock))
    stalled.sendall(b'{"id": 1, "method": "list-')
    try:
        t0 = time.monotonic()
        for _ in range(5):
            assert daemon.call("list-br") == []
        daemon.ctl("add-br", PREFIX + "sb")
        assert time.monotonic() - t0 < 5
    finally:
        stalled.sendall(b'br"}\n')         # and it still gets its answer
        stalled.settimeout(5)
        reply = json.loads(stalled.recv(65536).split(b"\n")[0])
        stalled.close()
    assert reply == {"id": 1, "result": [PREFIX + "sb"]}


def test_fifty_clients_changing_ports_at_once(daemon):
    daemon.start()
    br = PREFIX + "cbr"
    daemon.ctl("add-br", br)
    errors: list[str] = []

    def client(i: int) -> None:
        port = name(f"c{i}")
        try:
            with Client(str(daemon.sock), timeout=120) as c:
                c.call("add-port", bridge=br, port=port, settings={"type": "internal"})
                if i % 2 == 0:
                    c.call("del-port", bridge=br, port=port)
        except Exception as e:  # collected and asserted below
            errors.append(f"{port}: {e}")
    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    expected = sorted(name(f"c{i}") for i in range(50) if i % 2)
    assert daemon.call("list-ports", bridge=br) == expected
    stored = json.loads(daemon.db.read_text())["config"]["bridge"][br]["port"]
    assert sorted(stored) == expected
    links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True,
                                      text=True).stdout)
    present = sorted(link["ifname"] for link in links if link["ifname"].startswith(name("c")))
    assert present == expected
    daemon.restart()
    assert daemon.call("list-ports", bridge=br) == expected
