"""The switches under test, by the name used on the command line."""
from __future__ import annotations

from .bareloop import Bareloop
from .base import Switch
from .linux_bridge import LinuxBridge
from .ovs import Ovs, OvsTso
from .vde import Vde, VdePlug
from .vswitch import Vswitch, VswitchNetflow, VswitchNoPoll

SWITCHES: dict[str, type[Switch]] = {
    cls.name: cls for cls in (Vswitch, VswitchNoPoll, VswitchNetflow, LinuxBridge, Ovs, OvsTso, Vde, VdePlug, Bareloop)
}

__all__ = ["SWITCHES", "Switch"]
