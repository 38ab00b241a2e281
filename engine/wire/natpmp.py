"""NAT-PMP messages (RFC 6886 §3).

Requests a client sends, responses a gateway sends, and the unsolicited
external-address announcement (§3.2.1), which has the layout of the
external-address response. Encoders and decoders exist for both directions so
that the simulated gateway speaks through the same code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address

from ..errors import MalformedPacket
from ..protocols import Protocol
from .decoded import decoded

__all__ = [
    "NATPMP_VERSION",
    "ErrorResponse",
    "ExternalAddressRequest",
    "ExternalAddressResponse",
    "MapPacket",
    "MapRequest",
    "MapResponse",
    "Opcode",
    "Request",
    "Response",
    "decode_request",
    "decode_response",
]

NATPMP_VERSION = 0
RESPONSE_BIT = 0x80
MAX_LIFETIME = 0xFFFFFFFF


class Opcode(IntEnum):
    """Request opcodes (RFC 6886 §3.2, §3.3); a response sets bit 7 (128 + opcode)."""

    EXTERNAL_ADDRESS = 0
    MAP_UDP = 1
    MAP_TCP = 2


def opcode_for(protocol: int) -> Opcode:
    """The NAT-PMP opcode that maps ``protocol``; NAT-PMP carries only UDP and TCP."""
    if protocol == Protocol.UDP:
        return Opcode.MAP_UDP
    if protocol == Protocol.TCP:
        return Opcode.MAP_TCP
    raise ValueError(f"NAT-PMP can map only TCP and UDP, not protocol {protocol}")


#: The opcode of each protocol NAT-PMP maps (what :func:`opcode_for` returns).
_OPCODES: dict[int, Opcode] = {Protocol.UDP: Opcode.MAP_UDP, Protocol.TCP: Opcode.MAP_TCP}
_MAP_REQUEST = struct.Struct("!BBHHHI")
_MAP_RESPONSE = struct.Struct("!BBHIHHI")
#: The protocol of each map response opcode (128 + the request's).
_MAPPED: dict[int, Protocol] = {RESPONSE_BIT | Opcode.MAP_UDP: Protocol.UDP,
                                RESPONSE_BIT | Opcode.MAP_TCP: Protocol.TCP}


def protocol_for(opcode: int) -> Protocol:
    """The IP protocol a mapping opcode stands for."""
    return Protocol.UDP if opcode == Opcode.MAP_UDP else Protocol.TCP


def _check_u16(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} must be 0-65535, not {value}")


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} must be 0-4294967295, not {value}")


@dataclass(frozen=True, slots=True)
class ExternalAddressRequest:
    """Opcode 0: what is the gateway's external address? (§3.2)"""

    def encode(self) -> bytes:
        """Two bytes: version 0, opcode 0."""
        return bytes((NATPMP_VERSION, Opcode.EXTERNAL_ADDRESS))


@dataclass(frozen=True, slots=True)
class MapPacket:
    """Opcode 1 (UDP) or 2 (TCP): create, renew or delete a mapping (§3.3, §3.4).

    The wire message; :class:`engine.request.MapRequest` is what a caller asks for.

    ``lifetime`` 0 deletes; internal port 0 with lifetime 0 deletes all of the
    client's mappings of that protocol.
    """

    protocol: int
    internal_port: int
    external_port: int
    lifetime: int

    def __post_init__(self) -> None:
        # Every field in range, in one expression (issue 15: one of these per request);
        # else each check in turn, for its own message.
        if (self.protocol in _OPCODES and 0 <= self.internal_port <= 0xFFFF
                and 0 <= self.external_port <= 0xFFFF and 0 <= self.lifetime <= MAX_LIFETIME):
            return
        opcode_for(self.protocol)
        _check_u16("internal port", self.internal_port)
        _check_u16("suggested external port", self.external_port)
        _check_u32("lifetime", self.lifetime)

    @property
    def opcode(self) -> Opcode:
        """1 for UDP, 2 for TCP."""
        return _OPCODES[self.protocol]

    def encode(self) -> bytes:
        """12 bytes: version, opcode, reserved, internal port, suggested port, lifetime."""
        return _MAP_REQUEST.pack(NATPMP_VERSION, _OPCODES[self.protocol], 0, self.internal_port,
                                 self.external_port, self.lifetime)


MapRequest = MapPacket
"""The older name of :class:`MapPacket` (the simulator's and older tests' name)."""

Request = ExternalAddressRequest | MapPacket


@dataclass(frozen=True, slots=True)
class ExternalAddressResponse:
    """Opcode 128: the external address, also sent unsolicited on a change (§3.2.1)."""

    result: int
    epoch: int
    external_address: IPv4Address

    def __post_init__(self) -> None:
        _check_u16("result code", self.result)
        _check_u32("epoch", self.epoch)
        # NAT-PMP is IPv4 only (§3.2); an IPv6 address would not fit the 4 octets.
        if not isinstance(self.external_address, IPv4Address):
            raise ValueError(f"NAT-PMP external address must be IPv4, not "
                             f"{self.external_address!r}")

    def encode(self) -> bytes:
        """12 bytes."""
        return struct.pack("!BBHI4s", NATPMP_VERSION, RESPONSE_BIT | Opcode.EXTERNAL_ADDRESS,
                           self.result, self.epoch, self.external_address.packed)


