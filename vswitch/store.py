"""Durable files: write to a temporary file, fsync, rename, fsync the
directory.  A crash at any point leaves either the old or the new content,
never a torn file, and a change acknowledged to a client is on disk.

A file that is there but cannot be read as JSON (truncated by a full disk,
emptied, edited by hand) is *damaged*: read_json says so with the file and
line, and nothing here ever overwrites one silently -- callers either stop
with that message or move the file aside first (keep_aside) and say where.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class DamagedFile(ValueError):
    """A file that exists but is not the JSON it should be."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any | None:
    """The file's value, or None when it does not exist; DamagedFile when it
    exists but is not JSON."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if not raw.strip():
        raise DamagedFile(path, 0, "the file is empty")
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DamagedFile(path, line, f"not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DamagedFile(path, e.lineno, f"not valid JSON ({e.msg}, column {e.colno})"
                          ) from None


def keep_aside(path: Path) -> Path:
    """Rename a damaged file out of the way (never delete it); returns the
    new name, PATH.damaged-YYYYmmddTHHMMSS[-N]."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.rename(path, target)
    return target
