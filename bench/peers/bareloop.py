"""bareloop (bench/bareloop.c): two TAPs and an epoll copy loop, no learning.

It is the floor of vswitch's design: the same TAP flags and offloads, the same
32-frame batches, and nothing else.  The gap between it and vswitch is what
vswitch's parsing, FDB, VLAN logic and threading cost; the gap between it and
the Linux bridge is what the TAP round trip through userspace costs.
"""
from __future__ import annotations

import select
from pathlib import Path

from .. import topology
from ..proc import BenchError, Spawned, run
from ..topology import Names
from .base import Switch

SOURCE = Path(__file__).resolve().parent.parent / "bareloop.c"
BUILD_DIR = SOURCE.parent / "build"  # gitignored (build/)


def build() -> Path:
    """Compile bareloop once per source change."""
    BUILD_DIR.mkdir(exist_ok=True)
    binary = BUILD_DIR / "bareloop"
    if not binary.exists() or binary.stat().st_mtime < SOURCE.stat().st_mtime:
        run(["gcc", "-O2", "-Wall", "-Wextra", "-o", str(binary), str(SOURCE)])
    return binary


class Bareloop(Switch):
    name = "bareloop"

    def __init__(self, names: Names, workdir: Path) -> None:
        super().__init__(names, workdir)
        self.proc: Spawned | None = None
        self.ready_line = ""

    def start(self, ns_a: str, ns_b: str) -> None:
        taps = [self.names("la"), self.names("lb")]
        self.proc = Spawned([str(build()), *taps], self.workdir / "bareloop.log", stdout_pipe=True)
        out = self.proc.popen.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], 10)
        line = out.readline().decode().strip() if ready else ""
        if not line.startswith("ready"):
            raise BenchError(f"bareloop did not start: {line!r} {self.proc.log_tail()}")
        self.ready_line = line
        for ns, tap in zip((ns_a, ns_b), taps):
            topology.move_link(tap, ns)

    def stop(self) -> None:
        # Its TAPs are not persistent: they vanish with its fds.
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def version(self) -> str:
        return "bench/bareloop.c (gcc -O2)"

    def describe(self) -> str:
        return "TAP-to-TAP epoll copy, IFF_VNET_HDR, TSO/USO offloads, 32-frame batches, no learning"
