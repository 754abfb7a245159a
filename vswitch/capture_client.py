"""vswitchctl's side of `capture`: pcap from the daemon's stream to stdout.

Stops cleanly three ways: --count frames were captured (the daemon ends
the stream), Ctrl-C (we close our side of the connection, the daemon ends
the stream and we still write what it sent until then, so the file is
whole; a second Ctrl-C quits at once), or a closed pipe (`| head -c 1000`,
a tcpdump that exited): then we exit quietly, as `cat` would not but a
capture tool should.  Ctrl-C is caught by a handler rather than as an
exception, which could land in the middle of a chunk and lose its place
in the stream.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any, BinaryIO

from .client import Client
from .errors import VswitchError


def _quiet_stdout() -> None:
    """stdout is a broken pipe: point it at /dev/null so that Python's own
    flush at exit does not complain."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _copy(client: Client, out: BinaryIO) -> None:
    for chunk in client.chunks():
        out.write(chunk)
        out.flush()


def _stop_on_ctrl_c(client: Client) -> None:
    pressed: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)
        client.stop_stream()
    signal.signal(signal.SIGINT, handler)


def run_capture(sock: str, params: dict[str, Any], timeout: float) -> int:
    out = sys.stdout.buffer
    if out.isatty():
        print("vswitchctl: capture writes pcap: redirect it to a file or a pipe "
              "(vswitchctl capture PORT | tcpdump -r - -nn)", file=sys.stderr)
        return 1
    port = params["port"]
    try:
        with Client(sock, timeout=timeout) as client:
            client.call("capture", **params)
            client.settimeout(None)
            _stop_on_ctrl_c(client)
            _copy(client, out)
            end = client.stream_end()
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        return 0
    except VswitchError as e:
        print(f"vswitchctl: {e.message}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"vswitchctl: {e}", file=sys.stderr)
        return 1
    lost = []
    if end["dropped"]:
        lost.append(f"{end['dropped']} dropped (this reader was too slow)")
    if end.get("queue_dropped"):
        lost.append(f"{end['queue_dropped']} not queued by the switch (vswitchd too busy)")
    print(f"vswitchctl: {end['captured']} frames captured on {port}"
          + "".join(", " + x for x in lost), file=sys.stderr)
    if end["end"] not in ("count", "stopped"):
        print(f"vswitchctl: capture ended: {end['end']}", file=sys.stderr)
        return 1
    return 0
