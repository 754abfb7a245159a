"""Docker's remote network driver (libnetwork), served by vswitchd itself.

http.py   a small HTTP/1.1 server on a UNIX socket, in the daemon's loop
driver.py the NetworkDriver calls, turned into Switch transactions
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from ..switch import Switch
from .driver import DockerDriver
from .http import UnixHttpServer

DEFAULT_PLUGIN_SOCK = "/run/docker/plugins/vswitch.sock"


async def start_plugin(sw: Switch, path: Path, loop: asyncio.AbstractEventLoop
                       ) -> UnixHttpServer:
    """Serve the driver on `path`; Docker names the plugin after the file
    (vswitch.sock: `docker network create -d vswitch`)."""
    server = UnixHttpServer(path, DockerDriver(sw, loop).handle)
    await server.start()
    return server
