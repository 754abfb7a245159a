"""vswitch itself, started as a user would: ``vswitchd --config FILE --detach``.

The namespaces are created by the harness beforehand (with IPv6 off, like the
peers' ones); vswitchd then only moves its TAPs in, names them eth0 and
addresses them, and leaves the namespaces alone when it stops.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .. import topology
from ..proc import BenchError, read_pidfile, reap_strays, run, stop_pid
from ..topology import Names
from .base import Switch

REPO = Path(__file__).resolve().parents[2]


def find_vswitchd() -> str:
    """The vswitchd of the interpreter's environment (the project's .venv
    when run through bench/run.sh), else the one on PATH."""
    beside = Path(sys.executable).parent / "vswitchd"
    if beside.exists():
        return str(beside)
    found = shutil.which("vswitchd")
    if not found:
        raise BenchError("vswitchd not found: run `pip install -e .` in the project venv")
    return found


def config_toml(bridge: str, ports: list[tuple[str, str, str]]) -> str:
    """The daemon's TOML config: one bridge, one port per (name, netns, ip)."""
    lines = [f'[bridge."{bridge}"]']
    for port, ns, ip in ports:
        lines += ["", f'[bridge."{bridge}".port."{port}"]', f'netns = "{ns}"', f'ip = "{ip}"']
    return "\n".join(lines) + "\n"


class Vswitch(Switch):
    name = "vswitch"
    #: extra vswitchd options of this variant
    options: tuple[str, ...] = ()

    def __init__(self, names: Names, workdir: Path) -> None:
        super().__init__(names, workdir)
        self.dir = self.workdir / self.name
        self.pid: int | None = None

    def start(self, ns_a: str, ns_b: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "bench.toml"
        pidfile = self.dir / "vswitchd.pid"
        db = self.dir / "vswitchd.db"
        for stale in (pidfile, db):
            stale.unlink(missing_ok=True)
        cfg.write_text(config_toml(self.names("br"), [
            (self.names("pa"), ns_a, f"{topology.IP_A}/{topology.PREFIXLEN}"),
            (self.names("pb"), ns_b, f"{topology.IP_B}/{topology.PREFIXLEN}"),
        ]))
        res = run([find_vswitchd(), "--config", str(cfg), "--sock", str(self.dir / "vswitchd.sock"),
                   "--db", str(db), "--pidfile", str(pidfile), "--detach", *self.options],
                  check=False, timeout=60)
        # Whatever happened, a pidfile means a daemon we must stop later.
        if pidfile.exists():
            self.pid = read_pidfile(pidfile, 2)
        if res.returncode != 0:
            raise BenchError(f"vswitchd failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
        if self.pid is None:
            self.pid = read_pidfile(pidfile)
        reap_strays()

    def stop(self) -> None:
        if self.pid is not None:
            stop_pid(self.pid, timeout=15)
            self.pid = None
        reap_strays()

    def pids(self) -> list[int]:
        return [self.pid] if self.pid is not None else []

    def version(self) -> str:
        rev = run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], check=False).stdout.strip()
        return f"vswitch {rev}" if rev else "vswitch"

    def describe(self) -> str:
        return "vswitchd from this tree, TAP ports, default config (adaptive polling, cap 200 us)"


class VswitchNoPoll(Vswitch):
    """The same without busy polling: the thread sleeps whenever its queues
    are empty.  Shows what the polling window costs and buys."""
    name = "vswitch-nopoll"
    options = ("--busy-poll-us", "0")

    def describe(self) -> str:
        return "vswitchd from this tree, TAP ports, --busy-poll-us 0"
