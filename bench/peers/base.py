"""What every switch under test offers the suite."""
from __future__ import annotations

import abc
from pathlib import Path

from ..topology import Names


class Switch(abc.ABC):
    """One switch under test.

    ``start`` connects namespaces ``ns_a`` and ``ns_b`` (already created) and
    leaves exactly one interface named ``eth0`` in each; ``stop`` undoes
    everything ``start`` did, also after a partial start, and is idempotent.
    ``pids`` lists the processes that forward frames, whose CPU is the
    switch's cost (empty for an in-kernel switch).
    """

    #: name on the command line and in the report
    name: str = ""
    #: False for a kernel switch: there is no process whose CPU is its cost
    has_process: bool = True

    def __init__(self, names: Names, workdir: Path) -> None:
        self.names = names
        self.workdir = workdir

    @abc.abstractmethod
    def start(self, ns_a: str, ns_b: str) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def pids(self) -> list[int]: ...

    def version(self) -> str:
        """Version string for the report."""
        return ""

    def describe(self) -> str:
        """One line for the report: how this switch is set up."""
        return ""
