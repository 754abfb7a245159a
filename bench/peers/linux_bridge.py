"""The Linux bridge: the in-kernel reference, fastest on this machine.

The bridge lives in a third namespace of its own so that nothing is added to
the root namespace; veth pairs connect it to A and B.  Forwarding happens in
softirq context, on whichever CPU sent the frame: there is no switch process
and so no process CPU, only machine-wide CPU.
"""
from __future__ import annotations

import platform

from .. import cleanup, topology
from ..proc import run
from .base import Switch


class LinuxBridge(Switch):
    name = "linux-bridge"
    has_process = False

    _token: int | None = None

    def start(self, ns_a: str, ns_b: str) -> None:
        sw = self.names("s")
        self._token = topology.create_ns(sw)
        br = self.names("br")
        run(["ip", "-n", sw, "link", "add", br, "type", "bridge"])
        for ns, side in ((ns_a, "a"), (ns_b, "b")):
            port = self.names("p" + side)
            # Created directly in place: the switch end in the bridge's
            # namespace, the host end in A or B already named eth0.
            run(["ip", "-n", sw, "link", "add", port, "type", "veth",
                 "peer", "name", topology.IFACE, "netns", ns])
            run(["ip", "-n", sw, "link", "set", port, "master", br, "up"])
        run(["ip", "-n", sw, "link", "set", br, "up"])

    def stop(self) -> None:
        # Deleting the namespace deletes the bridge and the veth pairs.
        if self._token is not None:
            cleanup.release(self._token)
            self._token = None

    def pids(self) -> list[int]:
        return []

    def version(self) -> str:
        return f"kernel {platform.release()}"

    def describe(self) -> str:
        return "kernel bridge in its own namespace, veth pairs (default offloads), STP off"
