#!/bin/bash
# Start vswitch on the default lab (configs/lab.toml: bridge br0, namespaces
# h1..h3 on 10.0.0.0/24) and show it working; then a network with a way out
# (bridge br-nat on 10.88.0.0/24: a gateway, addresses handed out, NAT to an
# "outside" namespace of the demo's own behind a veth, a published port).
# Safe to run again: a switch this script started before is stopped first,
# and so is the demo's outside namespace.  The switch keeps running
# afterwards; stop it with:   kill $(cat /run/vswitch/vswitchd.pid)
#
# The network part changes the host as Docker does (see README "Networks"):
# it turns on net.ipv4.ip_forward and adds the nftables table inet vswitch
# (removed again when the switch stops).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
PIDFILE=/run/vswitch/vswitchd.pid

# Stop the daemon a previous run started (only if the pidfile names one).
if [[ -s $PIDFILE ]]; then
    pid=$(cat "$PIDFILE")
    if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q vswitchd; then
        echo "== stopping the vswitchd started earlier (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 50); do [[ -e /proc/$pid ]] || break; sleep 0.1; done
    fi
fi

run() { echo "\$ $*"; "$@"; echo; }
# GET a URL from a namespace ("-": here); Debian 12 has no curl by default
http_get() {
    local where=$1 url=$2
    local -a pre=()
    [[ $where != - ]] && pre=(ip netns exec "$where")
    "${pre[@]}" python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())' "$url"
}
OUTSIDE=vsdemo-out        # the demo's "outside machine"
OUT_LINK=vsdemo0          # its veth; the host side keeps this name
remove_outside() {
    ip netns del "$OUTSIDE" 2>/dev/null || true
    ip link del "$OUT_LINK" 2>/dev/null || true
}

echo "== starting the switch"
run vswitchd --config configs/lab.toml --detach --pidfile "$PIDFILE"
run ip netns exec h1 ping -c1 -W2 10.0.0.2
run ip netns exec h1 ping -c1 -W2 10.0.0.3
run ip netns exec h2 ping -c1 -W2 10.0.0.3
run vswitchctl show
run vswitchctl fdb/show br0
echo "== changing it live"
run vswitchctl add-port br0 h4 --netns h4 --ip 10.0.0.4/24
run ip netns exec h4 ping -c1 -W2 10.0.0.1
run vswitchctl fdb/show br0
run vswitchctl del-port br0 h4
run vswitchctl port/stats br0

echo "== a network with a way out: subnet, gateway, NAT, a published port"
remove_outside
ip netns add "$OUTSIDE"
ip link add "$OUT_LINK" type veth peer name eth0 netns "$OUTSIDE"
ip addr add 10.231.0.1/24 dev "$OUT_LINK"; ip link set "$OUT_LINK" up
ip -n "$OUTSIDE" addr add 10.231.0.2/24 dev eth0; ip -n "$OUTSIDE" link set eth0 up
ip -n "$OUTSIDE" link set lo up
echo "(an outside machine: namespace $OUTSIDE at 10.231.0.2, behind veth $OUT_LINK 10.231.0.1;"
echo " it has no route to 10.88.0.0/24, so only NAT lets the switch's namespaces reach it)"
run vswitchctl add-br br-nat subnet=10.88.0.0/24
run vswitchctl add-port br-nat web --netns web --publish 8080:80
run vswitchctl add-port br-nat client --netns client
run vswitchctl net/show br-nat
run ip netns exec client ping -c1 -W2 10.231.0.2
mkdir -p /run/vswitch/demo-www
echo "hello from namespace web (10.88.0.2)" > /run/vswitch/demo-www/index.html
ip netns exec web python3 -m http.server 80 --bind 0.0.0.0 \
    --directory /run/vswitch/demo-www >/dev/null 2>&1 &
web_server=$!
for _ in $(seq 50); do
    ip netns exec web python3 -c 'import socket; socket.create_connection(("127.0.0.1", 80), 1)' \
        2>/dev/null && break
    sleep 0.1
done
run http_get "$OUTSIDE" http://10.231.0.1:8080/    # from the outside machine
run http_get - http://127.0.0.1:8080/              # from the host itself
run http_get client http://10.88.0.1:8080/         # from the bridge (hairpin)
kill "$web_server"
run nft list table inet vswitch
echo "== vswitchd is running (pid $(cat $PIDFILE)); try: ip netns exec h1 ping 10.0.0.3"
echo "== stop it with: kill \$(cat $PIDFILE)   (ip netns del $OUTSIDE removes the outside)"
