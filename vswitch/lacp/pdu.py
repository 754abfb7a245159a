"""LACPDUs (IEEE 802.1AX-2008 clause 5.4.2): encoding and a strict,
bounds-checked decoding.  Pure functions, no I/O.

A LACPDU is a slow-protocols frame (ethertype 0x8809) to 01:80:c2:00:00:02,
subtype 1, 110 octets after the Ethernet header:

    0  subtype (1)            1  version (1)
    2  actor TLV: type 1, length 20, then the actor's information (15
       octets, below) and 3 reserved
   22  partner TLV: type 2, length 20, the same layout for the partner
   42  collector TLV: type 3, length 16: CollectorMaxDelay (2), 12 reserved
   58  terminator TLV: type 0, length 0
   60  50 reserved octets

Information (both TLVs): system priority (2), system id (6), key (2), port
priority (2), port number (2), state (1 bit field, STATE_* below).

A frame from the wire is untrusted: `decode` checks every length before it
reads and says why it refused a frame (the reason is counted, the frame
ignored).  Versions above 1 are read by their version-1 fields, as
802.1AX-2014 asks of an older receiver; version 0 does not exist.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

LACP_DST = bytes.fromhex("0180c2000002")
SLOW_PROTOCOLS = 0x8809
SUBTYPE_LACP = 1
SUBTYPE_MARKER = 2
PDU_LEN = 110
FRAME_LEN = 14 + PDU_LEN

# Actor/partner state bits (802.1AX 5.4.2.2, item m), and the words
# `lacp/show` uses for them (Open vSwitch's, with "synchronization" spelt
# as the standard and the issue spell it).
STATE_ACTIVITY = 0x01
STATE_TIMEOUT = 0x02         # set: short timeout (fast)
STATE_AGGREGATION = 0x04
STATE_SYNCHRONIZATION = 0x08
STATE_COLLECTING = 0x10
STATE_DISTRIBUTING = 0x20
STATE_DEFAULTED = 0x40
STATE_EXPIRED = 0x80
STATE_WORDS = (
    (STATE_ACTIVITY, "activity"), (STATE_TIMEOUT, "timeout"),
    (STATE_AGGREGATION, "aggregation"), (STATE_SYNCHRONIZATION, "synchronization"),
    (STATE_COLLECTING, "collecting"), (STATE_DISTRIBUTING, "distributing"),
    (STATE_DEFAULTED, "defaulted"), (STATE_EXPIRED, "expired"),
)

_INFO = struct.Struct("!H6sHHHB")          # 15 octets


def state_words(state: int) -> list[str]:
    return [word for bit, word in STATE_WORDS if state & bit]


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def mac_raw(text: str) -> bytes:
    raw = bytes(int(x, 16) for x in text.split(":"))
    if len(raw) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return raw


@dataclass(frozen=True)
class Info:
    """One side's information in a LACPDU (actor or partner)."""
    system_priority: int = 0
    system_id: bytes = bytes(6)
    key: int = 0
    port_priority: int = 0
    port: int = 0
    state: int = 0

    def pack(self) -> bytes:
        return _INFO.pack(self.system_priority, self.system_id, self.key,
                          self.port_priority, self.port, self.state)

    @classmethod
    def unpack(cls, raw: bytes) -> "Info":
        prio, sid, key, pprio, port, state = _INFO.unpack(raw)
        return cls(prio, sid, key, pprio, port, state)

    def same_link(self, other: "Info") -> bool:
        """Equal in everything but the state: the same port of the same
        aggregation (802.1AX's comparison in update_Selected)."""
        return (self.system_priority, self.system_id, self.key, self.port_priority,
                self.port) == (other.system_priority, other.system_id, other.key,
                               other.port_priority, other.port)

    def has(self, bit: int) -> bool:
        return bool(self.state & bit)

    def to_json(self) -> dict[str, object]:
        return {"system_id": mac_text(self.system_id),
                "system_priority": self.system_priority, "key": self.key,
                "port_priority": self.port_priority, "port_id": self.port,
                "state": state_words(self.state)}


@dataclass(frozen=True)
class Lacpdu:
    actor: Info
    partner: Info
    collector_max_delay: int = 0
    version: int = 1
    extra: bytes = field(default=b"", compare=False)   # what followed a v2+ PDU


