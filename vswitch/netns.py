"""Network namespaces the switch uses, and which of them it created.

The rule (issue 2): a namespace the switch created is removed when its last
port goes or the daemon stops cleanly; one that existed before is never
removed.  Ownership is written to disk *before* the namespace is created, so
after a crash the restarted daemon still knows which namespaces are its own
(a record of a namespace that was never created is harmless: removing a
missing namespace is a no-op).

A namespace may also be given as an absolute path: a bind mount such as
Docker's sandbox key (/var/run/docker/netns/ID) or Podman's /run/netns/...,
or a process's own /proc/PID/ns/net (containerd).  The switch never creates
or removes such a namespace: it belongs to the container runtime.  A path is
not an identity, though (a PID is reused, a bind mount can be replaced), so
the first time a port uses a path the namespace's inode is recorded, and a
restarted daemon puts a device back only into that same namespace; anything
else is reported as gone.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from pyroute2 import netns as pr_netns

from .errors import VswitchError
from .links import netlink_call, set_loopback_up
from .store import DamagedFile, keep_aside, read_json, write_json

log = logging.getLogger(__name__)
NETNS_DIR = Path("/run/netns")


def is_path(netns: str) -> bool:
    return netns.startswith("/")


def netns_file(netns: str) -> str:
    """The file to open for a namespace name or path."""
    return netns if is_path(netns) else str(NETNS_DIR / netns)


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def netns_identity(netns: str) -> str | None:
    """'dev:inode' of the namespace behind a name or path, None when there is
    none (missing, or a plain file whose bind mount is gone)."""
    try:
        st = os.stat(netns_file(netns))
    except OSError:
        return None
    if st.st_dev != _nsfs_dev():
        return None
    return f"{st.st_dev}:{st.st_ino}"


def netns_exists(name: str) -> bool:
    if is_path(name):
        return netns_identity(name) is not None
    return (NETNS_DIR / name).exists()


@netlink_call
def _create(name: str) -> None:
    pr_netns.create(name)


@netlink_call
def _remove(name: str) -> None:
    pr_netns.remove(name)


class NamespaceRegistry:
    def __init__(self, state_file: Path) -> None:
        self._file = state_file
        try:
            data = read_json(state_file) or {}
        except DamagedFile as e:
            # Without the record we cannot know which namespaces are ours:
            # we own none (never removing one that may not be ours), and the
            # damaged record is kept for whoever wants to look.
            kept = keep_aside(state_file)
            log.error("%s; kept as %s: namespaces created before are no longer "
                      "removed by vswitchd", e, kept)
            data = {}
        owned = data.get("owned", []) if isinstance(data, dict) else []
        self._owned: set[str] = {n for n in owned if isinstance(n, str)}
        paths = data.get("paths", {}) if isinstance(data, dict) else {}
        self._paths: dict[str, str] = (
            {p: i for p, i in paths.items() if isinstance(p, str) and isinstance(i, str)}
            if isinstance(paths, dict) else {})

    @property
    def owned(self) -> frozenset[str]:
        return frozenset(self._owned)

    def _save(self) -> None:
        write_json(self._file, {"owned": sorted(self._owned), "paths": self._paths})

    def knows(self, path: str) -> bool:
        """Whether a port has used this namespace path before (identity recorded)."""
        return path in self._paths

    def _check_path(self, path: str) -> None:
        """A namespace given by path must exist, and be the one recorded
        when a port first used it."""
        ident = netns_identity(path)
        if ident is None:
            raise VswitchError("ENOENT", f"namespace {path} is gone (no network namespace "
                                         "there any more)")
        known = self._paths.get(path)
        if known is None:
            self._paths[path] = ident
            self._save()
        elif known != ident:
            raise VswitchError("ESTALE", f"namespace {path} is gone: the path now leads to "
                                         "another namespace (its process ended?)")

    def ensure(self, name: str) -> bool:
        """Make sure the namespace exists; returns True if this call created it.
        A path is never created: it must exist (see _check_path)."""
        if is_path(name):
            self._check_path(name)
            return False
        if netns_exists(name):
            return False
        self._owned.add(name)
        self._save()
        try:
            _create(name)
        except OSError as e:
            self._owned.discard(name)
            self._save()
            raise VswitchError.from_errno(e.errno or 5, f"create namespace {name}") from None
        log.info("created namespace %s", name)
        # Our namespaces get a working loopback, as `ip netns add` users expect
        # to set up anyway.
        set_loopback_up(name)
        return True

    def release(self, name: str) -> None:
        """Remove the namespace if we created it (the caller knows it is unused).
        A path is only forgotten."""
        if self._paths.pop(name, None) is not None:
            self._save()
        if name not in self._owned:
            return
        if netns_exists(name):
            try:
                _remove(name)
                log.info("removed namespace %s", name)
            except OSError as e:
                log.warning("cannot remove namespace %s: %s", name, os.strerror(e.errno or 5))
                return
        self._owned.discard(name)
        self._save()

    def release_all_except(self, in_use: set[str]) -> None:
        for name in sorted((self._owned | set(self._paths)) - in_use):
            self.release(name)
