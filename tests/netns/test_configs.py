"""Every file in configs/ starts, and its hosts reach each other."""
from __future__ import annotations

from pathlib import Path

import pytest

from ..helpers import ROOT, ping_eventually, privatize_config
from ..hostns import HostDaemon, make_host, remove_host

pytestmark = pytest.mark.netns

CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"lab.toml", "two-bridges.toml", "nat.toml"}


def needs_host(data: dict) -> bool:
    """A config with a subnet changes the host's firewall and ip_forward:
    its daemon runs in a private host namespace (tests/hostns.py)."""
    return any("subnet" in br or "subnet6" in br for br in data["bridge"].values())


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_starts_and_forwards(daemon, path: Path, request):
    data = privatize_config(path)
    if needs_host(data):
        host = make_host()
        request.addfinalizer(lambda: remove_host(host))
        daemon = HostDaemon(daemon.dir, host)
        request.addfinalizer(daemon.stop)
    daemon.start_with(data)
    shown = daemon.show()
    assert sorted(b["name"] for b in shown["bridges"]) == sorted(data["bridge"])
    for br in shown["bridges"]:
        assert all(p["state"] == "up" for p in br["ports"]), br
        hosts = [p for p in br["ports"] if p.get("netns") and p.get("ip")]
        others = [p for p in br["ports"] if p.get("ip")]
        assert hosts, f"{path.name}: bridge {br['name']} has no namespace host to test"
        src = hosts[0]
        for dst in others:
            if dst is src:
                continue
            addr = dst["ip"][0].split("/")[0]
            assert ping_eventually(src["netns"], addr), f"{src['name']} -> {dst['name']}"
