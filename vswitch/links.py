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
import errno
import functools
import ipaddress
import signal
import subprocess
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
    loopback: bool = False


IFF_UP = 0x1
IFF_LOOPBACK = 0x8


def _info(msg) -> LinkInfo:
    return LinkInfo(index=msg["index"], name=msg.get("ifname"), mtu=msg.get("mtu") or 1500,
                    mac=msg.get("address") or "", up=bool(msg["flags"] & IFF_UP),
                    carrier=bool(msg.get("carrier")),
                    loopback=bool(msg["flags"] & IFF_LOOPBACK))


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


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    """One kernel request, whose refusal names what was asked for."""
    try:
        yield
    except NetlinkError as e:
        raise VswitchError.from_errno(e.code, what) from None


def enable_ipv6(ifname: str, netns: str | None) -> None:
    """net.ipv6.conf.IFNAME.disable_ipv6=0 in the namespace (a sysctl of
    that namespace: written by a helper that enters it)."""
    knob = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    if netns is None:
        argv = ["sh", "-c", f"[ ! -e {knob} ] || echo 0 > {knob}"]
    else:
        from .netns import netns_file
        argv = ["nsenter", f"--net={netns_file(netns)}", "--", "sh", "-c",
                f"[ ! -e {knob} ] || [ $(cat {knob}) = 0 ] || echo 0 > {knob}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise VswitchError("EIO", f"turn IPv6 on for {ifname}: {r.stderr.strip()}")


@netlink_call
def configure_link(name: str, netns: str | None, *, new_name: str | None = None,
                   mac: str | None = None, mtu: int | None = None,
                   ips: tuple[str, ...] = (), up: bool = True) -> LinkInfo:
    """Rename, address and bring up an interface; returns its final state.
    Each step is its own request, so a refusal says which setting the
    kernel refused (and names the device by its final name, not the
    temporary one it was created under)."""
    final = new_name or name
    with _ipr(netns, f"configure {final}") as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise VswitchError("ENODEV", f"no interface {final}")
        index = idx[0]
        if new_name and new_name != name:
            with _step(f"rename the interface to {new_name}"):
                ipr.link("set", index=index, ifname=new_name)
        if mac:
            with _step(f"set mac {mac}"):
                ipr.link("set", index=index, address=mac)
        if mtu:
            with _step(f"set mtu {mtu}"):
                ipr.link("set", index=index, mtu=mtu)
        for cidr in ips:
            addr, _, plen = cidr.partition("/")
            if ":" in addr and netns is not None and netns.startswith("/"):
                # A container runtime's namespace (given by path) may have
                # IPv6 off for new interfaces (Docker's default.disable_ipv6
                # =1) and turn it on per interface: the kernel refuses an IPv6
                # address (EACCES) until it is on for this one, so do as the
                # runtime did.  A namespace of the user's own (a name) keeps
                # its setting: there an IPv6 address is refused.
                enable_ipv6(final, netns)
            with _step(f"add ip {cidr}"):
                ipr.addr("add", index=index, address=addr, prefixlen=int(plen))
        if up:
            with _step("bring the interface up"):
                ipr.link("set", index=index, state="up")
        return _info(ipr.get_links(index)[0])


@netlink_call
def change_addresses(name: str, netns: str | None, old: tuple[str, ...],
                     new: tuple[str, ...]) -> None:
    """Replace an interface's addresses `old` (CIDR strings) by `new`.

    Removing an IPv4 primary address also removes the secondaries of its
    subnet (unless promote_secondaries is on), so after the removals every
    address of `new` that is missing -- added now or taken away with a
    primary -- is added; one already gone is no error."""
    with _ipr(netns, f"change addresses of {name}") as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise VswitchError("ENODEV", f"no interface {name}")
        for cidr in reversed([c for c in old if c not in new]):
            addr, _, plen = cidr.partition("/")
            try:
                ipr.addr("del", index=idx[0], address=addr, prefixlen=int(plen))
            except NetlinkError as e:
                if e.code != errno.EADDRNOTAVAIL:
                    raise VswitchError.from_errno(e.code, f"remove ip {cidr}") from None
        present = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                   for a in ipr.get_addr(index=idx[0])}
        for cidr in new:
            if str(ipaddress.ip_interface(cidr)) in present:
                continue
            addr, _, plen = cidr.partition("/")
            with _step(f"add ip {cidr}"):
                ipr.addr("add", index=idx[0], address=addr, prefixlen=int(plen))


@netlink_call
def set_up(name: str, netns: str | None = None) -> None:
    set_state(name, True, netns)


@netlink_call
def set_state(name: str, up: bool, netns: str | None = None) -> None:
    """Bring an interface administratively up or down."""
    word = "up" if up else "down"
    with _ipr(netns, f"bring {name} {word}") as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise VswitchError("ENODEV", f"no interface {name}")
        ipr.link("set", index=idx[0], state=word)


@netlink_call
def admin_up(index: int, netns: str | None = None) -> bool | None:
    """Whether the interface with this ifindex is administratively up;
    None when there is no such interface (or no such namespace)."""
    try:
        with _ipr(netns, "look up a link") as ipr:
            msgs = ipr.get_links(index)
    except VswitchError:
        return None
    return bool(msgs[0]["flags"] & IFF_UP) if msgs else None


@netlink_call
def set_loopback_up(netns: str) -> None:
    set_up("lo", netns)
