"""Private container runtimes for the tests: dockerd, Podman, containerd.

Nothing here touches the host's own runtimes or network: each daemon gets
its own root, state and socket under a temporary directory, and runs in a
network namespace the test created (dockerd with --iptables=false and
--bridge=none, so it leaves every firewall and bridge alone) and in a
mount namespace of its own, so the mounts it makes (overlays, namespace
bind mounts) vanish with it.  vswitchd runs in the same network and mount
namespaces: Docker hands it a TAP by name and a namespace path, and both
must mean the same thing to both.  Every daemon is stopped by its pid.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..helpers import PREFIX, Daemon, sh

DOCKER = "/usr/bin/docker"         # Debian's docker.io client (the reference)
CNI_BIN = Path("/usr/lib/cni")     # Debian's containernetworking-plugins

# Entered with the daemon's network namespace and a new mount namespace:
# a private mount tree; a sysfs of that network namespace (as `ip netns
# exec` gives) with the cgroup hierarchies kept (which `ip netns exec` would
# hide, and which dockerd and runc need); and empty tmpfs over the host-wide
# places a runtime writes to (/run: containerd's shim sockets and runc's
# state, /opt: containerd's /opt/containerd, /etc/docker: dockerd's key), so
# nothing of it lands on the host.  $1/plugins is /run/docker/plugins there
# (the plugin socket is a file the test can reach), and for ctr, $1/netd and
# $1/cnibin are /etc/cni/net.d and /opt/cni/bin (the fixed paths it reads).
PRIVATE_MOUNTS = """set -e
mount --make-rprivate /
if [ "$2" = netns ]; then       # entered into a network namespace of its own
    mkdir -p "$1/cg"
    mount --rbind /sys/fs/cgroup "$1/cg"
    mount -t sysfs sysfs /sys
    mount --move "$1/cg" /sys/fs/cgroup
