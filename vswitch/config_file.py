"""Reading a TOML configuration file, with errors as FILE:LINE: message.

tomllib reports syntax errors with a line but knows nothing of meaning, and
gives parsed values no positions.  So after parsing, a ConfigError's key
path is mapped back to a line by a small scan of the text: table headers
([bridge.br0.port.h1]) and key lines (ip = ...) are enough for files
written the way configs/ shows.  A key the scan cannot place is reported at
its nearest enclosing table, or at line 1.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path as FsPath

from .config import ConfigError, SwitchConfig, parse_switch

_HEADER = re.compile(r"^\s*\[\[?\s*(?P<name>[^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*(?P<key>(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_.\- ]+?))\s*=")
_LINE_COL = re.compile(r"\(at line (\d+), column \d+\)")
_END = re.compile(r"\(at end of document\)")


class ConfigFileError(Exception):
    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")
        self.file = file
        self.line = line
        self.message = message


def _split_dotted(text: str) -> tuple[str, ...]:
    parts, cur, quote = [], "", ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
            else:
                cur += ch
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return tuple(parts)


def locate(text: str, path: tuple[str, ...]) -> int:
    """Best line number (1-based) for a key path.  Entries of an array of
    tables ([[bridge.br0.fdb]]) are numbered from 0 in the path, as
    config.py numbers them."""
    best_line, best_len = 1, 0
    table: tuple[str, ...] = ()
    array_count: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if m:
            table = _split_dotted(m.group("name"))
            if line.lstrip().startswith("[["):
                array_count[table] = array_count.get(table, -1) + 1
                table = table + (str(array_count[table]),)
            full = table
        else:
            k = _KEY.match(line)
            if not k:
                continue
            full = table + _split_dotted(k.group("key"))
        n = 0
        # keys may be spelt with dashes (lacp-time) where the path has
        # underscores (config.normalize_keys)
        while n < len(full) and n < len(path) and \
                full[n].replace("-", "_") == path[n].replace("-", "_"):
            n += 1
        if n == len(full) and n > best_len:
            best_line, best_len = number, n
            if n == len(path):
                return number
    return best_line


def load_config_file(file: str | FsPath) -> SwitchConfig:
    """Parse and validate a file; raises ConfigFileError, applies nothing."""
    name = str(file)
    try:
        raw = FsPath(file).read_bytes()
    except OSError as e:
        raise ConfigFileError(name, 0, f"cannot read: {e.strerror}") from None
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigFileError(name, line, f"not UTF-8 text (byte 0x{raw[e.start]:02x}); "
                                          "a TOML file must be UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _LINE_COL.search(msg)
        if m:
            line = int(m.group(1))
        elif _END.search(msg):
            # "at end of document": the last line that holds anything
            lines = text.splitlines()
            line = max((i for i, ln in enumerate(lines, 1) if ln.strip()), default=1)
        else:
            line = 1
        message = _END.sub("", _LINE_COL.sub("", msg)).strip()
        # tomllib does not always say which key it means; the line does
        lines = text.splitlines()
        k = _KEY.match(lines[line - 1]) if 0 < line <= len(lines) else None
        if k and k.group("key").strip() not in message:
            message += f" (key {k.group('key').strip()!r})"
        raise ConfigFileError(name, line, message) from None
    try:
        return parse_switch(data)
    except ConfigError as e:
        raise ConfigFileError(name, locate(text, e.path), str(e)) from None
