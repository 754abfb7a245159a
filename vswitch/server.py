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
from typing import Any, Awaitable, Callable

from . import protocol
from .api import MUTATING, Params, dispatch
from .errors import VswitchError
from .switch import Switch

# A streaming method (protocol.py): it answers and streams on the connection
# itself; VswitchError before its first reply is an ordinary error.
StreamHandler = Callable[[Any, Params, asyncio.StreamReader, asyncio.StreamWriter],
                         Awaitable[None]]

log = logging.getLogger(__name__)


class ControlServer:
    def __init__(self, switch: Switch, path: Path,
                 streams: dict[str, StreamHandler] | None = None,
                 on_change: list[Callable[[], None]] | None = None) -> None:
        self.switch = switch
        self.path = path
        self.streams = streams or {}
        self.on_change = on_change or []    # after every configuration change
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path.unlink(missing_ok=True)  # stale: we hold the daemon lock
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve_client, path=str(self.path), limit=protocol.MAX_REQUEST + 1)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

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
                req = self._parse(line)
                if isinstance(req, dict) and req.get("method") in self.streams:
                    if await self._stream(req, reader, writer):
                        return      # a stream ends its connection
                    continue
                writer.write(req if isinstance(req, bytes) else self._handle(req))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()

    @staticmethod
    def _parse(line: bytes) -> dict[str, Any] | bytes:
        """The request, or the error reply to send instead."""
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return protocol.error(None, "EINVAL", "request is not valid JSON")
        if not isinstance(req, dict):
            return protocol.error(None, "EINVAL", "request must be a JSON object")
        return req

    async def _stream(self, req: dict[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        """Serve a streaming request: True when its stream ran; False when
        it failed before the stream began (the error is written, and the
        connection goes on as JSON lines)."""
        method, req_id = req["method"], req.get("id")
        try:
            await self.streams[method](req_id, Params(method, req.get("params")), reader, writer)
        except VswitchError as e:
            writer.write(protocol.error(req_id, e.code, e.message))
            await writer.drain()
            return False
        return True

    def _handle(self, req: dict[str, Any]) -> bytes:
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
            for hook in self.on_change:
                try:
                    hook()
                except Exception:
                    log.exception("after %s", method)
        return protocol.reply(req_id, result)
