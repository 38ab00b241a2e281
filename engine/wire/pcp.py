"""PCP messages (RFC 6887 §7, §11, §12, §13, §14.1).

A :class:`Request` (client → gateway) and a :class:`Response` (gateway →
client, also the unsolicited ANNOUNCE) each carry an opcode, the opcode's data
(:class:`MapData`, :class:`PeerData`, or ``None`` for ANNOUNCE) and a tuple of
options. Both directions encode and decode so that the simulated gateway speaks
through the same code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, Protocol

from ..codes import PcpResult
from ..errors import MalformedPacket
from .addresses import IPAddress, decode_address, encode_address
from .bits import check_bits
from .decoded import decoded

if TYPE_CHECKING:
    from types import ModuleType

    from .pcp_options import (
        Filter,
        Option,
        OptionCode,
        PreferFailure,
        ThirdParty,
        UnknownOption,
        decode_options,
        encode_options,
        option_code,
    )

__all__ = [
    "HEADER_SIZE",
    "MAX_PACKET_SIZE",
    "NONCE_SIZE",
    "PCP_VERSION",
    "Filter",
    "MapData",
    "Opcode",
    "Option",
    "OptionCode",
    "PeerData",
    "PreferFailure",
    "Request",
    "RequestRejected",
    "Response",
    "ThirdParty",
    "UnknownOption",
    "decode_options",
    "decode_request",
    "decode_response",
    "encode_options",
    "encode_request",
    "option_code",
]

PCP_VERSION = 2
HEADER_SIZE = 24
MAX_PACKET_SIZE = 1100  # RFC 6887 §7: messages are at most 1100 octets
NONCE_SIZE = 12
RESPONSE_BIT = 0x80
MAP_DATA_SIZE = 36
PEER_DATA_SIZE = 56


class Opcode(IntEnum):
    """PCP opcodes (RFC 6887 §19.2)."""

    ANNOUNCE = 0
    MAP = 1
    PEER = 2


class _CommonData(Protocol):
    @property
    def nonce(self) -> bytes: ...
    @property
    def protocol(self) -> int: ...
    @property
    def internal_port(self) -> int: ...
    @property
    def external_port(self) -> int: ...
    @property
    def external_address(self) -> IPAddress: ...


# MAP and PEER data begin with the same 36 octets (RFC 6887 §11.1, §12.1).
def _check_common(data: _CommonData) -> None:
    # Every field in range, in one expression (issue 15: one of these per request); else
    # each check in turn, for its own message.
    if (len(data.nonce) == NONCE_SIZE and 0 <= data.protocol <= 0xFF
            and 0 <= data.internal_port <= 0xFFFF and 0 <= data.external_port <= 0xFFFF):
        return
    if len(data.nonce) != NONCE_SIZE:
        raise ValueError(f"PCP nonce must be {NONCE_SIZE} bytes, not {len(data.nonce)}")
    check_bits("protocol", data.protocol, 8)
    check_bits("internal port", data.internal_port, 16)
    check_bits("external port", data.external_port, 16)


_COMMON = struct.Struct("!B3xHH")
#: A MAP answer without options: the header (version, opcode, -, result, lifetime, epoch,
#: reserved), then MAP's data (nonce, protocol, 24 reserved bits, ports, external address).
_MAP_ANSWER = struct.Struct("!BBBBII12s12sB3xHH16s")
_HEADER = struct.Struct("!BBHI")


def _pack_common(data: _CommonData) -> bytes:
    return (data.nonce + _COMMON.pack(data.protocol, data.internal_port, data.external_port)
            + encode_address(data.external_address))


def _unpack_common(data: bytes) -> tuple[bytes, int, int, int, IPAddress]:
    protocol, internal, external = struct.unpack_from("!B3xHH", data, NONCE_SIZE)
    return bytes(data[:NONCE_SIZE]), protocol, internal, external, decode_address(data[20:36])


@dataclass(frozen=True, slots=True)
class MapData:
    """MAP opcode data (§11.1): 36 octets.

    In a request ``external_port``/``external_address`` are suggestions (0 and
    the zero address for "no preference"); in a response they are assigned.
    """

    nonce: bytes
    protocol: int
    internal_port: int
    external_port: int
    external_address: IPAddress

    def __post_init__(self) -> None:
        _check_common(self)

    def encode(self) -> bytes:
        """36 octets."""
        return _pack_common(self)

    @classmethod
    def decode(cls, data: bytes) -> MapData:
        """From exactly 36 octets (every field fits by its width: nothing to check)."""
        return decoded(cls, *_unpack_common(data))


@dataclass(frozen=True, slots=True)
class PeerData:
    """PEER opcode data (§12.1): 56 octets."""

    nonce: bytes
    protocol: int
    internal_port: int
    external_port: int
    external_address: IPAddress
    remote_port: int
    remote_address: IPAddress

    def __post_init__(self) -> None:
        _check_common(self)
        check_bits("remote peer port", self.remote_port, 16)

    def encode(self) -> bytes:
        """56 octets: MAP's 36, then the remote peer's port and address."""
        return (_pack_common(self) + struct.pack("!H2x", self.remote_port)
                + encode_address(self.remote_address))

    @classmethod
    def decode(cls, data: bytes) -> PeerData:
        """From exactly 56 octets."""
        (remote_port,) = struct.unpack_from("!H", data, 36)
        return decoded(cls, *_unpack_common(data), remote_port, decode_address(data[40:56]))


OpData = MapData | PeerData

_DATA_SIZE: dict[int, int] = {Opcode.ANNOUNCE: 0, Opcode.MAP: MAP_DATA_SIZE,
                              Opcode.PEER: PEER_DATA_SIZE}


def _opdata_matches(opcode: int, data: OpData | None) -> bool:
    if opcode == Opcode.MAP:
        return isinstance(data, MapData)
    if opcode == Opcode.PEER:
        return isinstance(data, PeerData)
    return data is None


def _well_formed(version: int, opcode: int, lifetime: int, data: OpData | None) -> bool:
    """A request's one check, which :class:`Request` and :func:`encode_request` both make: each
    field within its width, and opcode data of the opcode's kind (Request says which failed)."""
    return (0 <= version <= 0xFF and 0 <= opcode <= 0x7F and 0 <= lifetime <= 0xFFFFFFFF
            and (opcode not in _DATA_SIZE or _opdata_matches(opcode, data)))


