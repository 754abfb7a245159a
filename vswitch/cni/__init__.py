"""The CNI plugin `vswitch` (console script vswitch-cni): a client of the
control socket that makes a container's interface a vswitch port."""
