"""Every file in configs/ starts, and its hosts reach each other."""
from __future__ import annotations

from pathlib import Path

import pytest

from ..helpers import ROOT, ping_eventually, privatize_config

pytestmark = pytest.mark.netns

CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"lab.toml", "two-bridges.toml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_starts_and_forwards(daemon, path: Path):
    data = privatize_config(path)
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
