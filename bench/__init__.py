"""Benchmark harness: vswitch against the Linux bridge, Open vSwitch (netdev
datapath, with and without userspace TSO), VDE and a bare TAP-to-TAP loop, in
the same two-namespace topology.  Entry point: ``bench/run.sh`` or
``python -m bench.suite``."""
