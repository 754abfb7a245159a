"""VDE2 (Debian vde2 2.3): a classic userspace learning switch.

``vde`` uses vde_switch's own tuntap module (``-t TAP``, repeatable), so one
process reads and writes both TAPs.  ``vde-plug`` is the other common way,
vde_switch plus one ``vde_plug2tap`` per TAP talking to it over a UNIX
datagram socket; there every frame crosses three processes, and the CPU of
all of them is summed.  Neither opens its TAPs with a virtio-net header, so
the namespaces' kernels segment and checksum TCP in software before the frame
reaches the switch.

vde_switch reads a management console on stdin; ``-d`` daemonizes it (stdin
is /dev/null) and ``-p`` writes the daemon's pid, by which it is stopped.
"""
from __future__ import annotations

from pathlib import Path

from .. import topology
from ..proc import Spawned, read_pidfile, reap_strays, run, stop_pid
from ..topology import Names
from .base import Switch


class Vde(Switch):
    name = "vde"
    plugs = False

    def __init__(self, names: Names, workdir: Path) -> None:
        super().__init__(names, workdir)
        self.dir = self.workdir / self.name
        self._pids: list[int] = []

    def _daemon(self, argv: list[str], pidfile: str, log: str) -> int:
        """Run a self-daemonizing command and return the daemon's pid."""
        path = self.dir / pidfile
        path.unlink(missing_ok=True)
        launcher = Spawned(argv, self.dir / log)
        launcher.wait(15)  # the foreground half exits once the daemon forked
        pid = read_pidfile(path)
        self._pids.append(pid)
        reap_strays()
        return pid

    def start(self, ns_a: str, ns_b: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        sock = str(self.dir / "sock")
        taps = [self.names("va"), self.names("vb")]
        argv = ["vde_switch", "-d", "-p", str(self.dir / "switch.pid"), "-s", sock,
                "-M", str(self.dir / "mgmt")]
        if not self.plugs:
            for tap in taps:
                argv += ["-t", tap]
        self._daemon(argv, "switch.pid", "switch.log")
        if self.plugs:
            for tap in taps:
                self._daemon(["vde_plug2tap", "-d", "-s", sock, "-P", str(self.dir / f"{tap}.pid"), tap],
                             f"{tap}.pid", f"{tap}.log")
        for ns, tap in zip((ns_a, ns_b), taps):
            topology.wait_link(tap)
            topology.move_link(tap, ns)

    def stop(self) -> None:
        # Plugs first, so that the switch does not see them vanish mid-frame.
        for pid in reversed(self._pids):
            stop_pid(pid)
        self._pids.clear()
        reap_strays()
        for tap in (self.names("va"), self.names("vb")):
            if topology.link_exists(tap):
                run(["ip", "link", "del", "dev", tap], check=False)

    def pids(self) -> list[int]:
        return list(self._pids)

    def version(self) -> str:
        out = run(["vde_switch", "--version"], check=False)
        lines = (out.stdout or out.stderr).splitlines()
        return lines[0] if lines else "vde_switch"

    def describe(self) -> str:
        return ("vde_switch + 2 vde_plug2tap (CPU summed)" if self.plugs
                else "vde_switch -t (built-in tuntap), no vnet header")


class VdePlug(Vde):
    name = "vde-plug"
    plugs = True
