"""Frame-rate tests: trafgen in A at its maximum rate, counters around it.

trafgen (netsniff-ng) writes frames from one core into A's eth0 through a
PACKET_MMAP ring, bypassing the qdisc.  Rates are taken over a window that
starts after a short warm-up (ring set up, queues full) and ends before
trafgen is stopped, so start-up and shutdown do not dilute them:

- offered   = A's eth0 tx_packets + tx_dropped over the window: every frame
  trafgen got into the device, including those the device dropped because
  the switch behind it did not keep up (a TAP drops when its 1000-frame
  queue is full);
- delivered = B's eth0 rx_packets over the window;
- CPU per frame = switch-process (or machine) CPU over the window divided by
  delivered frames: the frames the switch actually moved.
"""
from __future__ import annotations

import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from .. import topology
from ..proc import BenchError, Spawned
from . import Result, cpu


@dataclass(frozen=True)
class Counted:
    t: float
    c: dict[str, int]


def _count(ns: str) -> Counted:
    t0 = time.monotonic()
    c = topology.counters(ns)
    return Counted((t0 + time.monotonic()) / 2, c)


def _per_frame_us(seconds: float, frames: int) -> float | None:
    return seconds / frames * 1e6 if frames > 0 else None


def run_pps(*, ns_a: str, ns_b: str, config: str, pids: list[int], has_process: bool,
            workdir: Path, tag: str, duration: float, procs: int = 1, warmup: float = 1.0) -> Result:
    cfg = workdir / f"trafgen-{tag}.cfg"
    cfg.write_text(config)
    # -P 1 by default: one generator process, pinned by trafgen to CPU 0
    # (its own default is one per CPU, which would take the CPU a userspace
    # switch needs).  --no-sock-mem/--notouch-irq: leave the machine's
    # sysctls and IRQ affinities alone.
    gen = Spawned(["trafgen", "-i", str(cfg), "-o", topology.IFACE, "-P", str(procs),
                   "--no-sock-mem", "--notouch-irq"], workdir / f"trafgen-{tag}.log", ns=ns_a)
    try:
        time.sleep(warmup)
        if not gen.running():
            raise BenchError(f"trafgen exited early: {gen.log_tail()}")
        a0, b0, c0 = _count(ns_a), _count(ns_b), cpu.sample(pids)
        time.sleep(duration)
        c1, b1, a1 = cpu.sample(pids), _count(ns_b), _count(ns_a)
        if not gen.running():
            raise BenchError(f"trafgen exited during the test: {gen.log_tail()}")
        # SIGINT makes trafgen print its totals.
        gen.send_signal(signal.SIGINT)
        gen.wait(15)
    finally:
        gen.stop()
    m = re.search(r"(\d+) packets outgoing", gen.log.read_text(errors="replace"))
    offered = (a1.c["tx_packets"] + a1.c["tx_dropped"]) - (a0.c["tx_packets"] + a0.c["tx_dropped"])
    delivered = b1.c["rx_packets"] - b0.c["rx_packets"]
    offered_pps = offered / (a1.t - a0.t)
    delivered_pps = delivered / (b1.t - b0.t)
    use = cpu.usage(c0, c1)
    return {
        "metrics": {
            "offered_kpps": offered_pps / 1e3,
            "delivered_kpps": delivered_pps / 1e3,
            "loss_pct": max(0.0, 100.0 * (1 - delivered_pps / offered_pps)) if offered_pps else None,
            "proc_user_us_per_frame": _per_frame_us(use.proc_user, delivered) if has_process else None,
            "proc_sys_us_per_frame": _per_frame_us(use.proc_sys, delivered) if has_process else None,
            "proc_us_per_frame": _per_frame_us(use.proc_total, delivered) if has_process else None,
            "proc_cpu_pct": 100 * use.proc_total / use.wall if has_process else None,
            "machine_us_per_frame": _per_frame_us(use.cpu_busy, delivered),
        },
        "raw": {
            "window_s": round(b1.t - b0.t, 4),
            "offered_frames": offered, "delivered_frames": delivered,
            "a_before": a0.c, "a_after": a1.c, "b_before": b0.c, "b_after": b1.c,
            "trafgen_total_sent": int(m.group(1)) if m else None,
            "cpu": use.to_json(),
        },
    }
