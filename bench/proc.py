"""Running commands, in a namespace or not, and stopping only what we started.

Every process the harness starts is stopped by its own pid (never by name),
and waited for: a switch still draining frames while the next one starts
would spoil both measurements.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

from . import cleanup


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


def in_ns(ns: str | None, argv: Sequence[str]) -> list[str]:
    """argv run inside network namespace ``ns`` (``ip netns exec`` execs the
    command after setns(), so the pid we get is the command's own)."""
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def run(argv: Sequence[str], *, ns: str | None = None, check: bool = True,
        timeout: float = 60.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = in_ns(ns, argv)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from e
    if check and res.returncode != 0:
        raise BenchError(f"failed ({res.returncode}): {' '.join(cmd)}\n"
                         f"{res.stderr.strip() or res.stdout.strip()}")
    return res


def wait_until(pred: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _state(pid: int) -> str | None:
    """Process state letter from /proc/PID/stat, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: the state follows the last ')'.
    return raw[raw.rindex(")") + 2]


def alive(pid: int) -> bool:
    """True while ``pid`` runs; reaps it if it is our (adopted) zombie."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: only /proc can tell
    state = _state(pid)
    return state is not None and state not in ("Z", "X")


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL: for a pid we started."""
    if not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_until(lambda: not alive(pid), timeout, f"pid {pid} to exit", 0.05)
    except BenchError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_until(lambda: not alive(pid), 5.0, f"pid {pid} to die", 0.05)


def stop_popen(p: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL, and reap: for a
    subprocess.Popen we started."""
    if p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def read_pidfile(path: Path, timeout: float = 10.0) -> int:
    def ready() -> bool:
        try:
            return path.read_text().strip().isdigit()
        except FileNotFoundError:
            return False
    wait_until(ready, timeout, f"pidfile {path}")
    return int(path.read_text().strip())


def reap_strays() -> None:
    """Reap zombies re-parented to us (the middle process of a daemon's double
    fork); subprocess.Popen waits for its own children itself."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rindex(")") + 2:].split()
        if rest[0] == "Z" and int(rest[1]) == me and int(entry.name) not in Spawned.live:
            try:
                os.waitpid(int(entry.name), os.WNOHANG)
            except ChildProcessError:
                pass


class Spawned:
    """A background process we started (optionally inside a namespace), with
    its output in a log file; registered for cleanup until stopped."""

    live: set[int] = set()

    def __init__(self, argv: Sequence[str], log: Path, *, ns: str | None = None,
                 env: dict[str, str] | None = None, stdout_pipe: bool = False) -> None:
        self.argv = in_ns(ns, argv)
        self.log = log
        self._logf = open(log, "wb")
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._logf,
            stderr=self._logf, env=env, start_new_session=True)
        self.pid = self.popen.pid
        Spawned.live.add(self.pid)
        self._token = cleanup.push(f"process {self.pid} ({argv[0]})", self.stop)

    def running(self) -> bool:
        return self.popen.poll() is None

    def send_signal(self, sig: int) -> None:
        """Signal the whole process group: ours alone (start_new_session), and
        the only way to reach workers a tool forks (trafgen's parent waits
        for its senders and does not pass SIGINT on)."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int:
        """Wait for a process that is expected to end by itself."""
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"{self.argv[0]} pid {self.pid} did not exit in {timeout:.0f}s") from e
        self._done()
        return rc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Stop by pid and wait; idempotent."""
        if self.popen.poll() is None:
            self.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.popen.wait(5)
        # Workers left behind by a leader that died first go too.
        self.send_signal(signal.SIGKILL)
        self._done()
        return self.popen.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _done(self) -> None:
        Spawned.live.discard(self.pid)
        if not self._logf.closed:
            self._logf.close()
        if self.popen.stdout is not None and not self.popen.stdout.closed:
            self.popen.stdout.close()
        cleanup.forget(self._token)
