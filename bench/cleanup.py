"""One place that remembers what the harness created, so that it is removed on
every way out: normal return, exception, Ctrl-C, SIGTERM, interpreter exit.

Resources register an undo callback when they are created and ``release`` it
when they are torn down normally; whatever is still registered when the
process exits (atexit) is undone last-in, first-out.  try/finally in the suite
is the normal path; this registry is the safety net behind it.
"""
from __future__ import annotations

import atexit
import ctypes
import itertools
import signal
import sys
import traceback
from typing import Callable

_stack: dict[int, tuple[str, Callable[[], object]]] = {}
_ids = itertools.count(1)
_installed = False

# prctl(PR_SET_CHILD_SUBREAPER): daemons that fork into the background
# (vde_switch -d, vswitchd --detach) are re-parented to us instead of to PID 1,
# which on this machine never reaps; we can then wait for them to really exit.
_PR_SET_CHILD_SUBREAPER = 36


def push(label: str, undo: Callable[[], object]) -> int:
    """Remember ``undo`` (idempotent, never raising much) until released."""
    install()
    token = next(_ids)
    _stack[token] = (label, undo)
    return token


def release(token: int) -> None:
    """Run the undo now (normal teardown) and forget it."""
    entry = _stack.pop(token, None)
    if entry is not None:
        _run(*entry)


def forget(token: int) -> None:
    """Forget without running: the owner has already undone it."""
    _stack.pop(token, None)


def run_all() -> None:
    """Undo everything still registered, newest first."""
    # A second Ctrl-C during cleanup would leave half-removed namespaces.
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while _stack:
            token = max(_stack)
            _run(*_stack.pop(token))
    finally:
        signal.signal(signal.SIGINT, old)


def _run(label: str, undo: Callable[[], object]) -> None:
    try:
        undo()
    except Exception:  # cleanup goes on with the next resource
        print(f"cleanup of {label} failed:", file=sys.stderr)
        traceback.print_exc()


def _on_sigterm(signum: int, frame: object) -> None:
    # Turn SIGTERM into an exception so that every finally block runs.
    raise SystemExit(128 + signum)


def install() -> None:
    """Hook atexit and SIGTERM/SIGHUP once; become a child subreaper."""
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(run_all)
    # A shell starts background jobs with SIGINT ignored, and Python keeps an
    # inherited SIG_IGN: make Ctrl-C / kill -INT always mean "stop cleanly".
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # only reaping gets worse: exit detection falls back to /proc
