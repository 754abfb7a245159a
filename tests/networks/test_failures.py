"""A failed nft transaction refuses the request and changes nothing."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from ..helpers import name, our_netns
from ..hostns import HostDaemon, random_net24, strip_counters

pytestmark = pytest.mark.netns

# The real nft, unless the test has made the file `fail` next to it: then
# nft refuses the batch the way it does when the kernel says no.
WRAPPER = """#!/bin/sh
if [ -e "$(dirname "$0")/fail" ]; then
    echo "Error: Could not process rule: injected by the test" >&2
    exit 1
fi
exec {nft} "$@"
"""


def test_a_failed_nft_transaction_changes_nothing(hd: HostDaemon, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    real = shutil.which("nft")
    assert real
    (bindir / "nft").write_text(WRAPPER.format(nft=real))
    (bindir / "nft").chmod(0o755)
    hd.env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    hd.start()
    br, net = name("br"), random_net24()
    hd.ctl("add-br", br, f"subnet={net}.0/24")
    hd.ctl("add-port", br, "a", "--netns", name("a"), "--publish", "8080:80")

    def state():
        return (json.dumps(hd.show(), sort_keys=True), hd.db.read_text(), our_netns(),
                strip_counters(hd.host.ruleset()))

    before = state()
    (bindir / "fail").touch()
    for args in (("add-port", br, "b", "--netns", name("b"), "--publish", "8081:80"),
                 ("set", "port", "a", "publish=9090:90"),
                 ("set", "bridge", br, "masquerade=false"),
                 ("set", "bridge", br, f"subnet={net}.0/25"),
                 ("del-port", br, "a"),
                 ("del-br", br),
                 ("add-br", name("b2"), f"subnet={random_net24(11)}.0/24")):
        r = hd.ctl(*args, check=False)
        assert r.returncode == 1, args
        assert r.stderr.strip() == ("vswitchctl: nft: Error: Could not process rule: "
                                    "injected by the test"), r.stderr
        assert state() == before, f"{args} changed something"
    (bindir / "fail").unlink()
    hd.ctl("add-port", br, "b", "--netns", name("b"), "--publish", "8081:80")
    assert "dport 8081" in hd.host.ruleset()
