"""vswitchd killed with SIGKILL in the middle of a burst of configuration
changes: on restart the configuration is the last one acknowledged to a
client (or that plus the one request that was in flight, written but not
yet answered), every port is recreated and traffic resumes."""
from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from vswitch.client import Client
from vswitch.errors import VswitchError

from ..helpers import PREFIX, ping_eventually

pytestmark = pytest.mark.netns


def snapshot(d) -> dict[str, int]:
    return {b: d.call("fdb/stats-show", bridge=b)["mac_aging"] for b in d.call("list-br")
            if b.startswith(PREFIX + "k")}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_during_a_burst_of_changes(daemon, seed):
    rnd = random.Random(seed)
    daemon.start_with({"bridge": {PREFIX + "base": {"port": {
        "h1": {"netns": PREFIX + "h1", "ip": "10.0.0.1/24"},
        "h2": {"netns": PREFIX + "h2", "ip": "10.0.0.2/24"}}}}})
    model: dict[str, int] = {}       # bridges k* -> mac_aging, as acknowledged
    in_flight: list[dict[str, int]] = []
    stop = threading.Event()

    def burst() -> None:
        i = 0
        try:
            with Client(str(daemon.sock), timeout=10) as c:
                while not stop.is_set():
                    i += 1
                    br = f"{PREFIX}k{rnd.randrange(6)}"
                    nxt = dict(model)
                    if br in model and rnd.random() < 0.4:
                        method, params = "del-br", {"bridge": br}
                        del nxt[br]
                    elif br in model:
                        method = "set"
                        params = {"table": "bridge", "record": br,
                                  "settings": {"mac_aging": str(10 + i)}}
                        nxt[br] = 10 + i
                    else:
                        method, params = "add-br", {"bridge": br,
                                                    "settings": {"mac_aging": 10 + i}}
                        nxt[br] = 10 + i
                    in_flight[:] = [nxt]
                    c.call(method, **params)
                    model.clear()
                    model.update(nxt)
                    in_flight.clear()
        except (VswitchError, OSError):
            pass          # the daemon died under us: expected

    t = threading.Thread(target=burst)
    t.start()
    time.sleep(0.3 + rnd.random())
    os.kill(daemon.pid, signal.SIGKILL)
    stop.set()
    t.join(timeout=20)
    while os.path.exists(f"/proc/{daemon.pid}"):
        time.sleep(0.01)
    daemon.pid = None
    assert len(model) + len(in_flight) > 0, "the burst never got going"
    daemon.start()
    after = snapshot(daemon)
    assert after == model or (in_flight and after == in_flight[0]), (after, model, in_flight)
    assert ping_eventually(PREFIX + "h1", "10.0.0.2")
