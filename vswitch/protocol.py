"""The control protocol's framing: one JSON object per line, each way.

Request  {"id": N, "method": "add-port", "params": {...}}
Reply    {"id": N, "result": ...} or {"id": N, "error": {"code", "message"}}
A request line may be at most MAX_REQUEST bytes.
"""
from __future__ import annotations

import json
from typing import Any

MAX_REQUEST = 1024 * 1024


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def reply(req_id: Any, result: Any) -> bytes:
    return encode({"id": req_id, "result": result})


def error(req_id: Any, code: str, message: str) -> bytes:
    return encode({"id": req_id, "error": {"code": code, "message": message}})
