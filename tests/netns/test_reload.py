"""vswitchctl reload and SIGHUP: only the differences are applied, ports
that did not change keep forwarding without losing a ping, and a reload
that fails leaves the running switch exactly as it was."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from ..helpers import PREFIX, netns_list, ping, ping_eventually, to_toml

pytestmark = pytest.mark.netns

BR = PREFIX + "rbr"


def lab(**extra_ports) -> dict:
    ports = {h: {"netns": PREFIX + h, "ip": f"10.0.0.{i}/24"}
             for i, h in ((1, "h1"), (2, "h2"), (3, "h3"))}
    ports.update(extra_ports)
    return {"bridge": {BR: {"mac_aging": 300, "port": ports}}}


@pytest.fixture
def running(daemon, tmp_path):
    cfg = tmp_path / "lab.toml"
    cfg.write_text(to_toml(lab()))
    daemon.start(cfg)
    daemon.cfg = cfg
    assert ping_eventually(PREFIX + "h1", "10.0.0.2")
    return daemon


def pinger(src: str, dst: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", PREFIX + src, "ping", "-i", "0.02", "-W", "1",
                             "-c", str(int(seconds / 0.02)), dst],
                            stdout=subprocess.PIPE, text=True)


def losses(p: subprocess.Popen) -> tuple[int, int]:
    out, _ = p.communicate(timeout=60)
    sent = int(re.search(r"(\d+) packets transmitted", out).group(1))
    got = int(re.search(r"(\d+) received", out).group(1))
    return sent, got


def state(d) -> str:
    return json.dumps(d.show(), sort_keys=True)


def test_reload_applies_only_the_differences(running, tmp_path):
    ping_h1_h2 = pinger("h1", "10.0.0.2", 4)
    time.sleep(0.5)
    data = lab(h4={"netns": PREFIX + "h4", "ip": "10.0.0.4/24"})
    del data["bridge"][BR]["port"]["h3"]
    data["bridge"][BR]["mac_aging"] = 120
    data["bridge"][BR]["port"]["h2"] = {"netns": PREFIX + "h2", "ip": "10.0.0.2/24"}  # same
    running.cfg.write_text(to_toml(data))
    r = running.ctl("reload")
    assert "ports added: h4" in r.stdout and "ports removed: h3" in r.stdout
    assert "bridges changed" in r.stdout
    sent, got = losses(ping_h1_h2)
    assert sent == got, f"unchanged ports lost pings: {got}/{sent}"
    assert ping_eventually(PREFIX + "h4", "10.0.0.1")
    assert PREFIX + "h3" not in netns_list()
    assert running.call("fdb/stats-show", bridge=BR)["mac_aging"] == 120
    assert "nothing changed" in running.ctl("reload").stdout
    running.restart()                      # the reloaded configuration was persisted
    assert [p["name"] for p in running.show()["bridges"][0]["ports"]] == ["h1", "h2", "h4"]


def test_vlan_and_address_changes_by_reload_are_applied_in_place(running):
    data = lab()
    data["bridge"][BR]["port"]["h2"]["ip"] = "10.0.0.22/24"
    data["bridge"][BR]["port"]["h3"]["tag"] = 7
    running.cfg.write_text(to_toml(data))
    out = running.ctl("reload").stdout
    assert "ports changed: h2, h3" in out and "recreated" not in out
    assert not ping(PREFIX + "h1", "10.0.0.3", wait=1)
    assert running.port("h3")["tag"] == 7
    assert ping_eventually(PREFIX + "h1", "10.0.0.22")


def test_failed_reload_changes_nothing(running, tmp_path):
    before = state(running)
    db_before = running.db.read_text()
    data = lab(h5={"netns": PREFIX + "h5", "ip": "10.0.0.5/24"},
               nic={"type": "system"})            # no such interface
    data["bridge"][BR]["port"]["h1"]["tag"] = 3
    del data["bridge"][BR]["port"]["h2"]
    bad = tmp_path / "bad.toml"
    bad.write_text(to_toml(data))
    ping_h1_h2 = pinger("h1", "10.0.0.2", 2)
    r = running.ctl("reload", str(bad), check=False)
    assert r.returncode == 1 and "no interface nic" in r.stderr
    sent, got = losses(ping_h1_h2)
    assert sent == got
    assert state(running) == before and running.db.read_text() == db_before
    assert PREFIX + "h5" not in netns_list()


def test_invalid_file_is_refused_with_its_line(running, tmp_path):
    before = state(running)
    bad = tmp_path / "bad.toml"
    bad.write_text(running.cfg.read_text() + "\nbogus = = 1\n")
    r = running.ctl("reload", str(bad), check=False)
    assert r.returncode == 1 and f"{bad}:" in r.stderr
    bad.write_text(running.cfg.read_text().replace('10.0.0.3/24', '10.0.0.3/99'))
    r = running.ctl("reload", str(bad), check=False)
    assert r.returncode == 1 and re.search(rf"{bad}:\d+: bridge {BR} port h3: ip", r.stderr)
    assert state(running) == before


def test_sighup_reloads_the_start_file(running):
    data = lab(h6={"netns": PREFIX + "h6", "ip": "10.0.0.6/24"})
    running.cfg.write_text(to_toml(data))
    os.kill(running.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "h6" not in running.ctl("list-ports", BR).stdout:
        time.sleep(0.1)
    assert ping_eventually(PREFIX + "h6", "10.0.0.1")
    assert running.alive()


def test_reload_without_a_file_when_started_without_one(daemon):
    daemon.start()
    r = daemon.ctl("reload", check=False)
    assert r.returncode == 1 and "not started with --config" in r.stderr