def _decode_opdata(opcode: int, body: bytes) -> OpData | None:
    if opcode == Opcode.MAP:
        return MapData.decode(body)
    if opcode == Opcode.PEER:
        return PeerData.decode(body)
    return None


@dataclass(frozen=True, slots=True)
class Request:
    """A PCP request (§7.1): header, opcode data, options.

    ``version`` and an opcode this code does not know are accepted (with no
    opcode data) so that a test can send what a server must refuse;
    :func:`decode_request` takes only version 2 and the opcodes of §19.2.
    """

    opcode: int
    lifetime: int
    client_address: IPAddress
    data: OpData | None = None
    options: tuple[Option, ...] = field(default=())
    version: int = PCP_VERSION

    def __post_init__(self) -> None:
        if not _well_formed(self.version, self.opcode, self.lifetime, self.data):
            check_bits("version", self.version, 8)
            check_bits("opcode", self.opcode, 7)
            check_bits("lifetime", self.lifetime, 32)
            raise ValueError(f"PCP opcode {self.opcode} does not take {type(self.data).__name__}")

    def encode(self) -> bytes:
        """The request as sent; raises :class:`ValueError` past 1100 octets."""
        return _encode_request(self.version, self.opcode, self.lifetime, self.client_address,
                               self.data, self.options)


def _encode_request(version: int, opcode: int, lifetime: int, client_address: IPAddress,
                    data: OpData | None, options: tuple[Option, ...]) -> bytes:
    packet = (_HEADER.pack(version, opcode, 0, lifetime) + encode_address(client_address)
              + (data.encode() if data is not None else b"")
              + (_options().encode_options(options) if options else b""))
    if len(packet) > MAX_PACKET_SIZE:
        raise ValueError(f"PCP request of {len(packet)} octets exceeds {MAX_PACKET_SIZE}")
    return packet


