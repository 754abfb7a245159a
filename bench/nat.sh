#!/bin/bash
# What a network's NAT costs: TCP throughput (iperf3, one stream) between two
# namespaces on a subnet bridge, from one of them out through masquerade to
# an "outside" namespace, in from the outside through a published port, and
# the bare veth between host and outside for scale.  The switch runs in a
# private "host" namespace, so the machine's own ruleset and ip_forward are
# untouched.  Rounds alternate the paths; medians with min-max are printed.
#
#   bench/nat.sh [ROUNDS] [SECONDS]        (as root; default 3 rounds of 5 s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3} SECS=${2:-5}
P=nb$RANDOM-
W=$(mktemp -d)
HOST=${P}host OUT=${P}out
cleanup() {
    [[ -s $W/pid ]] && kill "$(cat "$W/pid")" 2>/dev/null && sleep 1
    for f in "$W"/iperf-*.pid; do [[ -s $f ]] && kill "$(cat "$f")" 2>/dev/null; done
    ip netns del "$HOST" 2>/dev/null; ip netns del "$OUT" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
ip netns add "$HOST"; ip netns add "$OUT"
ip link add ${P}u0 type veth peer name ${P}u1
ip link set ${P}u0 netns "$HOST"; ip link set ${P}u1 netns "$OUT"
ip -n "$HOST" addr add 10.231.0.1/24 dev ${P}u0; ip -n "$HOST" link set ${P}u0 up
ip -n "$OUT" addr add 10.231.0.2/24 dev ${P}u1; ip -n "$OUT" link set ${P}u1 up
ip -n "$HOST" link set lo up; ip -n "$OUT" link set lo up
C=(.venv/bin/vswitchctl --sock "$W/s")
nsenter --net=/run/netns/"$HOST" .venv/bin/vswitchd --db "$W/db.json" --sock "$W/s" \
    --pidfile "$W/pid" --log-file "$W/log" --detach
"${C[@]}" add-br ${P}br subnet=10.232.0.0/24
"${C[@]}" add-port ${P}br a --netns ${P}a --publish 15201:5201
"${C[@]}" add-port ${P}br b --netns ${P}b
for n in ${P}a ${P}b "$OUT"; do
    ip netns exec "$n" iperf3 -s -D --pidfile "$W/iperf-$n.pid"
done
sleep 1
gbps() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))'; }
declare -A R
for _ in $(seq "$ROUNDS"); do
    R[bridge]+="$(ip netns exec ${P}a iperf3 -c 10.232.0.3 -t "$SECS" -J | gbps) "
    R[nat_out]+="$(ip netns exec ${P}a iperf3 -c 10.231.0.2 -t "$SECS" -J | gbps) "
    R[publish_in]+="$(ip netns exec "$OUT" iperf3 -c 10.231.0.1 -p 15201 -t "$SECS" -J | gbps) "
    R[veth]+="$(ip netns exec "$HOST" iperf3 -c 10.231.0.2 -t "$SECS" -J | gbps) "
done
echo "TCP, 1 stream, Gbit/s: median (min-max) of $ROUNDS rounds of ${SECS}s"
for k in bridge nat_out publish_in veth; do
    python3 - "$k" ${R[$k]} <<'EOF'
import statistics, sys
v = [float(x) for x in sys.argv[2:]]
print(f"  {sys.argv[1]:11s} {statistics.median(v):6.2f} ({min(v):.2f}-{max(v):.2f})")
EOF
done
