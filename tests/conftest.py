"""Session rules: the namespace/TAP tests need root and must run, not skip.

Set VSWITCH_ALLOW_SKIP=1 on a developer machine without root to skip them
instead; CI never sets it, so there a missing capability fails the run.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from .helpers import PREFIX, ROOT, Daemon, privatize_config, remove_our_leftovers


def _can_netns() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


def pytest_collection_modifyitems(config, items):
    problem = _can_netns()
    if not problem or not any("netns" in item.keywords for item in items):
        return
    if os.environ.get("VSWITCH_ALLOW_SKIP") != "1":
        raise pytest.UsageError(f"the namespace/TAP tests cannot run here ({problem}); "
                                "run as root, or set VSWITCH_ALLOW_SKIP=1 to skip them")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture(scope="session", autouse=True)
def _cleanup_session():
    yield
    remove_our_leftovers()


@pytest.fixture
def daemon(tmp_path: Path):
    """A vswitchd of this test's own (started by the test)."""
    d = Daemon(tmp_path)
    yield d
    d.stop()


@pytest.fixture
def lab(daemon):
    """The README's lab (configs/lab.toml) under this session's names."""
    daemon.start_with(privatize_config(ROOT / "configs" / "lab.toml"))
    daemon.br = PREFIX + "br0"
    return daemon
