#!/bin/bash
# Start vswitch on the default lab (configs/lab.toml: bridge br0, namespaces
# h1..h3 on 10.0.0.0/24) and show it working.  Safe to run again: a switch
# this script started before is stopped first.  The switch keeps running
# afterwards; stop it with:   kill $(cat /run/vswitch/vswitchd.pid)
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
echo "== vswitchd is running (pid $(cat $PIDFILE)); try: ip netns exec h1 ping 10.0.0.3"
echo "== stop it with: kill \$(cat $PIDFILE)"