def encode_request(opcode: int, lifetime: int, client_address: IPAddress,
                   data: OpData | None = None, options: tuple[Option, ...] = ()) -> bytes:
    """``Request(opcode, lifetime, client_address, data, options).encode()``, with the same
    checks, without building the :class:`Request` (issue 15: one per request sent)."""
    if _well_formed(PCP_VERSION, opcode, lifetime, data):
        return _encode_request(PCP_VERSION, opcode, lifetime, client_address, data, options)
    return Request(opcode, lifetime, client_address, data, options).encode()  # it says why


_NO_RESERVED = bytes(12)


@dataclass(frozen=True, slots=True)
class Response:
    """A PCP response (§7.2), or an unsolicited ANNOUNCE (§14.1.3).

    ``lifetime`` is the granted lifetime on success and the error lifetime on
    failure (§7.2, §15). ``epoch`` is the server's Epoch Time (§8.5). Error
    responses may come without opcode data (``data`` is ``None``).

    ``reserved`` is the 96-bit field after the epoch: zero, except that a server
    answering a request it could not parse copies the last 96 bits of the
    request's client address into it (§7.2).

    Construction enforces what :func:`decode_response` accepts, so that
    ``decode_response(r.encode()) == r`` for every response that constructs:
    a version other than 2 only in an UNSUPP_VERSION answer and with nothing
    after the header (§9); an opcode other than ANNOUNCE, MAP and PEER only in
    an error answer with nothing after the header; MAP and PEER success
    answers with their opcode data; options only after opcode data.
    """

    opcode: int
    result: int
    lifetime: int
    epoch: int
    data: OpData | None = None
    options: tuple[Option, ...] = field(default=())
    version: int = PCP_VERSION
    reserved: bytes = _NO_RESERVED

    def __post_init__(self) -> None:
        check_bits("version", self.version, 8)
        check_bits("opcode", self.opcode, 7)
        check_bits("result code", self.result, 8)
        check_bits("lifetime", self.lifetime, 32)
        check_bits("epoch", self.epoch, 32)
        if len(self.reserved) != len(_NO_RESERVED):
            raise ValueError(f"PCP response reserved field must be 12 octets, not "
                             f"{len(self.reserved)}")
        header_only = self.data is None and not self.options
        if self.version != PCP_VERSION:
            # §9: a server of another version says so with UNSUPP_VERSION; what
            # follows its header is not in our layout and is not read.
            if self.result != PcpResult.UNSUPP_VERSION or not header_only:
                raise ValueError(f"a PCP version {self.version} response can only be a bare "
                                 "UNSUPP_VERSION answer")
            return
        if self.opcode not in _DATA_SIZE:
            if self.result == PcpResult.SUCCESS or not header_only:
                raise ValueError(f"a PCP response with opcode {self.opcode} can only be a bare "
                                 "error answer")
            return
        if self.data is None:
            if self.opcode != Opcode.ANNOUNCE and (self.result == PcpResult.SUCCESS
                                                   or self.options):
                raise ValueError(f"a PCP {Opcode(self.opcode).name} success response, or one "
                                 "with options, carries its opcode data")
        elif not _opdata_matches(self.opcode, self.data):
            raise ValueError(f"PCP opcode {self.opcode} does not take {type(self.data).__name__}")

    def encode(self) -> bytes:
        """The response as sent; raises :class:`ValueError` past 1100 octets."""
        packet = (struct.pack("!BBBBII", self.version, RESPONSE_BIT | self.opcode, 0,
                              self.result, self.lifetime, self.epoch)
                  + self.reserved
                  + (self.data.encode() if self.data is not None else b"")
                  + (_options().encode_options(self.options) if self.options else b""))
        if len(packet) > MAX_PACKET_SIZE:
            raise ValueError(f"PCP response of {len(packet)} octets exceeds {MAX_PACKET_SIZE}")
        return packet

    @property
    def unknown_mandatory_options(self) -> tuple[UnknownOption, ...]:
        """Options in the mandatory-to-process range (0-127) that this code does not know."""
        if not self.options:
            return ()
        unknown = _options().UnknownOption
        return tuple(o for o in self.options if isinstance(o, unknown) and o.mandatory)


