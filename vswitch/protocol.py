"""The control protocol's framing: one JSON object per line, each way.

Request  {"id": N, "method": "add-port", "params": {...}}
Reply    {"id": N, "result": ...} or {"id": N, "error": {"code", "message"}}
A request line may be at most MAX_REQUEST bytes.

Streaming methods (capture) answer a valid request with
    {"id": N, "result": {"stream": "pcap", ...}}
after which the connection carries chunks, each a 4-byte big-endian length
and that many bytes (pcap, for capture: the file header first); a chunk of
length 0 ends the stream and is followed by one more line,
{"id": N, "result": {...counts, "end": why}}, and the server closes the
connection.  The client stops a stream early by closing its side (or
sending anything).  A request that fails gets an ordinary error line and
the connection stays a JSON-lines one.
"""
from __future__ import annotations

import json
import struct
from typing import Any

MAX_REQUEST = 1024 * 1024


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def reply(req_id: Any, result: Any) -> bytes:
    return encode({"id": req_id, "result": result})


def chunk(data: bytes) -> bytes:
    """One chunk of a stream (b"": the end)."""
    return chunk_header(len(data)) + data


def chunk_header(n: int) -> bytes:
    """What goes before n bytes of a chunk (written apart, big ones are not
    copied to be framed)."""
    return struct.pack("!I", n)


def error(req_id: Any, code: str, message: str) -> bytes:
    return encode({"id": req_id, "error": {"code": code, "message": message}})
