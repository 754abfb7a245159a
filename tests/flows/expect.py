"""What a collector must show for the known traffic of traffic.py."""
from __future__ import annotations

from . import traffic


def by_key(rows):
    out: dict[tuple, list] = {}
    for r in rows:
        out.setdefault((r.src, r.dst, r.proto.lower(), r.sport, r.dport, r.tos), []).append(r)
    return {k: (sum(r.packets for r in v), sum(r.bytes for r in v), v) for k, v in out.items()}


def check_known_flows(rows, A_IP: str, B_IP: str, a: int, b: int,
                      icmp_dport: bool = True) -> None:
    """The flows of traffic.run from A_IP (port a) to B_IP (port b), as a
    collector shows them (rows of collectors.Nfcapd or Pmacct)."""
    flows = by_key([r for r in rows if {r.src, r.dst} == {A_IP, B_IP}])
    seen = "\n".join(f"{k}: {v[:2]}" for k, v in sorted(flows.items()))
    try:
        _check_flows(flows, A_IP, B_IP, a, b, icmp_dport)
    except (AssertionError, KeyError) as e:
        raise AssertionError(f"{e!r}; the collector shows:\n{seen}") from None


def _check_flows(flows, A_IP: str, B_IP: str, a: int, b: int, icmp_dport: bool) -> None:
    echo = 8 * 256 if icmp_dport else 0
    req = flows[(A_IP, B_IP, "icmp", 0, echo, 0)]
    # one more than PINGS: the ARP-priming ping
    assert req[:2] == ((traffic.PINGS + 1), (traffic.PINGS + 1) * traffic.PING_BYTES), req
    assert (req[2][0].in_if, req[2][0].out_if) == (a, b)
    tos = flows[(A_IP, B_IP, "icmp", 0, echo, traffic.TOS)]
    assert tos[:2] == (traffic.TOS_PINGS, traffic.TOS_PINGS * traffic.PING_BYTES), tos
    replies = [v for k, v in flows.items() if k[:3] == (B_IP, A_IP, "icmp")]
    assert sum(v[0] for v in replies) == traffic.PINGS + 1 + traffic.TOS_PINGS
    assert all(v[2][0].in_if == b and v[2][0].out_if == a for v in replies)
    tcp = flows[(A_IP, B_IP, "tcp", traffic.TCP_SPORT, traffic.TCP_PORT, 0)]
    assert traffic.tcp_consistent(tcp[0], tcp[1]), tcp[:2]
    assert tcp[0] >= traffic.TCP_SIZE // 1448
    assert (B_IP, A_IP, "tcp", traffic.TCP_PORT, traffic.TCP_SPORT, 0) in flows
    udp = flows[(A_IP, B_IP, "udp", traffic.UDP_SPORT, traffic.UDP_PORT, 0)]
    assert udp[:2] == (traffic.UDP_COUNT, traffic.UDP_COUNT * (28 + traffic.UDP_PAYLOAD)), udp
