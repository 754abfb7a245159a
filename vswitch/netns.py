"""Network namespaces the switch uses, and which of them it created.

The rule (issue 2): a namespace the switch created is removed when its last
port goes or the daemon stops cleanly; one that existed before is never
removed.  Ownership is written to disk *before* the namespace is created, so
after a crash the restarted daemon still knows which namespaces are its own
(a record of a namespace that was never created is harmless: removing a
missing namespace is a no-op).
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


def netns_exists(name: str) -> bool:
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

    @property
    def owned(self) -> frozenset[str]:
        return frozenset(self._owned)

    def _save(self) -> None:
        write_json(self._file, {"owned": sorted(self._owned)})

    def ensure(self, name: str) -> bool:
        """Make sure the namespace exists; returns True if this call created it."""
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
        """Remove the namespace if we created it (the caller knows it is unused)."""
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
        for name in sorted(self._owned - in_use):
            self.release(name)
