from __future__ import annotations

from pathlib import Path

import pytest

from ..helpers import PREFIX, sh
from .runtimes import NetnsDaemon


@pytest.fixture
def switch_ns(tmp_path: Path):
    """A vswitchd inside a network namespace of the test's own (its nftables
    rules and sysctls stay there)."""
    netns = PREFIX + "sw"
    sh("ip", "netns", "add", netns)
    sh("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up")
    d = NetnsDaemon(tmp_path, ["ip", "netns", "exec", netns])
    d.netns = netns   # type: ignore[attr-defined]
    yield d
    d.stop()
    sh("ip", "netns", "del", netns, check=False)
