"""LACPDU encoding and strict decoding (vswitch/lacp/pdu.py), checked
against scapy's independent layout of the same PDU where it has one."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vswitch.lacp.pdu import (FRAME_LEN, LACP_DST, STATE_ACTIVITY, STATE_SYNCHRONIZATION,
                              STATE_TIMEOUT, Info, Lacpdu, PduError, decode, encode,
                              marker_response, state_words)

SRC = bytes.fromhex("020000000001")
ACTOR = Info(65534, bytes.fromhex("020000000aaa"), 7, 65535, 3,
             STATE_ACTIVITY | STATE_TIMEOUT | STATE_SYNCHRONIZATION)
PARTNER = Info(32768, bytes.fromhex("020000000bbb"), 9, 255, 12, 0x3d)


def test_round_trip_and_layout():
    frame = encode(Lacpdu(ACTOR, PARTNER), SRC)
    assert len(frame) == FRAME_LEN == 124
    assert frame[:6] == LACP_DST and frame[6:12] == SRC and frame[12:14] == b"\x88\x09"
    body = frame[14:]
    assert body[:4] == bytes([1, 1, 1, 20]) and body[22:24] == bytes([2, 20])
    assert body[42:44] == bytes([3, 16]) and body[58:60] == bytes([0, 0])
    # actor information at 4: priority, system, key, port priority, port, state
    assert struct.unpack("!H6sHHHB", body[4:19]) == (65534, ACTOR.system_id, 7, 65535, 3,
                                                     ACTOR.state)
    pdu = decode(frame)
    assert (pdu.actor, pdu.partner, pdu.version) == (ACTOR, PARTNER, 1)


def test_scapy_reads_what_we_write():
    slow = pytest.importorskip("scapy.contrib.lacp")
    from scapy.layers.l2 import Ether
    pkt = Ether(encode(Lacpdu(ACTOR, PARTNER), SRC))
    lacp = pkt[slow.LACP]
    assert lacp.actor_system == "02:00:00:00:0a:aa" and lacp.actor_key == 7
    assert lacp.actor_port_number == 3 and lacp.partner_port_number == 12
    assert lacp.partner_system_priority == 32768 and lacp.partner_state == 0x3d


def test_scapy_written_pdu_decodes():
    slow = pytest.importorskip("scapy.contrib.lacp")
    from scapy.layers.l2 import Ether
    raw = bytes(Ether(src="02:00:00:00:00:09", dst="01:80:c2:00:00:02")
                / slow.SlowProtocol() / slow.LACP(actor_system="02:00:00:00:00:09",
                                                  actor_key=5, actor_port_number=2,
                                                  actor_state=0x05))
    pdu = decode(raw)
    assert pdu.actor.key == 5 and pdu.actor.port == 2 and pdu.actor.state == 0x05


def test_state_words_in_bit_order():
    assert state_words(0xff) == ["activity", "timeout", "aggregation", "synchronization",
                                 "collecting", "distributing", "defaulted", "expired"]
    assert state_words(0) == []


def _bad(frame: bytes) -> str:
    with pytest.raises(PduError) as e:
        decode(frame)
    return e.value.reason


def test_malformed_pdus_say_why():
    good = encode(Lacpdu(ACTOR, PARTNER), SRC)
    assert _bad(good[:10]) == "short"
    assert _bad(good[:14]) == "short"
    assert _bad(good[:14 + 60]) == "short"
    assert _bad(good[:-1]) == "short"
    assert _bad(good[:14] + bytes([1, 0]) + good[16:]) == "version"
    assert _bad(good[:14] + bytes([2, 1]) + good[16:]) == "marker"
    assert _bad(good[:14] + bytes([9, 1]) + good[16:]) == "not_lacp"
    assert _bad(good[:12] + b"\x08\x00" + good[14:]) == "not_lacp"
    assert _bad(good[:12] + b"\x81\x00" + good[14:]) == "tagged"
    for offset, value in ((3, 255), (3, 0), (2, 7), (23, 200), (22, 1), (43, 255), (42, 0),
                          (58, 1), (59, 9)):
        body = bytearray(good[14:])
        body[offset] = value
        assert _bad(good[:14] + bytes(body)) == "tlv", (offset, value)


def test_later_versions_are_read_by_their_version_1_fields():
    good = bytearray(encode(Lacpdu(ACTOR, PARTNER), SRC))
    good[15] = 2
    good[14 + 58] = 0x55         # a v2 TLV where v1 has its terminator
    pdu = decode(bytes(good) + b"\x00" * 40)
    assert pdu.version == 2 and pdu.actor == ACTOR


def test_marker_responder():
    req = bytearray(124)
    req[:6] = LACP_DST
    req[6:12] = bytes.fromhex("020000000bbb")
    req[12:14] = b"\x88\x09"
    req[14:18] = bytes([2, 1, 1, 16])
    req[18:34] = bytes(range(16))
    reply = marker_response(bytes(req), SRC)
    assert reply is not None and len(reply) == 124
    assert reply[6:12] == SRC and reply[14:18] == bytes([2, 1, 2, 16])
    assert reply[18:34] == bytes(range(16))
    assert marker_response(bytes(req[:50]), SRC) is None
    assert marker_response(encode(Lacpdu(ACTOR, PARTNER), SRC), SRC) is None


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_refuse(data):
    frame = LACP_DST + SRC + b"\x88\x09" + data
    try:
        pdu = decode(frame)
    except PduError as e:
        assert e.reason in ("short", "not_lacp", "marker", "version", "tlv", "tagged")
    else:
        assert len(data) >= 110 and data[0] == 1 and data[1] >= 1
        assert 0 <= pdu.actor.key <= 0xFFFF
