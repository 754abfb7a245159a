"""A minimal HTTP/1.1 server over a UNIX socket, in the daemon's own loop.

Docker's plugin client speaks plain HTTP/1.1 (POST, a JSON body with a
Content-Length, keep-alive) to a socket under /run/docker/plugins; that is
all this server needs to understand, and all it accepts.  Like the control
server, handlers are synchronous and run to completion one at a time, so a
plugin call and a vswitchctl request never interleave.

Everything read from the socket is untrusted: the request line and headers
are bounded (MAX_HEAD), the body too (MAX_BODY), a malformed request gets a
4xx answer and the connection is closed, and a handler's exception becomes
a 500 answer, never a dead server.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import VswitchError
from ..server import listen_private

log = logging.getLogger(__name__)
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 413: "Payload Too Large", 500: "Internal Server Error",
           501: "Not Implemented"}


@dataclass
class Response:
    status: int
    body: Any


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[[str, bytes], Response]


def encode_response(resp: Response, keep_alive: bool) -> bytes:
    body = json.dumps(resp.body).encode()
    head = (f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Error')}\r\n"
            f"Content-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
    return head.encode() + body


class UnixHttpServer:
    """Serves handler(path, body) -> Response for POST requests."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task] = set()

    async def start(self) -> None:
        # The plugin directory is Docker's (/run/docker/plugins, 0755); the
        # socket itself is root's alone, as the control socket is.
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if self.path.exists():
            # Another vswitchd (with its own control socket) may serve this
            # plugin name: never take it over.  A stale socket refuses.
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.path))
                raise VswitchError("EBUSY", f"another process serves {self.path}")
            except OSError:
                pass
            finally:
                probe.close()
            self.path.unlink(missing_ok=True)
        self._server = await listen_private(self.path, self._serve_client, MAX_HEAD)

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
                    method, target, headers, body = await self._read_request(reader)
                except asyncio.IncompleteReadError:
                    return        # the client closed between requests
                except HttpError as e:
                    writer.write(encode_response(Response(e.status, {"Err": e.message}),
                                                 keep_alive=False))
                    await writer.drain()
                    return
                keep = headers.get("connection", "").lower() != "close"
                writer.write(encode_response(self._dispatch(method, target, body), keep))
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()

    def _dispatch(self, method: str, target: str, body: bytes) -> Response:
        if method != "POST":
            return Response(405, {"Err": f"method {method} not allowed: plugin calls are POST"})
        try:
            return self.handler(target, body)
        except Exception as e:   # a bug: answer it, keep serving
            log.exception("plugin call %s failed", target)
            return Response(500, {"Err": f"internal error in {target}: {e}"})

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader
                            ) -> tuple[str, str, dict[str, str], bytes]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError(400, f"request head longer than {MAX_HEAD} bytes") from None
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                raise HttpError(400, "incomplete request") from None
            raise
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
        except ValueError:
            raise HttpError(400, "malformed request line") from None
        if not version.startswith("HTTP/1."):
            raise HttpError(400, f"unsupported protocol {version!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpError(400, "malformed header line")
            headers[name.lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await UnixHttpServer._read_chunked(reader)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise HttpError(400, "malformed Content-Length") from None
            if length < 0:
                raise HttpError(400, "malformed Content-Length")
            if length > MAX_BODY:
                raise HttpError(413, f"request body longer than {MAX_BODY} bytes")
            body = await reader.readexactly(length)
        elif "transfer-encoding" in headers:
            raise HttpError(501, "unsupported Transfer-Encoding")
        else:
            body = b""
        return method, target, headers, body

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        body = b""
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "malformed chunk size") from None
            if size < 0 or len(body) + size > MAX_BODY:
                raise HttpError(413, f"request body longer than {MAX_BODY} bytes")
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass          # trailers: ignored
                return body
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise HttpError(400, "malformed chunk")