@dataclass(frozen=True, slots=True)
class MapResponse:
    """Opcode 129 (UDP) or 130 (TCP): the mapping the gateway made (§3.3)."""

    protocol: int
    result: int
    epoch: int
    internal_port: int
    external_port: int
    lifetime: int

    def __post_init__(self) -> None:
        opcode_for(self.protocol)
        _check_u16("result code", self.result)
        _check_u32("epoch", self.epoch)
        _check_u16("internal port", self.internal_port)
        _check_u16("mapped external port", self.external_port)
        _check_u32("lifetime", self.lifetime)

    def encode(self) -> bytes:
        """16 bytes."""
        return struct.pack("!BBHIHHI", NATPMP_VERSION, RESPONSE_BIT | opcode_for(self.protocol),
                           self.result, self.epoch, self.internal_port, self.external_port,
                           self.lifetime)


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """The short 8-byte error answer: version, opcode, result code, epoch (§3.5).

    Sent for UNSUPPORTED_VERSION (what a NAT-PMP gateway answers to a PCP
    request) and UNSUPPORTED_OPCODE. RFC 6886's text gives its opcode as 0, its
    verified erratum as 128 + the request's opcode: both are accepted, for any
    request opcode (an UNSUPPORTED_OPCODE answer echoes an opcode we do not
    know). The result code is never 0: a success carries data.
    """

    opcode: int
    result: int
    epoch: int

    def __post_init__(self) -> None:
        if not (self.opcode == 0 or RESPONSE_BIT <= self.opcode <= 0xFF):
            raise ValueError(f"NAT-PMP error response opcode must be 0 or 128-255, "
                             f"not {self.opcode}")
        if not 1 <= self.result <= 0xFFFF:
            raise ValueError(f"NAT-PMP error response result code must be 1-65535, "
                             f"not {self.result}")
        _check_u32("epoch", self.epoch)

    def encode(self) -> bytes:
        """8 bytes."""
        return struct.pack("!BBHI", NATPMP_VERSION, self.opcode, self.result, self.epoch)


Response = ExternalAddressResponse | MapResponse | ErrorResponse


def decode_request(data: bytes) -> Request:
    """Decode a request (the gateway's side). Raises :class:`MalformedPacket`.

    A request with a version other than 0 is malformed here; a server answers
    it with UNSUPPORTED_VERSION (check ``data[0]`` first). So is an opcode other
    than 0, 1 and 2: a server answers 3-127 with UNSUPPORTED_OPCODE and ignores
    128-255, which are responses (§3.5; check ``data[1]``).
    """
    if len(data) < 2:
        raise MalformedPacket(f"NAT-PMP request of {len(data)} bytes is shorter than 2")
    if data[0] != NATPMP_VERSION:
        raise MalformedPacket(f"NAT-PMP request has version {data[0]}, not 0")
    opcode = data[1]
    if opcode == Opcode.EXTERNAL_ADDRESS:
        if len(data) != 2:
            raise MalformedPacket(f"NAT-PMP external address request of {len(data)} bytes, not 2")
        return ExternalAddressRequest()
    if opcode in (Opcode.MAP_UDP, Opcode.MAP_TCP):
        if len(data) != 12:
            raise MalformedPacket(f"NAT-PMP map request of {len(data)} bytes, not 12")
        _, _, _, internal, external, lifetime = struct.unpack("!BBHHHI", data)
        return MapPacket(protocol_for(opcode), internal, external, lifetime)
    raise MalformedPacket(f"NAT-PMP request has unknown opcode {opcode}")


def decode_response(data: bytes) -> Response:
    """Decode a response or announcement from a gateway. Raises :class:`MalformedPacket`.

    Lengths are exact: 12 bytes for the external address, 16 for a mapping, and
    8 for a short error answer (result code other than 0 only).
    """
    size = len(data)
    if size == 16:
        # The answer to every map and delete: read in one unpack (issue 15). Anything else of
        # 16 bytes goes through the checks below, for its own error.
        version, opcode, result, epoch, internal, external, lifetime = _MAP_RESPONSE.unpack(data)
        protocol = _MAPPED.get(opcode)
        if version == NATPMP_VERSION and protocol is not None:
            # Every field fits by its width (the struct format): nothing left to check.
            return decoded(MapResponse, protocol, result, epoch, internal, external, lifetime)
    if size < 8:
        raise MalformedPacket(f"NAT-PMP response of {size} bytes is shorter than 8")
    version, opcode, result, epoch = struct.unpack_from("!BBHI", data)
    if version != NATPMP_VERSION:
        raise MalformedPacket(f"NAT-PMP response has version {version}, not 0")
    if size == 8:
        if result == 0:
            raise MalformedPacket("NAT-PMP 8-byte response claims success; a success carries data")
        # RFC 6886 §3.5 text: opcode 0; erratum 5406: 128 + request opcode. Accept both,
        # and any request opcode: UNSUPPORTED_OPCODE echoes one we may not know.
        if opcode != 0 and not opcode & RESPONSE_BIT:
            raise MalformedPacket(f"NAT-PMP error response has opcode {opcode}")
        return ErrorResponse(opcode, result, epoch)
    if not opcode & RESPONSE_BIT:
        raise MalformedPacket(f"NAT-PMP packet with opcode {opcode} is a request, not a response")
    request_opcode = opcode & ~RESPONSE_BIT
    if request_opcode == Opcode.EXTERNAL_ADDRESS:
        if size != 12:
            raise MalformedPacket(f"NAT-PMP external address response of {size} bytes, not 12")
        return ExternalAddressResponse(result, epoch, IPv4Address(data[8:12]))
    if request_opcode in (Opcode.MAP_UDP, Opcode.MAP_TCP):
        if size != 16:
            raise MalformedPacket(f"NAT-PMP map response of {size} bytes, not 16")
        internal, external, lifetime = struct.unpack_from("!HHI", data, 8)
        # Every field fits by its width (the struct format): nothing left to check.
        return decoded(MapResponse, protocol_for(request_opcode), result, epoch, internal,
                       external, lifetime)
    raise MalformedPacket(f"NAT-PMP response has unknown opcode {opcode}")
