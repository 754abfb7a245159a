"""Open vSwitch (Debian 3.1) with the userspace ``netdev`` datapath.

There is no openvswitch kernel module on this machine, so ovsdb-server and
ovs-vswitchd are run by hand from a temporary directory (never the system's
/var/run/openvswitch) and the bridge uses ``datapath_type=netdev``: frames
are switched by ovs-vswitchd's own threads, read from and written to TAP
devices, which is the same architecture as vswitch.  Ports are
``type=tap``; OVS creates them in the root namespace and we move them into
A and B (the fds OVS holds keep working).

``ovs-tso`` sets ``other_config:userspace-tso-enable=true``, which OVS reads
only at start-up, so it is written to the database before ovs-vswitchd
starts.  With it OVS opens its TAPs with a virtio-net header and passes TCP
segments of up to 64 KiB through, as vswitch does; without it every TCP
segment is MSS-sized.
"""
from __future__ import annotations

import os
from pathlib import Path

from .. import cleanup, topology
from ..proc import BenchError, Spawned, run, wait_until
from ..topology import Names
from .base import Switch

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


class Ovs(Switch):
    name = "ovs"
    tso = False

    def __init__(self, names: Names, workdir: Path) -> None:
        super().__init__(names, workdir)
        self.dir = self.workdir / self.name
        self.bridge = self.names("ovs")
        self.db: Spawned | None = None
        self.vswitchd: Spawned | None = None
        self._bridge_token: int | None = None

    # -- helpers -----------------------------------------------------------
    def _env(self) -> dict[str, str]:
        d = str(self.dir)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d,
                "OVS_SYSCONFDIR": d, "OVS_PKGDATADIR": "/usr/share/openvswitch"}

    def _vsctl(self, *args: str, check: bool = True) -> str:
        return run(["ovs-vsctl", f"--db=unix:{self.dir}/db.sock", "--timeout=20", *args],
                   env=self._env(), check=check, timeout=30).stdout

    def appctl(self, *args: str) -> str:
        return run(["ovs-appctl", "-t", str(self.dir / "ovs-vswitchd.ctl"), *args],
                   env=self._env(), timeout=30).stdout

    # -- Switch ------------------------------------------------------------
    def start(self, ns_a: str, ns_b: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        db = self.dir / "conf.db"
        db.unlink(missing_ok=True)
        env = self._env()
        run(["ovsdb-tool", "create", str(db), str(SCHEMA)], env=env)
        self.db = Spawned(
            ["ovsdb-server", str(db), f"--remote=punix:{self.dir}/db.sock",
             f"--unixctl={self.dir}/ovsdb-server.ctl", f"--log-file={self.dir}/ovsdb-server.log"],
            self.dir / "ovsdb-server.out", env=env)
        wait_until(lambda: (self.dir / "db.sock").exists(), 10, "ovsdb-server socket")
        self._vsctl("--no-wait", "init")
        if self.tso:
            # Read once at ovs-vswitchd start-up: must be there before it runs.
            self._vsctl("--no-wait", "set", "Open_vSwitch", ".",
                        "other_config:userspace-tso-enable=true")
        self.vswitchd = Spawned(
            ["ovs-vswitchd", f"unix:{self.dir}/db.sock", f"--unixctl={self.dir}/ovs-vswitchd.ctl",
             f"--log-file={self.dir}/ovs-vswitchd.log"],
            self.dir / "ovs-vswitchd.out", env=env)
        wait_until(lambda: (self.dir / "ovs-vswitchd.ctl").exists(), 10, "ovs-vswitchd control socket")
        # From here on a bridge exists whose TAPs must be deleted through OVS.
        self._bridge_token = cleanup.push(f"ovs bridge {self.bridge}", self._del_bridge)
        self._vsctl("add-br", self.bridge, "--", "set", "bridge", self.bridge,
                    "datapath_type=netdev")
        for ns, side in ((ns_a, "a"), (ns_b, "b")):
            tap = self.names("o" + side)
            self._vsctl("add-port", self.bridge, tap, "--", "set", "interface", tap, "type=tap")
            topology.wait_link(tap)
            topology.move_link(tap, ns)
        if self.tso and not self.tso_active():
            raise BenchError(f"{self.name}: userspace TSO did not come on; see {self.dir}/ovs-vswitchd.log")

    def tso_active(self) -> bool:
        log = (self.dir / "ovs-vswitchd.log").read_text(errors="replace")
        return "Userspace TCP Segmentation Offloading support enabled" in log

    def _del_bridge(self) -> None:
        if self.vswitchd is not None and self.vswitchd.running():
            self._vsctl("--if-exists", "del-br", self.bridge, check=False)

    def stop(self) -> None:
        # Bridge first (OVS made its TAPs persistent and only it un-persists
        # them), then the daemons, each by its own pid.
        if self._bridge_token is not None:
            cleanup.release(self._bridge_token)
            self._bridge_token = None
        for proc in (self.vswitchd, self.db):
            if proc is not None:
                proc.stop()
        self.vswitchd = self.db = None
        # Safety net for our own names only: the LOCAL port and unmoved TAPs.
        for name in (self.bridge, self.names("oa"), self.names("ob")):
            if topology.link_exists(name):
                run(["ip", "link", "del", "dev", name], check=False)

    def pids(self) -> list[int]:
        # ovsdb-server holds configuration only; ovs-vswitchd's threads
        # (main/non-PMD loop, handler, revalidator) do all the switching.
        return [self.vswitchd.pid] if self.vswitchd is not None else []

    def version(self) -> str:
        return run(["ovs-vswitchd", "--version"]).stdout.splitlines()[0]

    def describe(self) -> str:
        return ("ovs-vswitchd netdev datapath, NORMAL bridge, type=tap ports"
                + (", userspace-tso-enable=true" if self.tso else ", no TSO"))


class OvsTso(Ovs):
    name = "ovs-tso"
    tso = True
