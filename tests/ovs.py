"""Open vSwitch as a test peer: ovsdb-server and ovs-vswitchd run by hand
in a private directory (this kernel has no openvswitch module, so bridges
use the userspace `netdev` datapath).  Started and stopped by pid; bridges
are deleted before ovs-vswitchd stops, or OVS would leave persistent TAPs
behind."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class OvsPeer:
    def __init__(self, workdir: Path, netns: str | None = None) -> None:
        """netns: run ovs-vswitchd in that (existing) namespace -- one
        netdev-datapath OVS per namespace, see KERNEL-NOTES.md."""
        self.dir = workdir
        self.wrap = ["ip", "netns", "exec", netns] if netns else []
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "OVS_RUNDIR": str(workdir), "OVS_DBDIR": str(workdir),
                    "OVS_LOGDIR": str(workdir), "OVS_SYSCONFDIR": str(workdir)}
        self.procs: list[subprocess.Popen] = []
        self.bridges: list[str] = []

    def _wait_for(self, path: Path) -> None:
        deadline = time.monotonic() + 20
        while not path.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"OVS did not create {path}; see {self.dir}")
            time.sleep(0.05)

    def start(self) -> None:
        db = self.dir / "conf.db"
        subprocess.run(["ovsdb-tool", "create", str(db), SCHEMA], check=True, env=self.env)
        self.procs.append(subprocess.Popen(
            ["ovsdb-server", str(db), f"--remote=punix:{self.dir}/db.sock",
             f"--unixctl={self.dir}/ovsdb.ctl", f"--log-file={self.dir}/ovsdb.log"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self._wait_for(self.dir / "db.sock")
        self.vsctl("--no-wait", "init")
        self.procs.append(subprocess.Popen(
            [*self.wrap, "ovs-vswitchd", f"unix:{self.dir}/db.sock",
             f"--unixctl={self.dir}/vswitchd.ctl",
             f"--log-file={self.dir}/vswitchd.log"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self._wait_for(self.dir / "vswitchd.ctl")

    def vsctl(self, *args: str) -> str:
        r = subprocess.run(["ovs-vsctl", f"--db=unix:{self.dir}/db.sock", "--timeout=30", *args],
                           env=self.env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"ovs-vsctl {' '.join(args)}: {r.stderr}")
        return r.stdout

    def appctl(self, *args: str) -> str:
        r = subprocess.run(["ovs-appctl", "-t", str(self.dir / "vswitchd.ctl"), *args],
                           env=self.env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"ovs-appctl {' '.join(args)}: {r.stderr}")
        return r.stdout

    def add_bridge(self, name: str) -> None:
        self.vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev")
        self.bridges.append(name)

    def stop(self) -> None:
        for br in self.bridges:
            try:
                self.vsctl("--if-exists", "del-br", br)
            except AssertionError:
                pass
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
