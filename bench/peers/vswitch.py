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


def config_toml(bridge: str, ports: list[tuple[str, str, str]],
                extra: tuple[str, ...] = ()) -> str:
    """The daemon's TOML config: one bridge, one port per (name, netns, ip);
    extra: more bridge keys, as TOML lines."""
    lines = [f'[bridge."{bridge}"]', *extra]
    for port, ns, ip in ports:
        lines += ["", f'[bridge."{bridge}".port."{port}"]', f'netns = "{ns}"', f'ip = "{ip}"']
    return "\n".join(lines) + "\n"


class Vswitch(Switch):
    name = "vswitch"
    #: extra vswitchd options of this variant
    options: tuple[str, ...] = ()

    def bridge_keys(self) -> tuple[str, ...]:
        """Extra bridge settings of this variant (TOML lines)."""
        return ()

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
        ], self.bridge_keys()))
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


class VswitchNetflow(Vswitch):
    """The same with NetFlow v5 export on (default timeouts: 600 s active,
    15 s idle) to a UDP socket the harness holds open on loopback: the cost
    of flow accounting in the forwarding pass, with the once-a-second export
    running."""
    name = "vswitch-netflow"

    def bridge_keys(self) -> tuple[str, ...]:
        import socket
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        return (f'netflow = "127.0.0.1:{self.sink.getsockname()[1]}"',)

    def stop(self) -> None:
        super().stop()
        sink = getattr(self, "sink", None)
        if sink is not None:
            sink.close()
            self.sink = None

    def describe(self) -> str:
        return "vswitchd from this tree, TAP ports, NetFlow v5 on (to a UDP sink on loopback)"
