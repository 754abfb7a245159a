"""The bond state machine (vswitch/bond.py) against a recording fake of
the engine, on a real event loop: delays, active choice, SLB buckets and
rebalancing."""
from __future__ import annotations

import asyncio

import pytest

from vswitch.bond import BUCKETS, Bond
from vswitch.config import parse_port


class FakeDp:
    def __init__(self) -> None:
        self.enabled: dict[int, bool] = {}
        self.active: int | None = None
        self.buckets: dict[int, int | None] = {}
        self.learning = 0
        self.mode = None

    def set_enabled(self, iface, on):
        self.enabled[iface] = on

    def set_active(self, port, iface):
        self.active = iface

    def send_learning_packets(self, port):
        self.learning += 1
        return 0

    def set_slb_bucket(self, port, b, iface):
        self.buckets[b] = iface

    def set_bond_mode(self, port, mode):
        self.mode = mode

    def take_slb_loads(self, port):
        return [0] * BUCKETS


def make(loop, members=("m0", "m1", "m2"), up=(True, True, True), **settings):
    cfg = parse_port("bd", {"type": "bond", "interfaces": list(members), **settings}, ())
    dp = FakeDp()
    changes = []
    bond = Bond("bd", cfg, 1, dp, loop, lambda b: changes.append(b.active))
    for i, (name, is_up) in enumerate(zip(members, up)):
        bond.add_member(name, 10 + i, is_up)
    return bond, dp, changes


def run(coro):
    return asyncio.run(coro)


def test_start_picks_the_first_enabled_member_or_the_saved_one():
    async def body():
        loop = asyncio.get_running_loop()
        b, dp, _ = make(loop, up=(False, True, True))
        b.start(None)
        assert b.active == "m1" and dp.active == 11
        b2, _, _ = make(loop)
        b2.start("m2")
        assert b2.active == "m2"
        b3, _, _ = make(loop, bond_primary="m1")
        b3.start("m2")
        assert b3.active == "m1"          # the primary wins over the saved one
    run(body())


def test_failover_and_learning_packets():
    async def body():
        b, dp, changes = make(asyncio.get_running_loop())
        b.start(None)
        sent = dp.learning
        b.link_changed("m0", False)
        assert b.active == "m1" and dp.enabled[10] is False and dp.learning == sent + 1
        b.link_changed("m0", True)       # no primary: the current one stays
        assert b.active == "m1"
        assert changes[-1] == "m1"
    run(body())


def test_downdelay_and_updelay():
    async def body():
        b, dp, _ = make(asyncio.get_running_loop(), bond_updelay=150, bond_downdelay=100)
        b.start(None)
        b.link_changed("m0", False)
        assert b.members["m0"].enabled and b.active == "m0"      # not yet
        await asyncio.sleep(0.15)
        assert not b.members["m0"].enabled and b.active == "m1"
        b.link_changed("m0", True)
        await asyncio.sleep(0.05)
        assert not b.members["m0"].enabled                        # updelay running
        await asyncio.sleep(0.15)
        assert b.members["m0"].enabled
        # a flap shorter than the downdelay changes nothing
        b.link_changed("m1", False)
        await asyncio.sleep(0.03)
        b.link_changed("m1", True)
        await asyncio.sleep(0.15)
        assert b.members["m1"].enabled and b.active == "m1"
        b.stop()
    run(body())


def test_updelay_is_skipped_when_no_member_is_enabled():
    async def body():
        b, dp, _ = make(asyncio.get_running_loop(), up=(False, False, False),
                        bond_updelay=10_000)
        b.start(None)
        assert b.active is None
        b.link_changed("m2", True)
        assert b.members["m2"].enabled and b.active == "m2"
        b.link_changed("m0", True)
        assert not b.members["m0"].enabled          # waits its updelay now
        b.stop()
    run(body())


def test_primary_preempts_when_it_returns():
    async def body():
        b, dp, _ = make(asyncio.get_running_loop(), bond_primary="m2")
        b.start(None)
        assert b.active == "m2"
        b.link_changed("m2", False)
        assert b.active == "m0"
        b.link_changed("m2", True)
        assert b.active == "m2"
    run(body())


def test_admin_disable_and_set_active_member():
    async def body():
        b, dp, _ = make(asyncio.get_running_loop(), bond_downdelay=5000)
        b.start(None)
        b.set_admin("m0", False)                 # immediate, whatever the downdelay
        assert not b.members["m0"].enabled and b.active == "m1"
        with pytest.raises(Exception, match="cannot make disabled member"):
            b.set_active_member("m0")
        b.set_active_member("m2")
        assert b.active == "m2" and dp.active == 12
        with pytest.raises(Exception, match="has no member"):
            b.set_active_member("zz")
        b.stop()
    run(body())


def test_slb_buckets_are_spread_and_follow_members():
    async def body():
        b, dp, _ = make(asyncio.get_running_loop(), bond_mode="balance-slb",
                        up=(True, False, True))
        b.start(None)
        counts = {n: b.buckets.count(n) for n in ("m0", "m1", "m2")}
        assert counts == {"m0": 128, "m1": 0, "m2": 128}
        b.link_changed("m1", True)
        counts = {n: b.buckets.count(n) for n in ("m0", "m1", "m2")}
        assert sorted(counts.values()) == [85, 85, 86]
        b.link_changed("m0", False)
        assert b.buckets.count("m0") == 0 and b.buckets.count(None) == 0
        assert all(dp.buckets[i] in (11, 12) for i in range(BUCKETS))
        b.stop()
    run(body())


def test_rebalance_moves_load_from_busy_to_idle_members():
    async def body():
        b, dp, _ = make(asyncio.get_running_loop(), members=("m0", "m1"), up=(True, True),
                        bond_mode="balance-slb")
        b.start(None)
        loads = [0] * BUCKETS
        m0_buckets = [i for i, o in enumerate(b.buckets) if o == "m0"]
        for i in m0_buckets[:4]:
            loads[i] = 1_000_000          # all traffic on m0
        moved = b.rebalance(loads)
        assert moved >= 1
        per = {n: sum(loads[i] for i, o in enumerate(b.buckets) if o == n) for n in ("m0", "m1")}
        assert per["m0"] == per["m1"] == 2_000_000
        assert b.rebalance(loads) == 0    # balanced: nothing more to do
        b.stop()
    run(body())


def test_manual_choice_stays_until_a_link_event_or_a_new_primary():
    """Issue 14 (7)."""
    from dataclasses import replace

    async def body():
        b, dp, changes = make(asyncio.get_running_loop(), bond_primary="m2")
        b.start(None)
        b.set_active_member("m0")
        b.reconfigure(replace(b.cfg, bond_downdelay=77))
        assert b.active == "m0" and changes[-1] == "m0"
        b.link_changed("m1", False)              # another member's link: no move
        assert b.active == "m0"
        b.link_changed("m2", False)
        await asyncio.sleep(0.12)                # past the downdelay of 77 ms
        b.link_changed("m2", True)               # the primary returns: it takes over
        assert b.active == "m2"
        b.link_changed("m1", True)
        await asyncio.sleep(0.01)
        b.set_active_member("m1")
        b.reconfigure(replace(b.cfg, bond_primary="m0"))   # a new primary takes over
        assert b.active == "m0"
    run(body())
