"""The control server: JSON lines over a UNIX socket, one asyncio task per
client.

Handlers are synchronous and never await, so each request runs to the end
before the next one starts: requests are serialised without a lock, and a
client that sends half a line and stalls holds up nobody (its task just
waits for the rest).  The socket is created with mode 0600 (umask around
bind, so there is no window where it is wider) in a directory of mode 0700.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Awaitable, Callable

from . import protocol
from .api import MUTATING, dispatch
from .errors import VswitchError
from .switch import Switch

log = logging.getLogger(__name__)


async def listen_private(path: Path, serve: Callable[[asyncio.StreamReader,
                                                     asyncio.StreamWriter], Awaitable[None]],
                         limit: int) -> asyncio.AbstractServer:
    """A UNIX socket only root can use: created under umask 0177, so there
    is no moment when it is wider than 0600."""
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(serve, path=str(path), limit=limit)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


class ControlServer:
    def __init__(self, switch: Switch, path: Path) -> None:
        self.switch = switch
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path.unlink(missing_ok=True)  # stale: we hold the daemon lock
        self._server = await listen_private(self.path, self._serve_client,
                                            protocol.MAX_REQUEST + 1)

    async def close(self) -> None:
        if self._server:
            self._server.close()
        for t in list(self._clients):
            t.cancel()
        self.path.unlink(missing_ok=True)

    async def _serve_client(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    # No way to find the next request's start: answer and hang up.
                    writer.write(protocol.error(None, "E2BIG", "request longer than "
                                                f"{protocol.MAX_REQUEST} bytes"))
                    await writer.drain()
                    return
                writer.write(self._handle(line))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()

    def _handle(self, line: bytes) -> bytes:
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return protocol.error(None, "EINVAL", "request is not valid JSON")
        if not isinstance(req, dict):
            return protocol.error(None, "EINVAL", "request must be a JSON object")
        req_id = req.get("id")
        method = req.get("method")
        try:
            result = dispatch(self.switch, method, req.get("params"))
        except VswitchError as e:
            if method in MUTATING:
                log.info("%s failed: %s", method, e.message)
            return protocol.error(req_id, e.code, e.message)
        except Exception as e:  # a bug: report it, keep serving everyone else
            log.exception("internal error in %s", method)
            return protocol.error(req_id, "EIO", f"internal error: {e}")
        if method in MUTATING:
            log.info("%s %s: ok", method, json.dumps(req.get("params"), sort_keys=True))
        return protocol.reply(req_id, result)
