"""Real flow collectors as test peers, on loopback (or inside a test's
namespace), each on a free UDP port, started and stopped by pid:

- nfcapd (Debian's nfdump 1.7) for NetFlow v5 and IPFIX, read back with
  `nfdump -o csv` and `nfdump -I` (its sequence-failure count);
- pmacct's nfacctd for IPFIX and sfacctd for sFlow, writing CSV through the
  print plugin (sfacctd also writes counter samples as JSON lines).
"""
from __future__ import annotations

import csv
import io
import json
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..helpers import wait_for


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wrap(netns: str | None, argv: list[str]) -> list[str]:
    return (["ip", "netns", "exec", netns] if netns else []) + argv


class _Proc:
    proc: subprocess.Popen | None = None
    stop_signal = signal.SIGTERM

    def _start(self, argv: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class NfRow:
    src: str
    dst: str
    sport: int
    dport: int
    proto: str
    tos: int
    packets: int
    bytes: int
    in_if: int
    out_if: int


class Nfcapd(_Proc):
    """nfcapd writing into its own directory; read after stop()."""

    def __init__(self, workdir: Path, netns: str | None = None, bind: str = "127.0.0.1"
                 ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_udp_port()
        self.target = f"{bind}:{self.port}"
        self._start(_wrap(netns, ["nfcapd", "-b", bind, "-p", str(self.port),
                                  "-w", str(self.dir), "-t", "3600"]),
                    workdir.parent / f"nfcapd-{self.port}.log")
        wait_for(lambda: "Startup" in self.log.read_text() or self.proc.poll() is not None,
                 10)

    def rows(self) -> list[NfRow]:
        r = subprocess.run(["nfdump", "-R", str(self.dir), "-o", "csv", "-q", "-N"],
                           capture_output=True, text=True, timeout=60, check=True)
        out = []
        for f in csv.reader(io.StringIO(r.stdout)):
            if len(f) < 18 or not f[0][:1].isdigit():
                continue
            # ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,...
            out.append(NfRow(f[3], f[4], int(f[5]), int(float(f[6])), f[7].strip(),
                             int(f[10]), int(f[11]), int(f[12]), int(f[15]), int(f[16])))
        return out

    def info(self) -> dict[str, str]:
        r = subprocess.run(["nfdump", "-R", str(self.dir), "-I"], capture_output=True,
                           text=True, timeout=60, check=True)
        return dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)

    def sequence_failures(self) -> int:
        return int(self.info()["Sequence failures"].strip())


@dataclass
class PmRow:
    in_if: int
    out_if: int
    src: str
    dst: str
    sport: int
    dport: int
    proto: str
    tos: int
    packets: int
    bytes: int


AGGREGATE = "in_iface,out_iface,src_host,dst_host,src_port,dst_port,proto,tos"


class Pmacct(_Proc):
    """nfacctd (kind "nf") or sfacctd (kind "sf") with the print plugin
    appending CSV every second.  SIGINT stops it (and its plugin) at once;
    SIGTERM lingers."""
    stop_signal = signal.SIGINT

    def __init__(self, workdir: Path, kind: str, netns: str | None = None,
                 bind: str = "127.0.0.1") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_udp_port()
        self.target = f"{bind}:{self.port}"
        self.csv = workdir / f"{kind}acctd-{self.port}.csv"
        self.counters = workdir / f"{kind}acctd-{self.port}.counters.json"
        conf = [
            "daemonize: false",
            f"{kind}acctd_ip: {bind}",
            f"{kind}acctd_port: {self.port}",
            "plugins: print",
            f"aggregate: {AGGREGATE}",
            "print_output: csv",
            f"print_output_file: {self.csv}",
            "print_output_file_append: true",
            "print_refresh_time: 1",
        ]
        if kind == "sf":
            conf += [f"sfacctd_counter_file: {self.counters}", "sfacctd_counter_output: json"]
        cfg = workdir / f"{kind}acctd-{self.port}.conf"
        cfg.write_text("\n".join(conf) + "\n")
        self._start(_wrap(netns, [f"{kind}acctd", "-f", str(cfg)]),
                    workdir / f"{kind}acctd-{self.port}.log")
        wait_for(lambda: "waiting for" in self.log.read_text().lower() or
                 self.proc.poll() is not None, 10)
        time.sleep(0.3)

    def rows(self) -> list[PmRow]:
        """Every row written so far, summed over the print intervals."""
        if not self.csv.exists():
            return []
        sums: dict[tuple, list[int]] = {}
        for f in csv.reader(self.csv.read_text().splitlines()):
            if not f or f[0] == "IN_IFACE":
                continue
            key = (int(f[0]), int(f[1]), f[2], f[3], int(f[4]), int(f[5]), f[6], int(f[7]))
            acc = sums.setdefault(key, [0, 0])
            acc[0] += int(f[8])
            acc[1] += int(f[9])
        return [PmRow(*k, *v) for k, v in sums.items()]

    def counter_samples(self) -> list[dict]:
        if not self.counters.exists():
            return []
        out = []
        for line in self.counters.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("sf_cnt_type") == "sflow_cnt_generic":
                out.append(rec)
        return out
