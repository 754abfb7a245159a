"""cffi builder for the C engine (API mode, out of line).

setuptools runs this through ``cffi_modules`` in pyproject.toml, and it
produces the extension module ``vswitch._engine``.  The declarations come
from csrc/vswitch.h, the one public header: preprocessor lines are dropped
except ``#define NAME NUMBER`` constants, which cdef understands.

Set VSWITCH_SANITIZE=1 to build with AddressSanitizer and
UndefinedBehaviorSanitizer (see README, "Sanitizers").
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ["frame.c", "fdb.c", "fdb_ctl.c", "vlan.c", "vnet.c", "gso.c", "bond.c",
           "forward.c", "mirror.c", "trace.c", "flow.c", "upcall.c", "tx.c", "io.c",
           "control.c", "datapath.c", "bench.c"]
_CONSTANT = re.compile(r"^#define\s+[A-Z_][A-Z0-9_]*\s+\d+\s*(/\*.*\*/)?\s*$")


def public_declarations(header: Path) -> str:
    """The header's text as cdef() accepts it."""
    kept = []
    for line in header.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not _CONSTANT.match(stripped):
            continue
        kept.append(line)
    return "\n".join(kept)


def _compile_args() -> tuple[list[str], list[str]]:
    cflags = ["-O2", "-g", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wno-unused-parameter",
              "-fno-strict-aliasing", "-fvisibility=hidden", "-pthread"]
    ldflags = ["-pthread"]
    if os.environ.get("VSWITCH_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
               "-fno-sanitize-recover=undefined"]
        cflags = [f for f in cflags if f != "-O2"] + ["-O1"] + san
        ldflags += san
    return cflags, ldflags


ffibuilder = FFI()
ffibuilder.cdef(public_declarations(HERE / "vswitch.h"))
_cflags, _ldflags = _compile_args()
ffibuilder.set_source(
    "vswitch._engine",
    '#include "vswitch.h"',
    sources=[str(Path("csrc") / s) for s in SOURCES],
    include_dirs=["csrc"],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
