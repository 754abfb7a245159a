"""Turning a port's configuration into a device and a file descriptor.

tap       a TAP created in the daemon's namespace under a temporary name,
          moved into --netns (created on demand), renamed to --ifname
          (eth0), addressed and brought up there.  Without --netns it
          stays in the daemon's namespace under the port's name.
internal  a TAP left in the daemon's namespace under the port's name (a
          gateway address for the namespaces, like docker0's).
system    an existing interface in the daemon's namespace, attached over
          AF_PACKET.

create() either returns a ready Attachment or raises having undone
everything it did: the TAP goes with its fd, and a namespace it created
is removed again.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass

from . import links
from .afpacket import open_packet_socket
from .config import PortConfig
from .datapath import IFACE_FD, IFACE_PACKET, NO_OFFLOAD, VNET_HDR
from .errors import VswitchError
from .netns import NamespaceRegistry, is_path, netns_exists
from .tap import open_tap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attachment:
    fd: int
    kind: int
    flags: int
    mtu: int
    device: str           # interface name where it lives
    netns: str | None     # None: the daemon's namespace
    mac: str
    index: int = 0        # ifindex at attach time: a re-created device has another
    # A system interface that was administratively down when attached: the
    # switch brought it up, and takes it down again when it lets go of it.
    was_down: bool = False


def _temp_tap_name() -> str:
    return "vst" + secrets.token_hex(4)


def derived_mac(system_id: str, port: str) -> str:
    """A locally administered unicast MAC, stable for (switch, port)."""
    digest = hashlib.sha256(f"{system_id}/{port}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


class PortFactory:
    def __init__(self, namespaces: NamespaceRegistry, system_id: str) -> None:
        self.namespaces = namespaces
        self.system_id = system_id

    def _mac(self, cfg: PortConfig) -> str:
        return cfg.mac or derived_mac(self.system_id, cfg.name)

    def create(self, cfg: PortConfig) -> Attachment:
        """The port's device, or VswitchError naming the port (and the
        setting the kernel refused)."""
        try:
            if cfg.type == "system":
                return self._system(cfg)
            if cfg.type == "tap" and cfg.netns:
                return self._tap_in_netns(cfg)
            return self._local_tap(cfg)
        except VswitchError as e:
            raise VswitchError(e.code, f"port {cfg.name}: {e.message}") from None

    # --- tap / internal -------------------------------------------------------
    def _tap_in_netns(self, cfg: PortConfig) -> Attachment:
        assert cfg.netns
        ifname = cfg.device_name
        # A namespace given by path (a container's) must be the very one the
        # port was made in: checked first, so nothing is looked up in another.
        first_use = is_path(cfg.netns) and not self.namespaces.knows(cfg.netns)
        if is_path(cfg.netns):
            self.namespaces.ensure(cfg.netns)
        try:
            if netns_exists(cfg.netns) and links.get_link(ifname, cfg.netns):
                raise VswitchError("EEXIST", f"namespace {cfg.netns} already has an "
                                             f"interface {ifname}")
        except BaseException:
            if first_use:
                self.namespaces.release(cfg.netns)
            raise
        created = self.namespaces.ensure(cfg.netns)
        fd = -1
        try:
            if created and links.get_link(ifname, cfg.netns):
                raise VswitchError("EEXIST", f"namespace {cfg.netns} already has an "
                                             f"interface {ifname}")
            tmp = _temp_tap_name()
            fd = open_tap(tmp, offloads=cfg.offload is not False)
            links.move_to_netns(tmp, cfg.netns)
            info = links.configure_link(tmp, cfg.netns, new_name=ifname, mac=self._mac(cfg),
                                        mtu=cfg.mtu, ips=cfg.ip)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            if created or first_use:
                self.namespaces.release(cfg.netns)
            raise
        return Attachment(fd, IFACE_FD, self._tap_flags(cfg), info.mtu, ifname, cfg.netns,
                          info.mac, info.index)

    @staticmethod
    def _tap_flags(cfg: PortConfig) -> int:
        # offload = false: the namespace segments and checksums itself
        # (TUNSETOFFLOAD 0), and the engine sends it nothing it would not.
        return VNET_HDR if cfg.offload is not False else VNET_HDR | NO_OFFLOAD

    def _local_tap(self, cfg: PortConfig) -> Attachment:
        name = cfg.device_name
        # TUNSETIFF on the name of an existing persistent TAP would quietly
        # attach to it: refuse any existing device instead.
        if links.get_link(name):
            raise VswitchError("EEXIST", f"an interface named {name} already exists in "
                                         "the daemon's namespace")
        fd = open_tap(name, offloads=cfg.offload is not False)
        try:
            info = links.configure_link(name, None, mac=self._mac(cfg), mtu=cfg.mtu,
                                        ips=cfg.ip)
        except BaseException:
            os.close(fd)
            raise
        return Attachment(fd, IFACE_FD, self._tap_flags(cfg), info.mtu, name, None, info.mac,
                          info.index)

    # --- system -----------------------------------------------------------------
    def _system(self, cfg: PortConfig) -> Attachment:
        info = links.get_link(cfg.name)
        if info is None:
            raise VswitchError("ENODEV", f"no interface {cfg.name} in the daemon's namespace")
        if info.loopback:
            raise VswitchError("EINVAL", f"{cfg.name} is a loopback interface; it cannot be "
                                         "a switch port")
        fd, vnet = open_packet_socket(cfg.name, info.index, vnet=cfg.offload is not False)
        try:
            if not info.up:
                links.set_up(cfg.name)
        except BaseException:
            os.close(fd)
            raise
        return Attachment(fd, IFACE_PACKET, VNET_HDR if vnet else 0, info.mtu, cfg.name, None,
                          info.mac, info.index, was_down=not info.up)

    @staticmethod
    def release(att: Attachment) -> None:
        """After the engine closed the device's fd: put back what the switch
        changed on a device it does not own (a system interface it brought
        up goes down again, if it is still the same device)."""
        if not att.was_down:
            return
        info = links.get_link(att.device)
        if info is not None and info.index == att.index and info.up:
            try:
                links.set_state(att.device, False)
            except VswitchError as e:
                log.warning("cannot take %s down again: %s", att.device, e.message)
