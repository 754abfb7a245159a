"""LACP and balance-tcp against Open vSwitch 3.1.

Two veth pairs join our bond (lacp=active, lacp-time=fast, balance-tcp) to
an OVS bond configured the same way; OVS runs its netdev datapath in a
namespace of its own.  A host hangs off each switch.  Both ends must report
"negotiated" and each other's system id, pings pass, 8 iperf3 streams use
both members, a member taken down leaves the aggregate on both sides while
pings every 10 ms lose at most a few, and comes back within seconds; a
member whose LACPDUs stop while its link stays up leaves within the 3 s
timeout and pings go on.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest

from ..helpers import PREFIX, name, ns, ping_eventually, sh
from ..lacp.wiring import (counter, distributing, finish_pings, host, our_lacp,
                           start_pings, veth, wait_until)
from ..ovs import OvsPeer

pytestmark = [pytest.mark.netns, pytest.mark.interop]

OURS_IP, THEIRS_IP = "10.61.0.1", "10.61.0.2"


def ovs_lacp(ovs: OvsPeer, bond: str) -> dict:
    """`ovs-appctl lacp/show` read into {status, sys_id, members: {name:
    {status, attached, may_enable, partner_sys_id}}}."""
    text = ovs.appctl("lacp/show", bond)
    out: dict = {"members": {}, "text": text}
    m = re.search(r"status: (.*)", text)
    out["status"] = m.group(1).split() if m else []
    m = re.search(r"^\s*sys_id: (\S+)", text, re.M)
    out["sys_id"] = m.group(1) if m else None
    for block in text.split("\nmember: ")[1:]:
        head = block.splitlines()[0]          # "ob0: current attached"
        mname, rest = head.split(":", 1)
        part = re.search(r"partner sys_id: (\S+)", block)
        may = re.search(r"may_enable: (\S+)", block)
        out["members"][mname.strip()] = {
            "status": rest.split(), "may_enable": may and may.group(1) == "true",
            "partner_sys_id": part.group(1) if part else None}
    return out


def ovs_enabled(ovs: OvsPeer, bond: str) -> list[str]:
    text = ovs.appctl("bond/show", bond)
    return sorted(re.findall(r"^member (\S+): enabled", text, re.M))


@pytest.fixture
def lacp_pair(daemon, tmp_path):
    if not shutil.which("ovs-vswitchd"):
        pytest.fail("openvswitch-switch is not installed (scripts/setup.sh --test installs it)")
    ovs_ns, their_host = name("ovsns"), name("oh")
    sh("ip", "netns", "add", ovs_ns)
    ns(ovs_ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    made_links = []
    ovs = OvsPeer(tmp_path / "ovs", netns=ovs_ns)
    try:
        ours = [name("la0"), name("la1")]
        theirs = [name("lo0"), name("lo1")]
        for a, b in zip(ours, theirs):
            veth(a, b, b_netns=ovs_ns)
            made_links.append(a)
        host(their_host, name("ohx"), name("ohi"), f"{THEIRS_IP}/24", outer_netns=ovs_ns)
        # OVS's netdev datapath without userspace TSO takes neither partial
        # checksums nor GSO frames: its host sends finished ones (as OVS's own
        # tests do) and our bond cuts segments in software (offload=false).
        ns(their_host, "ethtool", "-K", name("ohi"), "tx", "off")
        # our side: a host and the bond
        bond = "lbd"
        daemon.start_with({"bridge": {PREFIX + "lbr": {"port": {
            "lh": {"netns": PREFIX + "lh", "ip": f"{OURS_IP}/24"},
            bond: {"type": "bond", "interfaces": ours, "bond_mode": "balance-tcp",
                   "offload": False,
                   "lacp": "active", "lacp-time": "fast", "bond-rebalance-interval": 1000}}}}})
        # their side
        ovs.start()
        obr, obond = name("obr"), name("obd")
        ovs.add_bridge(obr)
        ovs.vsctl("add-bond", obr, obond, *theirs, "lacp=active", "bond_mode=balance-tcp",
                  "other_config:lacp-time=fast", "other_config:bond-rebalance-interval=1000")
        ovs.vsctl("add-port", obr, name("ohx"))
        yield {"d": daemon, "ovs": ovs, "bond": bond, "obond": obond, "ours": ours,
               "theirs": theirs, "ovs_ns": ovs_ns, "their_host": their_host,
               "our_host": PREFIX + "lh"}
    finally:
        ovs.stop()
        for link in made_links:
            sh("ip", "link", "del", link, check=False)
        for n in (their_host, ovs_ns):
            sh("ip", "netns", "del", n, check=False)


def negotiated(p) -> bool:
    o = ovs_lacp(p["ovs"], p["obond"])
    return (our_lacp(p["d"], p["bond"])["status"] == "negotiated"
            and "negotiated" in o["status"]
            and distributing(p["d"], p["bond"]) == p["ours"]
            and ovs_enabled(p["ovs"], p["obond"]) == sorted(p["theirs"]))


def carrying_pings(p) -> int:
    """Which of our members the ping flow to THEIRS_IP leaves by."""
    assert ping_eventually(p["our_host"], THEIRS_IP, tries=10)
    before = [counter(dev, "tx_packets") for dev in p["ours"]]
    ns(p["our_host"], "ping", "-c", "20", "-i", "0.01", "-q", THEIRS_IP, check=False)
    sent = [counter(dev, "tx_packets") - b for dev, b in zip(p["ours"], before)]
    return 0 if sent[0] >= sent[1] else 1


def test_negotiates_with_open_vswitch_and_balances_flows(lacp_pair):
    p = lacp_pair
    took = wait_until(lambda: negotiated(p), 30)
    assert took is not None, (our_lacp(p["d"], p["bond"]), ovs_lacp(p["ovs"], p["obond"]))
    print(f"negotiated with OVS in {took:.1f} s")
    ours = our_lacp(p["d"], p["bond"])
    theirs = ovs_lacp(p["ovs"], p["obond"])
    # each side names the other's system id
    assert ours["partner"]["system_id"] == theirs["sys_id"]
    assert {m["partner_sys_id"] for m in theirs["members"].values()} == \
        {ours["actor"]["system_id"]}
    for m in ours["members"]:
        assert m["pdus_rx"] > 0 and m["pdus_tx"] > 0 and m["pdus_bad"] == 0
        assert {"synchronization", "collecting", "distributing"} <= set(m["partner_state"])
    # the same in the CLI, as a person reads it
    text = p["d"].ctl("lacp/show", p["bond"]).stdout
    assert "status: negotiated" in text and theirs["sys_id"] in text
    shown = json.loads(p["d"].ctl("lacp/show", "--json").stdout)
    assert [b["bond"] for b in shown] == [p["bond"]]

    assert ping_eventually(p["our_host"], THEIRS_IP, tries=10)
    # 8 TCP streams: both members carry them (the bond rebalances every second)
    server = subprocess.Popen(["ip", "netns", "exec", p["their_host"], "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        before = [counter(dev, "tx_bytes") for dev in p["ours"]]
        before_rx = [counter(dev, "rx_packets") for dev in p["ours"]]
        r = ns(p["our_host"], "iperf3", "-c", THEIRS_IP, "-P", "8", "-t", "6", "-J",
               timeout=60)
        result = json.loads(r.stdout)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=20)
    sent = [counter(dev, "tx_bytes") - b for dev, b in zip(p["ours"], before)]
    acks = [counter(dev, "rx_packets") - b for dev, b in zip(p["ours"], before_rx)]
    gbps = result["end"]["sum_received"]["bits_per_second"] / 1e9
    print(f"8 streams: {gbps:.2f} Gbit/s; bytes sent per member {sent}; "
          f"packets received per member {acks}")
    assert all(s > 1_000_000 for s in sent), sent
    show = p["d"].call("bond/show", bond=p["bond"])[0]
    assert [m["buckets"] for m in show["members"]] != [256, 0]
    assert any(m["hashes"] for m in show["members"])


def test_member_down_leaves_on_both_sides_and_comes_back(lacp_pair):
    p = lacp_pair
    assert wait_until(lambda: negotiated(p), 30) is not None
    i = carrying_pings(p)               # take down the link our pings leave by
    pings = start_pings(p["our_host"], THEIRS_IP, 500)
    time.sleep(1.5)
    sh("ip", "link", "set", p["ours"][i], "down")
    left = wait_until(lambda: distributing(p["d"], p["bond"]) == [p["ours"][1 - i]]
                      and ovs_enabled(p["ovs"], p["obond"]) == [p["theirs"][1 - i]], 5)
    run = finish_pings(pings)
    print(f"member down: left both sides in {left}s; pings lost {run.lost} of {run.sent}")
    assert left is not None
    assert run.duplicates == 0 and run.lost <= 10, run.output
    sh("ip", "link", "set", p["ours"][i], "up")
    back = wait_until(lambda: negotiated(p), 15)
    print(f"member back in both aggregates after {back}s")
    assert back is not None and back < 8
    assert ping_eventually(p["our_host"], THEIRS_IP)


def test_partner_silent_on_one_link_is_left_out_within_the_timeout(lacp_pair):
    p = lacp_pair
    assert wait_until(lambda: negotiated(p), 30) is not None
    # silence the link our pings leave by, so the test sees the outage
    i = carrying_pings(p)
    silent = p["theirs"][i]
    # OVS's LACPDUs on that link are dropped as they leave; the link stays up
    rules = (f'add table netdev lacpsilence\n'
             f'add chain netdev lacpsilence out {{ type filter hook egress device "{silent}" '
             f'priority 0; }}\n'
             f'add rule netdev lacpsilence out ether type 0x8809 counter drop\n')
    r = subprocess.run(["ip", "netns", "exec", p["ovs_ns"], "nft", "-f", "-"], input=rules,
                       text=True, capture_output=True)
    assert r.returncode == 0, r.stderr
    pings = start_pings(p["our_host"], THEIRS_IP, 1000)
    t0 = time.monotonic()
    other = 1 - i
    left = wait_until(lambda: distributing(p["d"], p["bond"]) == [p["ours"][other]], 6)
    assert left is not None and left <= 4.5, left       # 3 s timeout, plus a PDU's period
    m = next(m for m in our_lacp(p["d"], p["bond"])["members"] if m["name"] == p["ours"][i])
    assert "expired" in m["actor_state"] or "defaulted" in m["actor_state"]
    assert "LOWER_UP" in sh("ip", "link", "show", p["ours"][i]).stdout   # link still up
    # OVS hears we are no longer in sync there and stops using the link too
    assert wait_until(lambda: ovs_enabled(p["ovs"], p["obond"]) == [p["theirs"][other]], 5)
    time.sleep(max(0.0, 8 - (time.monotonic() - t0)))
    late = start_pings(p["our_host"], THEIRS_IP, 100)
    after = finish_pings(late)
    run = finish_pings(pings)
    print(f"silent link left our aggregate after {left:.1f}s; pings during: lost "
          f"{run.lost}/{run.sent}; after: lost {after.lost}/{after.sent}")
    assert after.lost == 0, after.output
