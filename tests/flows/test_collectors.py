"""NetFlow v5, IPFIX and sFlow from a bridge to real collectors, with known
traffic across it (tests/flows/traffic.py): nfcapd reads NetFlow and IPFIX,
nfacctd reads IPFIX, sfacctd reads sFlow.  One daemon and one run of the
traffic serve every test of this module."""
from __future__ import annotations

from pathlib import Path

import pytest

from ..helpers import PREFIX, Daemon, wait_for
from . import traffic
from .collectors import Nfcapd, Pmacct
from .expect import by_key as _by_key
from .expect import check_known_flows as _check_known_flows

pytestmark = pytest.mark.netns

A_IP, B_IP = "10.61.0.1", "10.61.0.2"


def check_known_flows(rows, a: int, b: int, icmp_dport: bool = True) -> None:
    _check_known_flows(rows, A_IP, B_IP, a, b, icmp_dport)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work: Path = tmp_path_factory.mktemp("flows")
    nf = Nfcapd(work / "netflow")
    ipfix = Nfcapd(work / "ipfix")
    nfacct = Pmacct(work / "pmacct", "nf")
    sfacct = Pmacct(work / "pmacct", "sf")
    d = Daemon(work)
    br = PREFIX + "fbr"
    try:
        d.start_with({"bridge": {br: {
            "netflow": nf.target, "netflow_idle_timeout": 1, "netflow_engine_id": 7,
            "ipfix": f"{ipfix.target},{nfacct.target}", "ipfix_cache_idle_timeout": 1,
            "sflow": sfacct.target, "sflow_polling": 1, "sflow_sampling": 1,
            "port": {"a": {"netns": PREFIX + "fa", "ip": f"{A_IP}/24"},
                     "b": {"netns": PREFIX + "fb", "ip": f"{B_IP}/24"}}}}})
        traffic.run(traffic.Hosts(PREFIX + "fa", A_IP, PREFIX + "fb", B_IP))

        def drained() -> bool:
            st = d.call("flow/stats", bridge=br)
            return st["netflow"]["cache"]["flows"] == 0 and st["ipfix"]["cache"]["flows"] == 0
        assert wait_for(drained, 20)
        stats = d.call("flow/stats", bridge=br)
        ofports = {p["name"]: p["ofport"] for p in d.show()["bridges"][0]["ports"]}
        wait_for(lambda: any(r.dport == traffic.UDP_PORT for r in nfacct.rows()), 10)
        wait_for(lambda: len(sfacct.counter_samples()) >= 4, 10)
    finally:
        d.stop()
        for c in (nf, ipfix, nfacct, sfacct):
            c.stop()
    return {"nf": nf, "ipfix": ipfix, "nfacct": nfacct, "sfacct": sfacct, "stats": stats,
            "ofports": ofports}


def test_netflow_v5_in_nfdump(run):
    nf = run["nf"]
    check_known_flows(nf.rows(), run["ofports"]["a"], run["ofports"]["b"])
    assert nf.sequence_failures() == 0, nf.info()
    assert run["stats"]["netflow"]["collectors"][nf.target]["refused"] == 0, run["stats"]
    # NetFlow v5 is IPv4 only: the ARP frames were left out, and counted so
    assert run["stats"]["netflow"]["cache"]["skipped"] > 0, run["stats"]


def test_ipfix_in_nfdump(run):
    ipfix = run["ipfix"]
    rows = ipfix.rows()
    check_known_flows(rows, run["ofports"]["a"], run["ofports"]["b"])
    assert ipfix.sequence_failures() == 0, ipfix.info()


def test_ipfix_in_nfacctd(run):
    rows = run["nfacct"].rows()
    # pmacct shows ICMP type/code in neither port column
    check_known_flows(rows, run["ofports"]["a"], run["ofports"]["b"], icmp_dport=False)


def test_sflow_counter_samples_for_every_port(run):
    samples = run["sfacct"].counter_samples()
    by_if: dict[int, list[dict]] = {}
    for s in samples:
        by_if.setdefault(s["ifIndex"], []).append(s)
    assert set(by_if) == set(run["ofports"].values()), by_if.keys()
    for ifindex, recs in by_if.items():
        last = recs[-1]
        assert last["ifStatus"] == 3 and last["ifType"] == 6
        # the transfer crossed both ports, in both directions
        assert last["ifInOctets"] > traffic.TCP_SIZE or last["ifOutOctets"] > traffic.TCP_SIZE
        assert last["ifInUcastPkts"] > traffic.UDP_COUNT
        seqs = [r["sflow_cnt_seq"] for r in recs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_sflow_packet_samples_in_sfacctd(run):
    """sflow_sampling=1: every frame is a sample, so sfacctd's counts are the
    packets themselves (a segmentation-offload TCP frame is one sample, so
    the TCP flow is left out here)."""
    a, b = run["ofports"]["a"], run["ofports"]["b"]
    flows = _by_key([r for r in run["sfacct"].rows() if {r.src, r.dst} == {A_IP, B_IP}])
    seen = "\n".join(f"{k}: {v[:2]}" for k, v in sorted(flows.items()))
    udp = flows[(A_IP, B_IP, "udp", traffic.UDP_SPORT, traffic.UDP_PORT, 0)]
    assert udp[0] == traffic.UDP_COUNT, seen
    assert (udp[2][0].in_if, udp[2][0].out_if) == (a, b)
    icmp = {k[5]: v[0] for k, v in flows.items() if k[:3] == (A_IP, B_IP, "icmp")}
    assert icmp == {0: traffic.PINGS + 1, traffic.TOS: traffic.TOS_PINGS}, seen
    assert run["stats"]["sflow"]["sampling"]["dropped"] == 0