class PduError(ValueError):
    """A frame that is not a usable LACPDU; `reason` is a short word for the
    counters and logs (short, not_lacp, marker, version, tlv, tagged)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def encode(pdu: Lacpdu, src_mac: bytes) -> bytes:
    """A whole Ethernet frame (124 octets) carrying `pdu`, from src_mac."""
    if len(src_mac) != 6:
        raise ValueError("source MAC must be 6 octets")
    body = bytearray(PDU_LEN)
    body[0], body[1] = SUBTYPE_LACP, 1
    body[2], body[3] = 1, 20
    body[4:19] = pdu.actor.pack()
    body[22], body[23] = 2, 20
    body[24:39] = pdu.partner.pack()
    body[42], body[43] = 3, 16
    struct.pack_into("!H", body, 44, pdu.collector_max_delay)
    # terminator (type 0, length 0) and the reserved octets stay zero
    return LACP_DST + src_mac + struct.pack("!H", SLOW_PROTOCOLS) + bytes(body)


def decode(frame: bytes) -> Lacpdu:
    """The LACPDU in an Ethernet frame, or PduError saying what is wrong.
    Every read is inside `frame`; no length from the wire is trusted."""
    if len(frame) < 14:
        raise PduError("short", f"{len(frame)} octets, not even an Ethernet header")
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype in (0x8100, 0x88A8):
        raise PduError("tagged", "a LACPDU is never VLAN-tagged")
    if ethertype != SLOW_PROTOCOLS:
        raise PduError("not_lacp", f"ethertype 0x{ethertype:04x} is not slow protocols")
    body = frame[14:]
    if len(body) < 2:
        raise PduError("short", f"{len(body)} octets after the Ethernet header")
    subtype, version = body[0], body[1]
    if subtype == SUBTYPE_MARKER:
        raise PduError("marker", "a marker PDU")
    if subtype != SUBTYPE_LACP:
        raise PduError("not_lacp", f"slow-protocols subtype {subtype}")
    if version == 0:
        raise PduError("version", "LACP version 0 does not exist")
    if len(body) < PDU_LEN:
        raise PduError("short", f"{len(body)} octets, a LACPDU has {PDU_LEN}")
    for offset, tlv_type, tlv_len, what in ((2, 1, 20, "actor"), (22, 2, 20, "partner"),
                                            (42, 3, 16, "collector")):
        if body[offset] != tlv_type or body[offset + 1] != tlv_len:
            raise PduError("tlv", f"{what} TLV has type {body[offset]} length "
                                  f"{body[offset + 1]} (expected {tlv_type}, {tlv_len})")
    # Version 1 ends with a terminator; later versions may put more TLVs
    # there, which this receiver leaves alone.
    if version == 1 and (body[58] != 0 or body[59] != 0):
        raise PduError("tlv", f"terminator TLV has type {body[58]} length {body[59]}")
    actor = Info.unpack(body[4:19])
    partner = Info.unpack(body[24:39])
    delay = struct.unpack_from("!H", body, 44)[0]
    return Lacpdu(actor, partner, delay, version, bytes(body[58:]) if version > 1 else b"")


# --- the Marker Responder (802.1AX 5.5) ------------------------------------------
# A marker PDU: subtype 2, version 1, then a Marker Information TLV (type 1,
# length 16: requester port, system and transaction id, 2 octets of pad), a
# terminator and 90 reserved octets.  The responder sends it back unchanged
# but for the TLV type (2, Marker Response) and the source address.

def marker_response(frame: bytes, src_mac: bytes) -> bytes | None:
    """The answer to a Marker PDU, or None if the frame is not a well-formed
    Marker Information PDU."""
    body = frame[14:]
    if (len(frame) < 14 + PDU_LEN or struct.unpack_from("!H", frame, 12)[0] != SLOW_PROTOCOLS
            or body[0] != SUBTYPE_MARKER or body[1] == 0 or body[2] != 1 or body[3] != 16):
        return None
    reply = bytearray(body[:PDU_LEN])
    reply[2] = 2
    return LACP_DST + src_mac + struct.pack("!H", SLOW_PROTOCOLS) + bytes(reply)
