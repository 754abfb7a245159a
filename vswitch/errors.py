"""The one exception type of the control plane.

Errors travel as ``(code, message)``: ``code`` is an errno name such as
``ENOENT`` or ``EINVAL`` (the engine's negative errno, or the control
plane's own choice), ``message`` a sentence for a person.  The control
socket sends both; vswitchctl prints the message.
"""
from __future__ import annotations

import errno
import os


class VswitchError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_errno(cls, err: int, what: str) -> "VswitchError":
        name = errno.errorcode.get(err, f"E{err}")
        return cls(name, f"{what}: {os.strerror(err)}")

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def invalid(message: str) -> VswitchError:
    return VswitchError("EINVAL", message)


def not_found(message: str) -> VswitchError:
    return VswitchError("ENOENT", message)


def exists(message: str) -> VswitchError:
    return VswitchError("EEXIST", message)
