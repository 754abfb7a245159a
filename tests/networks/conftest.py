"""Fixtures of the network tests: a private host namespace with an outside
machine, vswitchd running in it, background servers stopped by pid."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from ..hostns import Host, HostDaemon, Servers, make_host, remove_host, root_state


@pytest.fixture(autouse=True)
def _root_namespace_untouched() -> Iterator[None]:
    before = root_state()
    yield
    assert root_state() == before, "the machine's own ruleset or ip_forward changed"


@pytest.fixture
def host() -> Iterator[Host]:
    h = make_host()
    yield h
    remove_host(h)


@pytest.fixture
def hd(tmp_path: Path, host: Host) -> Iterator[HostDaemon]:
    d = HostDaemon(tmp_path, host)
    yield d
    d.stop()


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    yield s
    s.stop()
