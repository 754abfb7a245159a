"""A namespace blasts 1,000,000 random frames (random MACs, sizes, tags) at
the switch while two other namespaces ping each other: the pings keep
working, the FDB never holds more than mac_table_size entries, memory and
open files stop growing once the table is full, and the counters account
for every frame."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ..helpers import PREFIX, ns, ping_eventually

pytestmark = pytest.mark.netns

BR = PREFIX + "fbr"
TABLE = 1000


def templates() -> str:
    """trafgen packets: random addresses (so half the sources are group
    addresses and most destinations unknown), 0-2 tags of either TPID,
    random ethertype and payload, sizes from a cut-short tag to a full frame."""
    out = []
    for tags in ("", "c16(0x8100), drnd(2),", "c16(0x88a8), drnd(2), c16(0x8100), drnd(2),"):
        for size in (1, 46, 200, 1000, 1486):
            out.append(f"{{ drnd(6), drnd(6), {tags} drnd(2), drnd({size}) }}")
    out.append("{ drnd(6), drnd(6), c16(0x8100), drnd(1) }")    # a tag cut short
    out.append("{ drnd(6), drnd(6), c16(0x88a8), drnd(2), c16(0x8100) }")
    return "\n".join(out) + "\n"


def counters(netns: str, dev: str = "eth0") -> dict[str, int]:
    base = f"/sys/class/net/{dev}/statistics"
    r = ns(netns, "sh", "-c", f"cat {base}/tx_packets {base}/tx_dropped")
    tx, dropped = (int(x) for x in r.stdout.split())
    return {"tx": tx, "tx_dropped": dropped}


def proc_status(pid: int) -> tuple[int, int]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
               .splitlines() if line.startswith("VmRSS:"))
    return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_a_million_random_frames(daemon, tmp_path):
    if not shutil.which("trafgen"):
        pytest.fail("trafgen (netsniff-ng) is not installed; scripts/setup.sh --test installs it")
    daemon.start_with({"bridge": {BR: {"mac_table_size": TABLE, "port": {
        "h1": {"netns": PREFIX + "h1", "ip": "10.0.0.1/24"},
        "h2": {"netns": PREFIX + "h2", "ip": "10.0.0.2/24"},
        "bl": {"netns": PREFIX + "bl"}}}}})
    assert ping_eventually(PREFIX + "h1", "10.0.0.2")
    cfg = tmp_path / "random.cfg"
    cfg.write_text(templates())
    max_entries = [0]
    done = threading.Event()

    def watch_fdb() -> None:
        while not done.is_set():
            max_entries[0] = max(max_entries[0],
                                 daemon.call("fdb/stats-show", bridge=BR)["entries"])
            time.sleep(0.05)
    watcher = threading.Thread(target=watch_fdb)
    watcher.start()
    before = counters(PREFIX + "bl")
    pinger = subprocess.Popen(["ip", "netns", "exec", PREFIX + "h1", "ping", "-c", "40", "-i",
                               "0.1", "-W", "1", "10.0.0.2"], stdout=subprocess.PIPE, text=True)
    samples = []
    try:
        for _ in range(2):                          # two halves of 500,000
            ns(PREFIX + "bl", "trafgen", "-i", str(cfg), "-o", "eth0", "-n", "500000",
               "-P", "1", "--no-sock-mem", "--notouch-irq", "-q", timeout=300)
            time.sleep(0.5)
            samples.append(proc_status(daemon.pid))
    finally:
        out, _ = pinger.communicate(timeout=60)
        done.set()
        watcher.join()
    after = counters(PREFIX + "bl")
    sent = (after["tx"] - before["tx"]) + (after["tx_dropped"] - before["tx_dropped"])
    assert sent >= 1_000_000

    received = int(out.split(" received")[0].rsplit(", ", 1)[1])
    assert received >= 32, out                       # pings kept working (80%)
    stats = daemon.call("fdb/stats-show", bridge=BR)
    assert max_entries[0] <= TABLE and stats["entries"] <= TABLE
    assert stats["evicted"] > 0                      # the table was full and churned
    (rss1, fds1), (rss2, fds2) = samples
    assert fds2 == fds1, (fds1, fds2)
    # KiB: no growth once full.  Not under AddressSanitizer, whose quarantine
    # keeps freed memory (the control plane's, answering fdb/stats-show every
    # 50 ms) resident for a while by design: there RSS says nothing of leaks.
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        assert rss2 - rss1 < 2048, (rss1, rss2)

    # Every frame the namespace got through its TAP (the TAP counts it as
    # sent when the switch reads it) was read by the switch, and then either
    # forwarded or dropped for a counted reason.  Counts are since the port
    # was created on both sides; the blaster's own stack may add a stray
    # IPv6 frame between the two readings, hence the tolerance of 2.
    port = {r["port"]: r for r in daemon.call("port/stats", bridge=BR)}["bl"]
    tap_sent = counters(PREFIX + "bl")["tx"]
    assert 0 <= tap_sent - port["rx_packets"] <= 2, (tap_sent, port)
    assert port["rx_packets"] == port["rx_forwarded"] + sum(port["drops"].values())
    assert port["drops"]["runt"] > 0
    print(f"\nblast: {sent} frames offered, {port['rx_packets']} read by the switch, "
          f"{port['rx_forwarded']} forwarded, drops {dict((k, v) for k, v in port['drops'].items() if v)}; "
          f"pings {received}/40; FDB max {max_entries[0]}/{TABLE}, evicted {stats['evicted']}; "
          f"RSS {rss1}->{rss2} KiB, fds {fds1}->{fds2}")
