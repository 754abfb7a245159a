"""Flow export without a daemon: settings validation, and the three wire
formats checked field by field against their specifications."""
from __future__ import annotations

import struct

import pytest

from vswitch.config import ConfigError, parse_bridge
from vswitch.datapath import FlowRecord
from vswitch.flowexport.ipfix import TEMPLATE_SAMPLING, TEMPLATE_V4, TEMPLATE_V6, Ipfix
from vswitch.flowexport.netflow import NetFlowV5
from vswitch.flowexport.settings import FlowExport, parse_flow_export
from vswitch.flowexport.sflow import PacketSample, PortCounters, SflowAgent


def rec(n: int = 0, v6: bool = False, proto: int = 17, **kw) -> FlowRecord:
    base = dict(src=bytes(15) + b"\x01" if v6 else bytes([10, 0, 0, 1]),
                dst=bytes(15) + b"\x02" if v6 else bytes([10, 0, 0, 2]),
                src_mac=bytes(6), dst_mac=bytes(6), in_port=1, out_port=2, vlan=0,
                ethertype=0x86DD if v6 else 0x0800, src_port=1000 + n, dst_port=53,
                proto=proto, tos=0, tcp_flags=0, end_reason=1, packets=3, bytes=300,
                first_ms=5000, last_ms=6000)
    base.update(kw)
    return FlowRecord(**base)


# --- settings -------------------------------------------------------------------

@pytest.mark.parametrize("key,value,message", [
    ("netflow", "collector", "not HOST:PORT"),
    ("netflow", "localhost:2055", "not an IP address"),
    ("netflow", "127.0.0.1:0", "out of range"),
    ("netflow", "127.0.0.1:9,127.0.0.1:9", "listed twice"),
    ("ipfix_sampling", "0", "out of range"),
    ("ipfix_cache_max_flows", "2000000", "out of range"),
    ("netflow_active_timeout", "soon", "must be an integer"),
    ("sflow_header", 8, "out of range"),
    ("sflow_agent", "agent", "not an IP address"),
])
def test_bad_settings_name_the_key(key, value, message):
    with pytest.raises(ConfigError) as e:
        parse_flow_export({key: value}, ("bridge", "br0"))
    assert message in str(e.value) and key in str(e.value)


def test_settings_round_trip_and_defaults():
    fe = parse_flow_export({"netflow": "127.0.0.1:2055, [::1]:2056",
                            "netflow_active_timeout": "30", "ipfix": ["10.1.1.1:4739"],
                            "sflow": "", "sflow_agent": "10.1.1.9"}, ("bridge", "b"))
    assert [str(t) for t in fe.netflow] == ["127.0.0.1:2055", "[::1]:2056"]
    assert fe.get("netflow_active_timeout") == 30 and fe.get("ipfix_sampling") == 1
    assert fe.sflow == ()
    assert parse_flow_export(fe.to_json(), ()) == fe
    desc = fe.describe()
    assert set(desc) == {"netflow", "ipfix"} and desc["netflow"]["active_timeout"] == 30
    br = parse_bridge("b", {"netflow": "127.0.0.1:2055"}, ("bridge", "b"))
    assert br.flow_export is not None and br.to_json()["netflow"] == "127.0.0.1:2055"
    assert parse_bridge("b", {}, ("bridge", "b")).flow_export is None
    assert FlowExport().to_json() == {}


# --- NetFlow v5 --------------------------------------------------------------------

def test_netflow_v5_layout_and_sequence():
    nf = NetFlowV5(boot_ms=1000, engine_type=1, engine_id=7)
    recs = [rec(i) for i in range(31)] + [rec(99, v6=True)]   # IPv6 is not for v5
    dgrams = nf.datagrams(recs, now_ms=11_000, wall=1_700_000_000.5)
    assert [len(d) for d in dgrams] == [24 + 30 * 48, 24 + 48]
    h = struct.unpack("!HHIIIIBBH", dgrams[1][:24])
    # version, count, uptime, secs, nsecs, flow_sequence = flows sent before
    assert h == (5, 1, 10_000, 1_700_000_000, 500_000_000, 30, 1, 7, 0)
    assert nf.flow_sequence == 31
    r = struct.unpack("!4s4s4sHHIIIIHHBBBBHHBBH", dgrams[0][24:72])
    assert r[:9] == (bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes(4), 1, 2, 3, 300,
                     4000, 5000)
    assert r[9:14] == (1000, 53, 0, 0, 17)
    icmp = nf.datagrams([rec(proto=1, src_port=0, dst_port=0x0800)], 11_000)[0]
    assert struct.unpack("!HH", icmp[24 + 32:24 + 36]) == (0, 0x0800)


