#!/usr/bin/env bash
# vswitch benchmark: one command, as root, from anywhere.
#
#   bench/run.sh [--runs 3] [--switches vswitch,linux-bridge,ovs,ovs-tso,vde,bareloop]
#                [--tests tcp,udp64,l2_64,rr,fdb] [--quick]
#
# Installs what is missing (Debian packages, the project venv with matplotlib),
# then runs `python -m bench.suite` with the same arguments.  Results go to
# bench/results/latest.{json,md,png}.  See bench/README.md.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [[ $(id -u) -ne 0 ]]; then
    echo "bench/run.sh: needs root (network namespaces, TAP devices)" >&2
    exit 1
fi

# Debian packages, each only when its program is absent.
declare -A pkg_for=(
    [iperf3]=iperf3 [ovs-vswitchd]=openvswitch-switch [vde_switch]=vde2
    [trafgen]=netsniff-ng [sockperf]=sockperf [gcc]=gcc
)
missing=()
for prog in "${!pkg_for[@]}"; do
    command -v "$prog" >/dev/null 2>&1 || missing+=("${pkg_for[$prog]}")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The project venv: vswitchd for the vswitch peer, matplotlib for the chart.
# Always through setup.sh, so the engine measured is the one in this tree
# (it rebuilds the C engine).  A failed build must not stop the peers from
# being measured: the vswitch runs are then reported as errors.
scripts/setup.sh || echo "bench/run.sh: scripts/setup.sh failed; vswitch will not run" >&2
if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
    .venv/bin/pip install -q matplotlib
fi

exec .venv/bin/python -m bench.suite "$@"
