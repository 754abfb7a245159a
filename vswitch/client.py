"""A blocking client of the control socket, for vswitchctl and tests."""
from __future__ import annotations

import itertools
import json
import os
import socket
import struct
from typing import Any, Iterator

from .errors import VswitchError
from .protocol import encode

DEFAULT_SOCK = "/run/vswitch/vswitchd.sock"


def default_sock() -> str:
    return os.environ.get("VSWITCH_SOCK") or DEFAULT_SOCK


class Client:
    def __init__(self, path: str | None = None, timeout: float = 60.0) -> None:
        self.path = path or default_sock()
        self._ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except OSError as e:
            self._sock.close()
            raise VswitchError("ECONNREFUSED", f"cannot connect to {self.path}: "
                               f"{e.strerror or e} (is vswitchd running?)") from None
        self._buf = b""

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, **params: Any) -> Any:
        req_id = next(self._ids)
        self._sock.sendall(encode({"id": req_id, "method": method, "params": params}))
        return self._result()

    def _fill(self) -> None:
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise VswitchError("ECONNRESET", "vswitchd closed the connection")
        self._buf += chunk

    def _result(self) -> Any:
        while b"\n" not in self._buf:
            self._fill()
        line, self._buf = self._buf.split(b"\n", 1)
        msg = json.loads(line)
        if "error" in msg:
            err = msg["error"]
            raise VswitchError(err.get("code", "EIO"), err.get("message", "unknown error"))
        return msg.get("result")

    # --- streams (protocol.py): call() the method, then read its chunks ----------
    def _read_exact(self, n: int) -> bytearray:
        """n bytes, read straight into one buffer (a stream carries
        megabytes a second: no growing and re-slicing of a bytes object)."""
        out = bytearray(n)
        have = min(n, len(self._buf))
        out[:have] = self._buf[:have]
        self._buf = self._buf[have:]
        view = memoryview(out)
        while have < n:
            got = self._sock.recv_into(view[have:])
            if not got:
                raise VswitchError("ECONNRESET", "vswitchd closed the connection")
            have += got
        return out

    def chunks(self) -> Iterator[bytearray]:
        """The stream's chunks as they come; afterwards stream_end() gives
        the closing result."""
        while True:
            (n,) = struct.unpack("!I", self._read_exact(4))
            if n == 0:
                return
            yield self._read_exact(n)

    def settimeout(self, timeout: float | None) -> None:
        """None while reading a stream: a capture may be quiet for hours."""
        self._sock.settimeout(timeout)

    def stream_end(self) -> Any:
        return self._result()

    def stop_stream(self, timeout: float = 5.0) -> None:
        """Ask the server to end the stream: close our writing side."""
        self._sock.settimeout(timeout)
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