fi
mount -t tmpfs tmpfs /run
mkdir -p /run/docker/plugins /run/netns
mount --bind "$1/plugins" /run/docker/plugins
mount -t tmpfs tmpfs /opt
mkdir -p /opt/cni/bin
mount --bind "$1/cnibin" /opt/cni/bin
mount --bind "$1/netd" /etc/cni/net.d
if [ -d /etc/docker ]; then mount -t tmpfs tmpfs /etc/docker; fi
shift 2
exec "$@"
"""


def short_tmpdir(tag: str) -> Path:
    """UNIX socket paths must stay under 108 bytes: a short directory."""
    return Path(tempfile.mkdtemp(prefix=f"vs{tag}-", dir="/tmp"))


def stop_pid(pid: int | None, timeout: float = 30) -> None:
    if pid is None or not Path(f"/proc/{pid}").exists():
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


def reap(proc: subprocess.Popen) -> None:
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class NetnsDaemon(Daemon):
    """A vswitchd run inside given namespaces (a command prefix such as
    `nsenter -t PID -m -n` or `ip netns exec NS`), with extra options."""

    def __init__(self, workdir: Path, prefix: list[str], extra: list[str] | None = None
                 ) -> None:
        super().__init__(workdir)
        self.prefix = prefix
        self.extra = extra or []

    def argv(self, config: Path | None = None) -> list[str]:
        return self.prefix + super().argv(config) + self.extra


class PrivateDocker:
    """dockerd with its own data root, exec root, socket and namespaces."""

    def __init__(self) -> None:
        self.dir = short_tmpdir("dk")
        self.netns = PREFIX + "dk"
        self.sock = self.dir / "docker.sock"
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "dockerd.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        sh("ip", "netns", "add", self.netns)
        sh("ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up")
        script = self.dir / "mounts.sh"
        script.write_text(PRIVATE_MOUNTS)
        for d in ("plugins", "cnibin", "netd"):
            (self.dir / d).mkdir()
        argv = ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "-m", "--",
                "sh", str(script), str(self.dir), "netns",
                "dockerd", "--data-root", str(self.dir / "data"),
                "--exec-root", str(self.dir / "x"), "--pidfile", str(self.dir / "docker.pid"),
                "-H", f"unix://{self.sock}", "--iptables=false", "--ip6tables=false",
                "--bridge=none", "--ip-forward=false", "--ip-masq=false",
                "--storage-driver=vfs", "--userland-proxy=false", "--log-level=warn"]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited: {self.log.read_text()[-3000:]}")
            if self.docker("info", check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError(f"dockerd did not start: {self.log.read_text()[-3000:]}")

    def docker(self, *args: str, check: bool = True, timeout: float = 120
               ) -> subprocess.CompletedProcess:
        r = sh(DOCKER, "-H", f"unix://{self.sock}", *args, check=False, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {r.stderr}")
        return r

    def inspect(self, *what: str) -> Any:
        return json.loads(self.docker("inspect", *what).stdout)

    def in_netns(self) -> list[str]:
        """Prefix that runs a command in dockerd's network and mount namespaces."""
        return ["nsenter", "-t", str(self.pid), "-m", "-n"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            stop_pid(self.proc.pid)
            reap(self.proc)
        sh("ip", "netns", "del", self.netns, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def cni_conf(name: str, bridge: str, sock: Path, ipam: dict[str, Any] | None = None,
             port_mappings: bool = False, version: str = "1.0.0") -> dict[str, Any]:
    plugin: dict[str, Any] = {"type": "vswitch", "bridge": bridge, "socket": str(sock)}
    if ipam:
        plugin["ipam"] = ipam
    if port_mappings:
        plugin["capabilities"] = {"portMappings": True}
    return {"cniVersion": version, "name": name, "plugins": [plugin]}


# --- CNI runtimes ------------------------------------------------------------------

def cni_bin_dir(root: Path) -> Path:
    """A CNI plugin directory holding `vswitch` (a link to the console script,
    as the README says to install it) and the standard plugins."""
    import sys
    d = root / "cnibin"
    d.mkdir()
    (d / "vswitch").symlink_to(Path(sys.executable).parent / "vswitch-cni")
    for p in ("loopback", "host-local"):
        (d / p).symlink_to(CNI_BIN / p)
    return d


class HostLeftovers:
    """Host-wide directories a runtime fills whatever it is told (Podman's
    blob cache in /var/lib/containers and runc's state in /run/runc, libcni's
    result cache in /var/lib/cni): those that did not exist before the test
    are removed after it."""

    def __init__(self, *paths: str) -> None:
        self.new = [Path(p) for p in paths if not Path(p).exists()]

    def remove(self) -> None:
        for p in self.new:
            shutil.rmtree(p, ignore_errors=True)


class PrivatePodman:
    """Podman 4.3 with the CNI backend and a private root, run root,
    containers.conf and network configuration directory."""

    def __init__(self) -> None:
        self.leftovers = HostLeftovers("/run/runc", "/var/lib/containers", "/var/lib/cni")
        self.dir = short_tmpdir("pm")
        self.netconf = self.dir / "netconf"
        self.netconf.mkdir()
        bindir = cni_bin_dir(self.dir)
        self.conf = self.dir / "containers.conf"
        self.conf.write_text(f"""[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["{bindir}"]
network_config_dir = "{self.netconf}"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{self.dir}/events.log"
tmp_dir = "{self.dir}/tmp"
""")

    def podman(self, *args: str, check: bool = True, timeout: float = 120
               ) -> subprocess.CompletedProcess:
        env = dict(os.environ, CONTAINERS_CONF=str(self.conf))
        r = subprocess.run(["podman", "--root", str(self.dir / "root"), "--runroot",
                            str(self.dir / "run"), "--storage-driver", "vfs", *args],
                           env=env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {r.stderr}")
        return r

    def stop(self) -> None:
        ids = self.podman("ps", "-aq", check=False).stdout.split()
        if ids:
            self.podman("rm", "-f", "-t", "0", *ids, check=False)
        self.podman("system", "reset", "-f", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.leftovers.remove()


class PrivateContainerd:
    """containerd 1.6 with its own root, state and socket (no CRI), in a
    mount namespace of its own; ctr run --cni against it."""

    def __init__(self) -> None:
        self.leftovers = HostLeftovers("/var/lib/cni")   # go-cni's result cache (ctr)
        self.dir = short_tmpdir("ct")
        self.sock = self.dir / "c.sock"
        (self.dir / "netd").mkdir()
        (self.dir / "plugins").mkdir()
        cni_bin_dir(self.dir)
        self.script = self.dir / "mounts.sh"
        self.script.write_text(PRIVATE_MOUNTS)
        (self.dir / "config.toml").write_text(f"""version = 2
root = "{self.dir}/root"
state = "{self.dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.sock}"
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.dir / "containerd.log", "w") as log:
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--", "sh", str(self.script), str(self.dir), "host",
                 "containerd", "--config", str(self.dir / "config.toml")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError((self.dir / "containerd.log").read_text()[-3000:])
            if self.sock.exists() and self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise AssertionError("containerd did not start")

    def ctr(self, *args: str, check: bool = True, timeout: float = 120
            ) -> subprocess.CompletedProcess:
        """ctr in containerd's mount namespace: the FIFOs it makes for a
        task's I/O and the CNI paths it reads are those containerd sees."""
        assert self.proc is not None
        r = sh("nsenter", "-t", str(self.proc.pid), "-m", "--", "ctr", "-a", str(self.sock),
               "-n", "vstest", *args, check=False, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {r.stderr}")
        return r

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for task in self.ctr("task", "ls", "-q", check=False).stdout.split():
                self.ctr("task", "kill", "-s", "KILL", task, check=False)
            for _ in range(50):
                if not self.ctr("task", "ls", "-q", check=False).stdout.split():
                    break
                for task in self.ctr("task", "ls", "-q", check=False).stdout.split():
                    self.ctr("task", "rm", "-f", task, check=False)
                time.sleep(0.1)
            for c in self.ctr("container", "ls", "-q", check=False).stdout.split():
                self.ctr("container", "rm", c, check=False)
            stop_pid(self.proc.pid)
            reap(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.leftovers.remove()