def _size_problem(data: bytes, what: str) -> str | None:
    """Why ``data`` cannot be a PCP message by its length alone (§7, §8.2, §8.3), or None."""
    if len(data) < HEADER_SIZE:
        return (f"PCP {what} of {len(data)} octets is shorter than the {HEADER_SIZE}-octet "
                "header")
    if len(data) > MAX_PACKET_SIZE:
        return f"PCP {what} of {len(data)} octets exceeds {MAX_PACKET_SIZE}"
    if len(data) % 4:
        return f"PCP {what} of {len(data)} octets is not a multiple of 4"
    return None


def decode_response(data: bytes) -> Response:
    """Decode a response or ANNOUNCE from a gateway. Raises :class:`MalformedPacket`.

    §8.3: a response shorter than 24 octets, longer than 1100 or not a multiple
    of 4 is invalid. A version other than 2 is accepted only in an
    UNSUPP_VERSION answer, where it names the version the server speaks (§9);
    only its header is read. Options this code does not know are kept as
    :class:`UnknownOption`, whatever their range (§7.3: a client ignores them).
    """
    length = len(data)
    if length == _MAP_ANSWER.size:
        # The answer to every MAP (and its renewals and deletes), without options: read in
        # one unpack (issue 15). Anything else of this size goes through the checks below.
        (version, r_opcode, _, result, lifetime, epoch, reserved, nonce, protocol, internal,
         external, address) = _MAP_ANSWER.unpack(data)
        if version == PCP_VERSION and r_opcode == RESPONSE_BIT | Opcode.MAP:
            # Every field fits by its width (the struct format): nothing left to check.
            return decoded(Response, Opcode.MAP, result, lifetime, epoch,
                           decoded(MapData, nonce, protocol, internal, external,
                                   decode_address(address)), (), PCP_VERSION, reserved)
    if not (HEADER_SIZE <= length <= MAX_PACKET_SIZE and not length % 4):  # else say which
        raise MalformedPacket(_size_problem(data, "response") or "PCP response of bad size")
    version, r_opcode, _, result, lifetime, epoch = struct.unpack_from("!BBBBII", data)
    if not r_opcode & RESPONSE_BIT:
        raise MalformedPacket(f"PCP packet with opcode {r_opcode} has the response bit clear")
    opcode = r_opcode & ~RESPONSE_BIT
    reserved = bytes(data[12:HEADER_SIZE])
    if version != PCP_VERSION:
        if result != PcpResult.UNSUPP_VERSION:
            raise MalformedPacket(f"PCP response has version {version}, not {PCP_VERSION}")
        return Response(opcode, result, lifetime, epoch, version=version, reserved=reserved)
    size = _DATA_SIZE.get(opcode)
    if size is None:
        if result == PcpResult.SUCCESS:
            raise MalformedPacket(f"PCP response has unknown opcode {opcode}")
        # An UNSUPP_OPCODE (or other) answer to an opcode we do not know: its
        # data, if the server copied any, has no layout we could read.
        return Response(opcode, result, lifetime, epoch, reserved=reserved)
    body = data[HEADER_SIZE:]
    if len(body) < size:
        if result != PcpResult.SUCCESS and not body:
            # An error answer may carry the header alone (for example MALFORMED_REQUEST).
            return Response(opcode, result, lifetime, epoch, reserved=reserved)
        raise MalformedPacket(f"PCP {Opcode(opcode).name} response is missing its opcode data")
    # What Response's own checks would refuse was refused above, and the fields fit by width.
    return decoded(Response, opcode, result, lifetime, epoch,
                   _decode_opdata(opcode, body[:size]), _decode_options(body[size:]),
                   PCP_VERSION, reserved)


class RequestRejected(MalformedPacket):
    """A request a server must answer with an error code (the gateway's side).

    ``result`` is the code to answer with and ``opcode`` the request's opcode,
    which the answer copies (§7.2).
    """

    def __init__(self, message: str, result: PcpResult, opcode: int = 0) -> None:
        super().__init__(message)
        self.result = result
        self.opcode = opcode


