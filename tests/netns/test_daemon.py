"""vswitchd itself: start-up errors, one daemon per socket, stale files,
signals, VSWITCH_SOCK."""
from __future__ import annotations

import os
import signal

import pytest

from ..helpers import PREFIX, VSWITCHCTL, VSWITCHD, Daemon, netns_list, sh

pytestmark = pytest.mark.netns


def test_invalid_config_file_stops_start_and_applies_nothing(daemon, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[bridge.br0]\n[bridge.br0.port.p1]\nnetns = "{PREFIX}bad"\n'
                   'ip = "10.0.0.1/33"\n')
    r = daemon.start(bad, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"vswitchd: {bad}:4: bridge br0 port p1: ip: "
                                "'10.0.0.1/33' is not an address with a prefix length "
                                "(like 10.0.0.1/24)")
    assert not daemon.db.exists() and not daemon.sock.exists()
    assert PREFIX + "bad" not in netns_list()


def test_invalid_config_keeps_the_stored_configuration(daemon, tmp_path):
    daemon.start()
    daemon.ctl("add-br", PREFIX + "keep")
    daemon.stop()
    before = daemon.db.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text("[bridge.x]\nmac_table_size = -1\n")
    assert daemon.start(bad, check=False).returncode == 1
    assert daemon.db.read_text() == before


def test_second_daemon_on_the_same_socket_refuses(daemon):
    daemon.start()
    other = Daemon(daemon.dir)
    other.db = daemon.dir / "other.json"
    r = other.start(check=False)
    assert r.returncode == 1 and "already running" in r.stderr
    assert daemon.alive() and daemon.call("list-br") == []


def test_stale_socket_and_pidfile_do_not_stop_a_start(daemon):
    daemon.start()
    daemon.ctl("add-br", PREFIX + "st")
    pid = daemon.pid
    os.kill(pid, signal.SIGKILL)
    daemon.pid = None
    while os.path.exists(f"/proc/{pid}"):
        pass
    assert daemon.sock.exists() and daemon.pidfile.exists()   # left behind
    daemon.start()
    assert daemon.pid != pid
    assert daemon.call("list-br") == [PREFIX + "st"]


def test_sigint_stops_cleanly_and_removes_its_files(daemon):
    daemon.start_with({"bridge": {PREFIX + "br": {"port": {"p1": {"netns": PREFIX + "sg"}}}}})
    assert PREFIX + "sg" in netns_list()
    daemon.stop(signal.SIGINT)
    assert not daemon.sock.exists() and not daemon.pidfile.exists()
    assert PREFIX + "sg" not in netns_list()


def test_vswitch_sock_environment_variable(daemon):
    env = dict(os.environ, VSWITCH_SOCK=str(daemon.sock))
    import subprocess
    r = subprocess.run([VSWITCHD, "--db", str(daemon.db), "--pidfile", str(daemon.pidfile),
                        "--log-file", str(daemon.log), "--detach"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    daemon.pid = int(daemon.pidfile.read_text())
    assert daemon.sock.exists()
    r = subprocess.run([VSWITCHCTL, "list-br"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == ""


def test_created_namespaces_are_remembered_across_a_crash(daemon):
    own, theirs = PREFIX + "cr", PREFIX + "pre"
    sh("ip", "netns", "add", theirs)
    try:
        daemon.start_with({"bridge": {PREFIX + "br": {"port": {
            "p1": {"netns": own}, "p2": {"netns": theirs}}}}})
        os.kill(daemon.pid, signal.SIGKILL)
        while os.path.exists(f"/proc/{daemon.pid}"):
            pass
        daemon.pid = None
        assert {own, theirs} <= netns_list()     # a crash cleans nothing up
        daemon.start()                           # from the database
        assert daemon.port("p1")["state"] == "up"
        daemon.stop()
        assert own not in netns_list()           # it was ours: removed
        assert theirs in netns_list()            # it was not: kept
    finally:
        sh("ip", "netns", "del", theirs, check=False)


def test_second_daemon_on_the_same_database_refuses(daemon, tmp_path):
    """Issue 14 (1): another socket, the same database -- it would attach the
    same interfaces and, when stopped, remove the first one's namespaces."""
    daemon.start_with({"bridge": {PREFIX + "br": {"port": {"p1": {"netns": PREFIX + "db"}}}}})
    other = Daemon(tmp_path / "other")
    other.dir.mkdir()
    other.db = daemon.db
    r = other.start(check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"vswitchd: database {daemon.db} is in use by vswitchd pid "
                                f"{daemon.pid} (socket {daemon.sock})")
    assert not other.sock.exists()
    assert daemon.alive() and daemon.port("p1")["state"] == "up"
    assert PREFIX + "db" in netns_list()
    assert PREFIX + "db" in (daemon.dir / "conf.netns.json").read_text()


@pytest.mark.parametrize("damage", [b"", b'{"version": 1, "system_id": "ab', b"\xff\xfe{}"])
def test_damaged_database_is_reported_and_never_overwritten(daemon, tmp_path, damage):
    """Issue 14 (3): an empty, truncated or non-UTF-8 database ended vswitchd
    with a traceback.  Without --config it must refuse and leave the file;
    with --config it is kept aside, and the start goes on."""
    daemon.db.write_bytes(damage)
    r = daemon.start(check=False)
    assert r.returncode == 1
    msg = r.stderr.strip()
    assert msg.startswith(f"vswitchd: {daemon.db}") and "damaged database" in msg, msg
    assert "Traceback" not in r.stderr and msg.count("\n") == 0
    assert "left untouched" in msg and daemon.db.read_bytes() == damage
    cfg = tmp_path / "start.toml"
    cfg.write_text(f'[bridge.{PREFIX}br]\n')
    r = daemon.start(cfg, check=False)
    assert r.returncode == 0, r.stderr
    daemon.pid = int(daemon.pidfile.read_text())
    kept = [p for p in daemon.dir.iterdir() if p.name.startswith("conf.json.damaged-")]
    assert len(kept) == 1 and kept[0].read_bytes() == damage
    assert f"kept it as {kept[0]}" in r.stderr
    assert daemon.call("list-br") == [PREFIX + "br"]


def test_system_id_survives_a_damaged_database(daemon, tmp_path):
    """MACs derived from the system id stay when the database is cut short
    after its system_id line."""
    daemon.start_with({"bridge": {PREFIX + "br": {"port": {"p1": {"netns": PREFIX + "si"}}}}})
    mac = daemon.port("p1")["device_mac"]
    daemon.stop()
    text = daemon.db.read_text()
    daemon.db.write_text(text[:text.index('"system_id"') + 60])
    daemon.start(daemon.dir / "start.toml")
    assert daemon.port("p1")["device_mac"] == mac


def test_config_file_that_is_not_utf8(daemon, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"[bridge.br0]\nmac_aging = 30\n# caf\xe9\n")
    r = daemon.start(bad, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"vswitchd: {bad}:3: not UTF-8 text (byte 0xe9); a TOML "
                                "file must be UTF-8")
    daemon.start()
    r = daemon.ctl("reload", str(bad), check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"vswitchctl: {bad}:3: not UTF-8 text (byte 0xe9); a TOML "
                                "file must be UTF-8")
