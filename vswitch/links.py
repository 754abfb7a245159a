"""Netlink work on links and addresses, through pyroute2.

Every function takes the namespace to act in (None: the daemon's own) and
raises VswitchError carrying the kernel's errno.  Nothing here runs `ip`.

pyroute2 (0.9) drives its sockets with an asyncio loop of its own, which
cannot run inside the daemon's running loop.  So every call here is made on
one dedicated thread (`netlink_call`) and waited for: the control plane
stays synchronous and serial, as the server expects, and pyroute2 gets a
thread with no loop running.
"""
from __future__ import annotations

import contextlib
import functools
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .errors import VswitchError

T = TypeVar("T")
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
_local = threading.local()
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def netlink_call(fn: Callable[..., T]) -> Callable[..., T]:
    """Run fn on the netlink thread (directly when already there)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        if getattr(_local, "on_netlink_thread", False):
            return fn(*args, **kwargs)
        return _executor.submit(_on_thread, fn, args, kwargs).result()
    return wrapper


def _on_thread(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    if not getattr(_local, "on_netlink_thread", False):
        # pyroute2 forks helper processes from this thread and stops them
        # with SIGTERM.  A child inherits the daemon's signal wake-up fd, so
        # a SIGTERM it handled would reach the daemon's loop as if the
        # daemon had been told to stop.  Children inherit this thread's
        # signal mask: with the stop signals blocked here they never handle
        # one (they exit on their own once done).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        _local.on_netlink_thread = True
    return fn(*args, **kwargs)


@contextlib.contextmanager
def _ipr(netns: str | None, what: str) -> Iterator[IPRoute]:
    try:
        # flags=0: never create a namespace here (pyroute2 would, by default,
        # for a name or path that does not exist); the registry creates ours.
        ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
    except (OSError, NetlinkError) as e:
        code = getattr(e, "code", None) or getattr(e, "errno", None) or 5
        raise VswitchError.from_errno(code, f"{what}: open netlink in {netns or 'daemon'} "
                                            "namespace") from None
    try:
        yield ipr
    except NetlinkError as e:
        raise VswitchError.from_errno(e.code, what) from None
    finally:
        ipr.close()


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    mtu: int
    mac: str
    up: bool
    carrier: bool


def _info(msg) -> LinkInfo:
    return LinkInfo(index=msg["index"], name=msg.get("ifname"), mtu=msg.get("mtu") or 1500,
                    mac=msg.get("address") or "", up=bool(msg["flags"] & 1),
                    carrier=bool(msg.get("carrier")))


@netlink_call
def get_link(name: str, netns: str | None = None) -> LinkInfo | None:
    with _ipr(netns, f"look up {name}") as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return None
        return _info(ipr.get_links(idx[0])[0])


@netlink_call
def move_to_netns(name: str, netns: str) -> None:
    with _ipr(None, f"move {name} to namespace {netns}") as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise VswitchError("ENODEV", f"no interface {name}")
        ipr.link("set", index=idx[0], net_ns_fd=netns)


@netlink_call
def configure_link(name: str, netns: str | None, *, new_name: str | None = None,
                   mac: str | None = None, mtu: int | None = None,
                   ips: tuple[str, ...] = (), up: bool = True) -> LinkInfo:
    """Rename, address and bring up an interface; returns its final state."""
    with _ipr(netns, f"configure {name}") as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise VswitchError("ENODEV", f"no interface {name}")
        index = idx[0]
        changes: dict = {}
        if new_name and new_name != name:
            changes["ifname"] = new_name
        if mac:
            changes["address"] = mac
        if mtu:
            changes["mtu"] = mtu
        if changes:
            ipr.link("set", index=index, **changes)
        for cidr in ips:
            addr, _, plen = cidr.partition("/")
            ipr.addr("add", index=index, address=addr, prefixlen=int(plen))
        if up:
            ipr.link("set", index=index, state="up")
        return _info(ipr.get_links(index)[0])


@netlink_call
def change_addresses(name: str, netns: str | None, add: tuple[str, ...],
                     remove: tuple[str, ...]) -> None:
    """Add and remove addresses (CIDR strings) of an interface."""
    with _ipr(netns, f"change addresses of {name}") as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise VswitchError("ENODEV", f"no interface {name}")
        for cidr in remove:
            addr, _, plen = cidr.partition("/")
            ipr.addr("del", index=idx[0], address=addr, prefixlen=int(plen))
        for cidr in add:
            addr, _, plen = cidr.partition("/")
            ipr.addr("add", index=idx[0], address=addr, prefixlen=int(plen))


@netlink_call
def set_up(name: str, netns: str | None = None) -> None:
    with _ipr(netns, f"bring up {name}") as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise VswitchError("ENODEV", f"no interface {name}")
        ipr.link("set", index=idx[0], state="up")


@netlink_call
def set_loopback_up(netns: str) -> None:
    set_up("lo", netns)
