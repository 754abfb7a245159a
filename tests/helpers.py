"""Shared machinery of the namespace and CLI tests.

Everything a test creates carries the session's prefix (PREFIX): daemons'
namespaces, veths, TAP-side names.  Teardown removes only names with that
prefix and stops only daemons the tests started, by their pid.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from vswitch.client import Client

BIN = Path(sys.executable).parent
VSWITCHD = str(BIN / "vswitchd")
VSWITCHCTL = str(BIN / "vswitchctl")
ROOT = Path(__file__).resolve().parent.parent

# Short enough that prefix + a name of 9 characters fits in 15 (IFNAMSIZ - 1).
PREFIX = "v" + secrets.token_hex(2) + "-"


def name(base: str) -> str:
    """A namespace/interface name private to this test session."""
    full = PREFIX + base
    assert len(full) <= 15, full
    return full


def sh(*cmd: str, check: bool = True, timeout: float = 60,
       input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout,
                          input=input)


def ns(netns: str, *cmd: str, check: bool = True, timeout: float = 60
       ) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", netns, *cmd, check=check, timeout=timeout)


def ping(netns: str, addr: str, count: int = 1, wait: float = 2) -> bool:
    r = ns(netns, "ping", "-c", str(count), "-W", str(wait), "-i", "0.2", addr, check=False,
           timeout=count * (wait + 1) + 5)
    return r.returncode == 0


def ping_eventually(netns: str, addr: str, tries: int = 5) -> bool:
    return any(ping(netns, addr) for _ in range(tries))


def wait_for(cond, timeout: float = 5.0) -> bool:
    """Poll cond() until it is true or the timeout passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def netns_list() -> set[str]:
    d = Path("/run/netns")
    return {p.name for p in d.iterdir()} if d.exists() else set()


def our_netns() -> set[str]:
    return {n for n in netns_list() if n.startswith(PREFIX)}


def remove_our_leftovers() -> None:
    for n in our_netns():
        sh("ip", "netns", "del", n, check=False)
    links = json.loads(sh("ip", "-j", "link", "show").stdout or "[]")
    for link in links:
        if link.get("ifname", "").startswith(PREFIX):
            sh("ip", "link", "del", link["ifname"], check=False)


# --- TOML for test configs -------------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def to_toml(data: dict[str, Any], table: tuple[str, ...] = ()) -> str:
    """Enough TOML for our configs: nested tables of scalars and lists."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    out = []
    if table and (scalars or not tables):
        out.append("[" + ".".join(json.dumps(t) for t in table) + "]")
    for k, v in scalars.items():
        out.append(f"{json.dumps(k)} = {_toml_value(v)}")
    text = "\n".join(out) + ("\n\n" if out else "")
    for k, v in tables.items():
        text += to_toml(v, table + (k,))
    return text


def privatize_config(path: Path) -> dict[str, Any]:
    """A configs/ file with every namespace and daemon-side device name
    prefixed, so a test can start it without touching the machine's own."""
    data = tomllib.loads(path.read_text())
    bridges = {}
    for bname, br in data.get("bridge", {}).items():
        ports = {}
        for pname, port in br.get("port", {}).items():
            port = dict(port)
            if "netns" in port:
                port["netns"] = PREFIX + port["netns"]
                new_pname = pname
            else:
                new_pname = name(pname)   # its device sits in our namespace
            ports[new_pname] = port
        br = dict(br)
        br["port"] = ports
        bridges[name(bname)] = br
    return {"bridge": bridges}


# --- the daemon under test ------------------------------------------------------------

class Daemon:
    """A vswitchd started by a test, with its own socket, database and pidfile."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.sock = workdir / "vswitchd.sock"
        self.db = workdir / "conf.json"
        self.pidfile = workdir / "vswitchd.pid"
        self.log = workdir / "vswitchd.log"
        self.pid: int | None = None

    def argv(self, config: Path | None = None) -> list[str]:
        argv = [VSWITCHD, "--db", str(self.db), "--sock", str(self.sock),
                "--pidfile", str(self.pidfile), "--log-file", str(self.log),
                "--log-level", "debug", "--detach"]
        if config:
            argv += ["--config", str(config)]
        return argv

    def start(self, config: Path | None = None, check: bool = True
              ) -> subprocess.CompletedProcess:
        r = sh(*self.argv(config), check=False, timeout=120)
        if r.returncode == 0:
            self.pid = int(self.pidfile.read_text())
        elif check:
            raise AssertionError(f"vswitchd failed to start: {r.stderr}\n{self.log_text()}")
        return r

    def start_with(self, data: dict[str, Any]) -> None:
        cfg = self.dir / "start.toml"
        cfg.write_text(to_toml(data))
        self.start(cfg)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def alive(self) -> bool:
        return self.pid is not None and Path(f"/proc/{self.pid}").exists() and \
            "vswitchd" in Path(f"/proc/{self.pid}/cmdline").read_bytes().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.pid is None or not self.alive():
            self.pid = None
            return
        os.kill(self.pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and Path(f"/proc/{self.pid}").exists():
            time.sleep(0.05)
        if Path(f"/proc/{self.pid}").exists():
            os.kill(self.pid, signal.SIGKILL)
            raise AssertionError("vswitchd did not stop on SIGTERM")
        self.pid = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = sh(VSWITCHCTL, "--sock", str(self.sock), *args, check=False, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"vswitchctl {' '.join(args)} failed ({r.returncode}): "
                                 f"{r.stderr}")
        return r

    def call(self, method: str, **params: Any) -> Any:
        with Client(str(self.sock)) as c:
            return c.call(method, **params)

    def show(self) -> dict[str, Any]:
        return self.call("show")

    def port(self, port_name: str) -> dict[str, Any]:
        for br in self.show()["bridges"]:
            for p in br["ports"]:
                if p["name"] == port_name:
                    return p
        raise KeyError(port_name)
