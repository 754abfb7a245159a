"""vswitchd: the switch daemon.

Start-up order, and why:
  1. take an exclusive lock next to the socket and one next to the
     database: a second daemon on the same socket or the same database
     refuses to start (naming the holder), while a stale socket or pidfile
     left by a crash (nobody holds the lock) is simply replaced;
  2. read and validate the configuration (file or database) while still
     attached to the terminal, so `FILE:LINE: what is wrong` reaches the
     user and nothing has been touched (a damaged database is kept aside,
     never overwritten silently);
  3. detach if asked (the parent waits until the switch is ready, so
     `vswitchd --detach && ip netns exec h1 ping ...` works);
  4. start the engine, build every bridge and port, open the control
     socket, write the pidfile, report ready.
SIGTERM and SIGINT stop cleanly: the socket closes, every TAP goes with its
fd, and the namespaces the switch created are removed.
"""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Callable

from . import __version__
from .client import default_sock
from .config import SwitchConfig
from .config_file import ConfigFileError, load_config_file
from .datapath import Datapath
from .errors import VswitchError
from .capture import CaptureManager
from .monitor import LinkMonitor
from .netns import NamespaceRegistry
from .server import ControlServer
from .store import keep_aside, write_atomic
from .switch import DamagedDatabase, Switch

log = logging.getLogger("vswitchd")
DEFAULT_DB = "/var/lib/vswitch/conf.json"
DEFAULT_LOG_FILE = "/var/log/vswitch/vswitchd.log"
# The cap of the adaptive polling window (csrc/datapath.c, poll_window):
# traffic whose bursts come less than 200 us apart on average is polled for
# instead of waited for; anything sparser never makes the thread spin.
# What it buys on the 2-core benchmark machine is in the README
# ("Performance": vswitch against vswitch-nopoll).
DEFAULT_BUSY_POLL_US = 200


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="vswitchd", description="vswitch daemon")
    ap.add_argument("--config", metavar="FILE",
                    help="TOML file that replaces the stored configuration at start")
    ap.add_argument("--db", default=DEFAULT_DB, metavar="PATH",
                    help=f"configuration database (default {DEFAULT_DB})")
    ap.add_argument("--sock", default=None, metavar="PATH",
                    help="control socket (default $VSWITCH_SOCK or /run/vswitch/vswitchd.sock)")
    ap.add_argument("--detach", action="store_true", help="run in the background")
    ap.add_argument("--pidfile", metavar="PATH", help="write the daemon's pid here")
    ap.add_argument("--busy-poll-us", type=int, default=DEFAULT_BUSY_POLL_US, metavar="USEC",
                    help="cap of the adaptive polling window after a burst "
                         f"(default {DEFAULT_BUSY_POLL_US}; 0: never poll)")
    ap.add_argument("--log-level", default="info",
                    choices=["debug", "info", "warning", "error"])
    ap.add_argument("--log-file", metavar="PATH",
                    help=f"log here (default: stderr, or {DEFAULT_LOG_FILE} with --detach)")
    ap.add_argument("--version", action="version", version=f"vswitchd {__version__}")
    return ap.parse_args(argv)


def setup_logging(level: str, log_file: str | None) -> None:
    handler: logging.Handler
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("pyroute2").setLevel(logging.WARNING)


