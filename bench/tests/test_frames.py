"""The test frames are what the report says they are."""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from bench.measure import frames

A, B = "02:77:00:00:00:0a", "02:77:00:00:00:0b"


def test_udp64_layout_and_checksum() -> None:
    f = frames.udp64(A, B, "10.77.0.1", "10.77.0.2")
    assert len(f) == 60
    assert f[:6] == frames.mac_bytes(B) and f[6:12] == frames.mac_bytes(A)
    assert struct.unpack("!H", f[12:14])[0] == 0x0800
    ip = f[14:34]
    assert frames.ipv4_checksum(ip) == 0  # a valid header sums to zero
    assert struct.unpack("!H", ip[2:4])[0] == 46
    assert ip[9] == 17 and ip[12:16] == bytes([10, 77, 0, 1]) and ip[16:20] == bytes([10, 77, 0, 2])
    sport, dport, ulen, csum = struct.unpack("!HHHH", f[34:42])
    assert (sport, dport, ulen, csum) == (9, 9, 26, 0)


def test_l2_64() -> None:
    f = frames.l2_64(A, B)
    assert len(f) == 60 and f[12:14] == b"\x88\xb5" and f[:6] == frames.mac_bytes(B)


def test_trafgen_bytes_roundtrip() -> None:
    f = frames.l2_64(A, B)
    text = frames.trafgen_bytes(f)
    values = bytes(int(x, 16) for x in text.replace("{", "").replace("}", "").replace("\n", "").split(","))
    assert values == f


@pytest.mark.skipif(not shutil.which("trafgen"), reason="needs trafgen (netsniff-ng)")
def test_trafgen_fdb_sends_65536_sources(tmp_path: Path) -> None:
    """trafgen writes what it would send to a pcap: check the source MACs."""
    cfg = tmp_path / "fdb.cfg"
    cfg.write_text(frames.trafgen_fdb(B))
    pcap = tmp_path / "fdb.pcap"
    n = frames.FDB_MACS + 10
    subprocess.run(["trafgen", "-i", str(cfg), "-o", str(pcap), "-n", str(n), "-P", "1",
                    "--no-sock-mem", "--notouch-irq"], check=True, capture_output=True)
    data = pcap.read_bytes()
    off, srcs, lens, types = 24, [], set(), set()
    while off < len(data):
        incl = struct.unpack("<I", data[off + 8:off + 12])[0]
        pkt = data[off + 16:off + 16 + incl]
        srcs.append(pkt[6:12])
        lens.add(len(pkt))
        types.add(pkt[12:14])
        assert pkt[:6] == frames.mac_bytes(B)
        off += 16 + incl
    assert len(srcs) == n and lens == {60} and types == {b"\x88\xb5"}
    assert len(set(srcs)) == frames.FDB_MACS
    assert all(not (s[0] & 1) and (s[0] & 2) for s in srcs)  # unicast, locally administered