def _options() -> ModuleType:
    """:mod:`.pcp_options`, imported on first use: a one-shot request builds none of its
    dataclasses (issue 15)."""
    from . import pcp_options

    return pcp_options


def _decode_options(data: bytes) -> tuple[Option, ...]:
    return _options().decode_options(data) if data else ()


_OPTION_NAMES = frozenset({"Filter", "Option", "OptionCode", "PreferFailure", "ThirdParty",
                           "UnknownOption", "decode_options", "encode_options", "option_code"})


def __getattr__(name: str) -> Any:
    # The re-exported option names (PEP 562), from their module on first use.
    if name in _OPTION_NAMES:
        value = getattr(_options(), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def decode_request(data: bytes) -> Request:
    """Decode a request (the gateway's side).

    Two kinds of failure, as §8.2 orders the checks:

    * :class:`MalformedPacket` itself: the server drops the packet silently
      (fewer than 2 octets, the R bit set, or version 2 but shorter than the
      24-octet header);
    * :class:`RequestRejected` (a subclass) carrying the result code the server
      answers with: UNSUPP_VERSION for a version other than 2; MALFORMED_REQUEST
      for a length past 1100 octets, not a multiple of 4 or too short for the
      opcode, and for PREFER_FAILURE in a PEER request (§12.1); UNSUPP_OPCODE;
      MALFORMED_OPTION for an option that overruns the packet, lacks its
      padding, has the wrong length or a bad value, or appears more often than
      allowed (§7.3, §7.4, §13).
    """
    if len(data) < 2:
        raise MalformedPacket(f"PCP request of {len(data)} octets is shorter than 2")
    if data[1] & RESPONSE_BIT:
        raise MalformedPacket("PCP request has the response bit set")
    opcode = data[1]
    if data[0] != PCP_VERSION:
        raise RequestRejected(f"PCP request version {data[0]}", PcpResult.UNSUPP_VERSION, opcode)
    if len(data) < HEADER_SIZE:
        raise MalformedPacket(f"PCP request of {len(data)} octets is shorter than the "
                              f"{HEADER_SIZE}-octet header")
    problem = _size_problem(data, "request")
    if problem is not None:
        raise RequestRejected(problem, PcpResult.MALFORMED_REQUEST, opcode)
    size = _DATA_SIZE.get(opcode)
    if size is None:
        raise RequestRejected(f"PCP opcode {opcode}", PcpResult.UNSUPP_OPCODE, opcode)
    (lifetime,) = struct.unpack_from("!I", data, 4)
    client = decode_address(data[8:HEADER_SIZE])
    body = data[HEADER_SIZE:]
    if len(body) < size:
        raise RequestRejected("PCP request is missing its opcode data",
                              PcpResult.MALFORMED_REQUEST, opcode)
    try:
        options = _decode_options(body[size:])
    except MalformedPacket as exc:
        raise RequestRejected(str(exc), PcpResult.MALFORMED_OPTION, opcode) from None
    kinds = _options()
    # At most once in a request (§13.1, §13.2: "Maximum occurrences: 1").
    for kind in (kinds.ThirdParty, kinds.PreferFailure):
        if sum(isinstance(option, kind) for option in options) > 1:
            raise RequestRejected(f"PCP request has more than one {kind.__name__} option",
                                  PcpResult.MALFORMED_OPTION, opcode)
    if opcode == Opcode.PEER and any(isinstance(option, kinds.PreferFailure)
                                     for option in options):
        raise RequestRejected("PREFER_FAILURE is not allowed in a PEER request",
                              PcpResult.MALFORMED_REQUEST, opcode)
    return Request(opcode, lifetime, client, _decode_opdata(opcode, body[:size]), options)


_ZERO4 = IPv4Address(0)
_ZERO6 = IPv6Address(0)


def zero_address(like: IPAddress) -> IPAddress:
    """The all-zeros address of the same family (§5: "no preference")."""
    return _ZERO4 if isinstance(like, IPv4Address) else _ZERO6