# --- IPFIX ---------------------------------------------------------------------------

def sets(msg: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 16
    while off < len(msg):
        sid, ln = struct.unpack("!HH", msg[off:off + 4])
        out.append((sid, msg[off + 4:off + ln]))
        off += ln
    return out


def test_ipfix_templates_sequence_and_deltas():
    ipx = Ipfix(obs_domain_id=42, sampling=10, template_interval=60)
    msgs = ipx.messages([rec(0), rec(1, v6=True)], now_ms=10_000, wall=1_000_000.0)
    version, length, export, seq, domain = struct.unpack("!HHIII", msgs[0][:16])
    assert (version, length, export, seq, domain) == (10, len(msgs[0]), 1_000_000, 0, 42)
    ids = [sid for sid, _ in sets(msgs[0])]
    assert ids == [2, 3, TEMPLATE_SAMPLING]   # templates, options template, options data
    opt = sets(msgs[0])[2][1]
    assert struct.unpack("!IIBII", opt) == (42, 10, 1, 1, 9)
    # one data message per template, the sequence counting data records before it
    data = {sets(m)[0][0]: struct.unpack("!I", m[8:12])[0] for m in msgs[1:]}
    assert data == {TEMPLATE_V4: 1, TEMPLATE_V6: 2}
    v4 = sets(msgs[1])[0][1]
    assert v4[:8] == bytes([10, 0, 0, 1, 10, 0, 0, 2])
    # packetDeltaCount, octetDeltaCount, then flowStart/End in wall-clock ms
    tail = v4[-33:]
    assert struct.unpack("!QQQQB", tail) == (3, 300, 1_000_000_000 - 5000,
                                             1_000_000_000 - 4000, 1)
    # templates again only after template_interval
    again = ipx.messages([rec(2)], now_ms=20_000, wall=1_000_010.0)
    assert [sets(m)[0][0] for m in again] == [TEMPLATE_V4]
    later = ipx.messages([], now_ms=80_000, wall=1_000_070.0)
    assert [sets(m)[0][0] for m in later] == [2]


def test_ipfix_splits_large_batches():
    ipx = Ipfix(0, 1, 60)
    msgs = ipx.messages([rec(i) for i in range(100)], 10_000, 1_000_000.0)
    assert all(len(m) <= 1400 for m in msgs)
    seqs = [struct.unpack("!I", m[8:12])[0] for m in msgs]
    assert seqs == sorted(seqs) and ipx.sequence == 101


# --- sFlow ---------------------------------------------------------------------------

def test_sflow_datagram_layout():
    agent = SflowAgent("127.0.0.1", 3, boot_ms=0)
    c = agent.counter_sample(PortCounters(5, True, 1000, 10, 1, 2000, 20, 2))
    p = agent.packet_sample(PacketSample(5, 6, 100, b"\xaa" * 18, 40, 0), rate=400)
    (d,) = agent.datagrams([c, p], now_ms=1234)
    head = struct.unpack("!IIIIIII", d[:28])
    assert head == (5, 1, 0x7F000001, 3, 1, 1234, 2)
    fmt, ln = struct.unpack("!II", d[28:36])
    assert fmt == 2 and ln == 12 + 8 + 88
    seq, source, nrec, rfmt, rlen, ifindex = struct.unpack("!IIIIII", d[36:60])
    assert (seq, source, nrec, rfmt, rlen, ifindex) == (1, 5, 1, 1, 88, 5)
    off = 36 + ln
    fmt, ln = struct.unpack("!II", d[off:off + 8])
    sample = struct.unpack("!IIIIIIII", d[off + 8:off + 40])
    assert fmt == 1 and sample == (1, 5, 400, 40, 0, 5, 6, 1)
    hdr = struct.unpack("!IIIIII", d[off + 40:off + 64])
    # raw packet header record: ethernet, frame length with FCS, 4 stripped, 18 bytes
    assert hdr == (1, 16 + 20, 1, 104, 4, 18)
    assert len(d) == off + 8 + ln
