#!/bin/bash
# Prepare this checkout to run vswitch: Debian packages, a virtualenv in
# .venv, the package installed from source (which builds the C engine).
# Safe to run any number of times; installs only what is missing.
#
#   scripts/setup.sh            runtime only
#   scripts/setup.sh --test     also what the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

if [[ $EUID -ne 0 ]]; then
    echo "setup.sh: run as root (it installs packages; vswitch needs root anyway)" >&2
    exit 1
fi

# Debian packages: (package, a file it provides).  Checked one by one so a
# machine that has everything never touches the network.
pkgs=(
    "iproute2:/usr/sbin/ip"
    "iputils-ping:/usr/bin/ping"
    "gcc:/usr/bin/gcc"
    "procps:/usr/bin/pgrep"
    "nftables:/usr/sbin/nft"    # NAT and published ports (vswitch/nft.py)
)
if ! python3 -c 'import sysconfig,os,sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")) else 1)'; then
    pkgs+=("python3-dev:/usr/include/python3.11/Python.h")
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    pkgs+=("python3-venv:/usr/lib/python3.11/ensurepip/__init__.py")
fi
if (( want_test )); then
    pkgs+=("iperf3:/usr/bin/iperf3" "openvswitch-switch:/usr/sbin/ovs-vswitchd"
           "netsniff-ng:/usr/sbin/trafgen" "tcpdump:/usr/bin/tcpdump"
           # flow export collectors (tests/flows): NetFlow/IPFIX, IPFIX/sFlow
           "nfdump:/usr/bin/nfcapd" "pmacct:/usr/sbin/nfacctd"
           # the LACP interop test turns a host's tx checksum offload off
           "ethtool:/usr/sbin/ethtool")
fi
missing=()
for entry in "${pkgs[@]}"; do
    pkg=${entry%%:*} file=${entry#*:}
    [[ -e "$file" ]] || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Several checkouts on one machine may set up at once: apt takes turns.
    exec 9>/var/lock/vswitch-setup-apt.lock
    flock 9
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    flock -u 9
    # The Debian package starts its own OVS service; our tests run their own
    # ovs-vswitchd in a private directory instead.
    if [[ " ${missing[*]} " == *" openvswitch-switch "* ]]; then
        systemctl disable --now openvswitch-switch >/dev/null 2>&1 || true
    fi
fi

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "setup.sh: Python >= 3.11 is required (found $(python3 --version))" >&2; exit 1; }

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
pip_install() {
    # Quiet when it works; the whole output when it does not.
    if ! .venv/bin/pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
        cat "$log" >&2
        echo "setup.sh: pip install $* failed" >&2
        exit 1
    fi
}
pip_install "setuptools>=77" wheel "cffi>=1.16"
extra=""
(( want_test )) && extra="[test]"
# --no-build-isolation: build with the venv's setuptools and cffi just
# installed, instead of downloading them again into a throwaway environment.
pip_install --no-build-isolation -e ".${extra}"
.venv/bin/python -c 'import vswitch._engine' 
echo "setup.sh: ready (.venv/bin/vswitchd, .venv/bin/vswitchctl)"