def take_lock(sock: Path) -> int:
    """Exclusive lock held for the daemon's life; exits if another holds it."""
    sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(f"{sock}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise VswitchError("EBUSY", f"another vswitchd is already running on {sock}") from None
    return fd


def take_db_lock(db: Path) -> int:
    """The database is one daemon's: it attaches the interfaces the database
    names and removes the namespaces the database says it created, so a
    second daemon on the same database (with another socket) would fight
    the first over all of them.  The lock file says who holds it
    (record_lock_holder), so the refusal can name the holder."""
    db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = f"{db}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode(errors="replace").strip() or "another vswitchd"
        os.close(fd)
        raise VswitchError("EBUSY", f"database {db} is in use by {holder}") from None
    return fd


def record_lock_holder(fd: int, sock: Path) -> None:
    """Write this (final, detached) process into the database lock file."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"vswitchd pid {os.getpid()} (socket {sock})\n".encode(), 0)


def daemonize() -> Callable[[str | None], None]:
    """Fork into the background.  Returns report(error) for the daemon to call
    once: None when ready, else a message; the original process prints the
    message and exits with the matching status."""
    rfd, wfd = os.pipe()
    if os.fork() > 0:
        os.close(wfd)
        msg = b""
        while chunk := os.read(rfd, 4096):
            msg += chunk
        if msg == b"ok":
            os._exit(0)
        sys.stderr.write(msg.decode() or "vswitchd: daemon exited during start-up\n")
        os._exit(1)
    os.close(rfd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.chdir("/")

    def report(error: str | None) -> None:
        os.write(wfd, b"ok" if error is None else f"vswitchd: {error}\n".encode())
        os.close(wfd)
    return report


def load_startup_config(args: argparse.Namespace, db: Path) -> tuple[SwitchConfig, str]:
    """The configuration to start from, and the switch's system id.

    A damaged database is never overwritten silently: without --config the
    daemon refuses to start and leaves it as it is; with --config (which
    replaces the stored configuration anyway) it is first kept aside under
    another name, and the user is told where."""
    if args.config:
        cfg = load_config_file(args.config)
        system_id = Switch.read_system_id(db)
        try:
            Switch.read_db(db)
        except DamagedDatabase as e:
            kept = keep_aside(db)
            print(f"vswitchd: {e.message}; kept it as {kept}, starting from {args.config}",
                  file=sys.stderr)
        return cfg, system_id
    try:
        cfg = Switch.read_db(db) or SwitchConfig()
    except DamagedDatabase as e:
        raise VswitchError(e.code, f"{e.message}; it was left untouched (repair it, move "
                                   "it away to start empty, or start with --config FILE)"
                           ) from None
    return cfg, Switch.read_system_id(db)


async def serve(cfg: SwitchConfig, system_id: str, db: Path, sock: Path,
                pidfile: Path | None, report: Callable[[str | None], None],
                busy_poll_us: int, config_file: Path | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    dp = Datapath()
    namespaces = NamespaceRegistry(db.with_name(db.stem + ".netns.json"))
    sw = Switch(dp, db, namespaces, loop, system_id)
    sw.config_file = config_file
    loop.add_signal_handler(signal.SIGHUP, _reload_on_hup, sw)
    capture = CaptureManager(sw)
    server = ControlServer(sw, sock, streams={"capture": capture.stream},
                           on_change=[capture.reconcile])
    # Subscribed before any port exists, so no link event is missed.
    monitor = LinkMonitor(sw.on_link_event)
    try:
        dp.set_busy_poll(busy_poll_us)
        dp.start()
        sw.start(cfg)
        monitor.attach(loop)
        sw.upcalls.attach(loop)
        await server.start()
        loop.add_reader(dp.notify_fd(), _drain_notify, dp.notify_fd())
        if pidfile:
            write_atomic(pidfile, f"{os.getpid()}\n".encode())
    except BaseException as e:
        sw.upcalls.detach()
        sw.stop()
        await server.close()
        report(e.message if isinstance(e, VswitchError) else str(e))
        raise
    log.info("vswitchd %s ready on %s (pid %d)", __version__, sock, os.getpid())
    report(None)
    await stop.wait()
    log.info("stopping")
    monitor.close(loop)
    await server.close()
    sw.upcalls.detach()
    sw.stop()
    if pidfile:
        pidfile.unlink(missing_ok=True)
    log.info("stopped")


def _reload_on_hup(sw: Switch) -> None:
    try:
        sw.reload(None)
    except VswitchError as e:
        log.error("reload on SIGHUP failed, nothing changed: %s", e.message)


def _drain_notify(fd: int) -> None:
    try:
        os.read(fd, 8)
    except BlockingIOError:
        return
    log.warning("an interface failed (device gone); see `vswitchctl show`")


def _report_to_stderr(error: str | None) -> None:
    if error:
        print(f"vswitchd: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 <= args.busy_poll_us <= 1_000_000:
        print("vswitchd: --busy-poll-us must be between 0 and 1000000", file=sys.stderr)
        return 1
    db = Path(args.db)
    sock = Path(args.sock or default_sock())
    pidfile = Path(args.pidfile) if args.pidfile else None
    lock_fds: list[int] = []
    try:
        # Locks first: only the daemon that holds the database may move a
        # damaged one aside.
        lock_fds.append(take_lock(sock))
        lock_fds.append(take_db_lock(db))
        cfg, system_id = load_startup_config(args, db)
    except ConfigFileError as e:
        print(f"vswitchd: {e}", file=sys.stderr)
        return _close_all(lock_fds, 1)
    except VswitchError as e:
        print(f"vswitchd: {e.message}", file=sys.stderr)
        return _close_all(lock_fds, 1)

    report: Callable[[str | None], None] = _report_to_stderr
    if args.detach:
        report = daemonize()
    record_lock_holder(lock_fds[1], sock)
    setup_logging(args.log_level, args.log_file or (DEFAULT_LOG_FILE if args.detach else None))
    try:
        import uvloop
        config_file = Path(args.config).resolve() if args.config else None
        uvloop.run(serve(cfg, system_id, db, sock, pidfile, report, args.busy_poll_us,
                         config_file))
    except VswitchError:
        return 1
    except Exception:
        log.exception("vswitchd failed")
        return 1
    finally:
        _close_all(lock_fds, 0)
    return 0


def _close_all(fds: list[int], status: int) -> int:
    for fd in fds:
        os.close(fd)
    return status


if __name__ == "__main__":
    sys.exit(main())
