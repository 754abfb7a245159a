"""Pieces of the set-up that need no root: names, configs, cleanup order."""
from __future__ import annotations

import tomllib

import pytest

from bench import cleanup
from bench.peers.vswitch import config_toml
from bench.topology import Names


def test_names_are_prefixed_and_short() -> None:
    n = Names("vsb123-")
    assert n("a") == "vsb123-a"
    with pytest.raises(ValueError):
        n("much-too-long")


def test_vswitch_config_is_the_documented_shape() -> None:
    text = config_toml("vsb1-br", [("vsb1-pa", "vsb1-a", "10.77.0.1/24"),
                                   ("vsb1-pb", "vsb1-b", "10.77.0.2/24")])
    cfg = tomllib.loads(text)
    assert cfg == {"bridge": {"vsb1-br": {"port": {
        "vsb1-pa": {"netns": "vsb1-a", "ip": "10.77.0.1/24"},
        "vsb1-pb": {"netns": "vsb1-b", "ip": "10.77.0.2/24"}}}}}


def test_cleanup_runs_newest_first_and_survives_errors() -> None:
    done: list[str] = []
    cleanup.push("first", lambda: done.append("first"))
    cleanup.push("boom", lambda: 1 / 0)
    t = cleanup.push("released", lambda: done.append("released"))
    cleanup.push("last", lambda: done.append("last"))
    cleanup.release(t)
    cleanup.run_all()
    assert done == ["released", "last", "first"]
