"""CPU accounting: the switch's processes and the whole machine.

Process CPU comes from /proc/PID/stat fields 14 (utime) and 15 (stime), in
clock ticks; the process-level line already sums all of the process's
threads, so a forwarding thread is counted with its process.  Machine-wide
CPU comes from the first line of /proc/stat.  /proc is global, so neither
depends on the namespace we read it from.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    t: float               # time.monotonic() at the sample
    proc_user: float       # seconds, summed over the switch's processes
    proc_sys: float
    cpu_user: float        # seconds, machine-wide: user + nice
    cpu_sys: float         # system + irq + softirq (softirq is where a kernel switch runs)
    cpu_idle: float        # idle + iowait
    cpu_steal: float       # taken by the hypervisor: noise, not ours


@dataclass(frozen=True)
class Usage:
    wall: float
    proc_user: float
    proc_sys: float
    cpu_user: float
    cpu_sys: float
    cpu_steal: float

    @property
    def proc_total(self) -> float:
        return self.proc_user + self.proc_sys

    @property
    def cpu_busy(self) -> float:
        return self.cpu_user + self.cpu_sys

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in vars(self).items()}


def _proc_ticks(pid: int) -> tuple[int, int]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except FileNotFoundError:
        return 0, 0
    # Fields after the comm's closing ')' start at field 3 (state), so
    # utime (14) and stime (15) are at 11 and 12 of what follows.
    rest = raw[raw.rindex(")") + 2:].split()
    return int(rest[11]), int(rest[12])


def _machine_ticks() -> list[int]:
    with open("/proc/stat") as f:
        fields = f.readline().split()
    assert fields[0] == "cpu"
    return [int(x) for x in fields[1:]]


def sample(pids: list[int]) -> Sample:
    user = sys_ = 0
    for pid in pids:
        u, s = _proc_ticks(pid)
        user += u
        sys_ += s
    m = _machine_ticks()
    # user nice system idle iowait irq softirq steal (guest is inside user)
    return Sample(
        t=time.monotonic(),
        proc_user=user / CLK_TCK, proc_sys=sys_ / CLK_TCK,
        cpu_user=(m[0] + m[1]) / CLK_TCK,
        cpu_sys=(m[2] + m[5] + m[6]) / CLK_TCK,
        cpu_idle=(m[3] + m[4]) / CLK_TCK,
        cpu_steal=(m[7] if len(m) > 7 else 0) / CLK_TCK,
    )


def usage(a: Sample, b: Sample) -> Usage:
    return Usage(wall=b.t - a.t, proc_user=b.proc_user - a.proc_user,
                 proc_sys=b.proc_sys - a.proc_sys, cpu_user=b.cpu_user - a.cpu_user,
                 cpu_sys=b.cpu_sys - a.cpu_sys, cpu_steal=b.cpu_steal - a.cpu_steal)
