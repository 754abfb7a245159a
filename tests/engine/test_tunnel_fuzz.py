"""Hostile frames into tunnel ports: arbitrary bytes, plausible TCP/UDP
frames cut anywhere, arbitrary virtio-net headers, from tagged and untagged
ports, toward tunnels with small inner MTUs (ICMP "fragmentation needed",
outer fragments), with and without UDP GSO.  Nothing may crash (the
sanitizer pass runs this too), every frame is counted once on its input,
and a tunnel's count of frames sent is the sum of its remotes'.  The engine
runs dry (everything decided and built, nothing written), so thousands of
examples cost no socket buffers."""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vswitch._engine import lib

from .harness import Engine
from .test_fuzz import frames, vnet_headers


def build() -> tuple[Engine, list, list[int]]:
    e = Engine(mac_table_size=64)
    port = random.randint(20000, 60000)
    ins = [e.add_port(vnet=True, mtu=9000), e.add_port(vnet=False, mtu=9000)]
    access = e.add_port(vnet=True, mtu=9000)
    e.dp.set_vlan(access.port, "access", 10, ())
    ins.append(access)
    tunnels = []
    for i, (mtu, gso) in enumerate(((576, False), (1450, True), (68, False))):
        p = e.dp.add_port(e.br)
        if i == 1:
            e.dp.set_vlan(p, "trunk", None, [10])
        tunnels.append(e.dp.add_tunnel(p, 100 + i, ["127.0.0.2", "127.0.0.3"], "127.0.0.1",
                                       port, mtu=mtu, udp_gso=gso))
    lib.vs_dp_set_dry_run(e.dp._dp, 1)
    return e, ins, tunnels


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), st.one_of(st.none(), vnet_headers), frames),
                min_size=1, max_size=10))
def test_tunnel_output_survives_anything(batch):
    e, ins, tunnels = build()
    try:
        for which, hdr, frame in batch:
            tp = ins[which]
            before = e.stats(tp)
            e.dp.inject(tp.iface, ((hdr or bytes(10)) if tp.vnet else b"") + frame)
            after = e.stats(tp)
            assert after.rx_packets == before.rx_packets + 1
            settled = (after.rx_forwarded - before.rx_forwarded) + \
                sum(after.drops.values()) - sum(before.drops.values())
            assert settled == 1, (before, after)
        for t in tunnels:
            s = e.dp.iface_stats(t)
            per = e.dp.tunnel_remote_stats(t)
            assert s.tx_packets == sum(r.tx_packets for r in per)
            assert s.drops["tx_error"] == 0
    finally:
        e.close()
