"""PCP options (RFC 6887 §7.3, §13): THIRD_PARTY, PREFER_FAILURE, FILTER and the ones natdeck
does not know, with their encoding and decoding. :mod:`engine.wire.pcp` re-exports every name,
importing this module on first use (most requests and answers carry no option).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address

from ..errors import MalformedPacket
from .addresses import IPAddress, decode_address, encode_address
from .bits import check_bits

__all__ = [
    "Filter",
    "Option",
    "OptionCode",
    "PreferFailure",
    "ThirdParty",
    "UnknownOption",
    "check_bits",
    "decode_options",
    "encode_options",
    "option_code",
]


class OptionCode(IntEnum):
    """PCP option codes (RFC 6887 §13); 0-127 are mandatory to process."""

    THIRD_PARTY = 1
    PREFER_FAILURE = 2
    FILTER = 3




@dataclass(frozen=True, slots=True)
class ThirdParty:
    """THIRD_PARTY (§13.1): the mapping is for ``address``, not the sender."""

    address: IPAddress

    def _data(self) -> bytes:
        return encode_address(self.address)


@dataclass(frozen=True, slots=True)
class PreferFailure:
    """PREFER_FAILURE (§13.2): fail rather than assign another external port/address."""

    def _data(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class Filter:
    """FILTER (§13.3): let in only packets from ``remote_address``/``prefix_length``.

    ``prefix_length`` counts bits of the address's own family (0-32 for IPv4,
    0-128 for IPv6); 0 means "no filter" and removes earlier filters.
    ``remote_port`` 0 means all ports.
    """

    prefix_length: int
    remote_port: int
    remote_address: IPAddress

    def __post_init__(self) -> None:
        limit = 32 if isinstance(self.remote_address, IPv4Address) else 128
        if not 0 <= self.prefix_length <= limit:
            raise ValueError(f"FILTER prefix length must be 0-{limit}, not {self.prefix_length}")
        check_bits("FILTER remote port", self.remote_port, 16)

    def _data(self) -> bytes:
        return (struct.pack("!BBH", 0, self.prefix_length, self.remote_port)
                + encode_address(self.remote_address))


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """An option this code does not know; kept so a caller can see it."""

    code: int
    data: bytes = b""

    def __post_init__(self) -> None:
        check_bits("option code", self.code, 8)
        # The Option Length field is 16 bits (§7.3).
        if len(self.data) > 0xFFFF:
            raise ValueError(f"PCP option data of {len(self.data)} octets exceeds 65535")

    @property
    def mandatory(self) -> bool:
        """Codes 0-127 are mandatory to process (RFC 6887 §7.3)."""
        return self.code < 128

    def _data(self) -> bytes:
        return self.data


Option = ThirdParty | PreferFailure | Filter | UnknownOption


def option_code(option: Option) -> int:
    """The wire code of an option."""
    if isinstance(option, ThirdParty):
        return OptionCode.THIRD_PARTY
    if isinstance(option, PreferFailure):
        return OptionCode.PREFER_FAILURE
    if isinstance(option, Filter):
        return OptionCode.FILTER
    return option.code


def encode_options(options: tuple[Option, ...]) -> bytes:
    """Options, each padded to a multiple of 4 octets (§7.3)."""
    parts = []
    for option in options:
        data = option._data()
        pad = -len(data) % 4
        parts.append(struct.pack("!BBH", option_code(option), 0, len(data)) + data + bytes(pad))
    return b"".join(parts)


_FIXED_OPTION_SIZE = {OptionCode.THIRD_PARTY: 16, OptionCode.PREFER_FAILURE: 0,
                      OptionCode.FILTER: 20}


def decode_options(data: bytes) -> tuple[Option, ...]:
    """Parse the option area. Raises :class:`MalformedPacket` on overrun or bad sizes."""
    if not data:
        return ()
    options: list[Option] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise MalformedPacket("PCP option header runs past the end of the packet")
        code, _, length = struct.unpack_from("!BBH", data, offset)
        offset += 4
        end = offset + length
        if end > len(data):
            raise MalformedPacket(f"PCP option {code} of {length} bytes runs past the packet")
        body = data[offset:end]
        offset = end + (-length % 4)
        if offset > len(data):
            raise MalformedPacket(f"PCP option {code} is missing its padding")
        expected = _FIXED_OPTION_SIZE.get(code)
        if expected is not None and length != expected:
            raise MalformedPacket(f"PCP option {code} has length {length}, not {expected}")
        if code == OptionCode.THIRD_PARTY:
            options.append(ThirdParty(decode_address(body)))
        elif code == OptionCode.PREFER_FAILURE:
            options.append(PreferFailure())
        elif code == OptionCode.FILTER:
            remote = decode_address(body[4:20])
            try:
                options.append(Filter(body[1], struct.unpack_from("!H", body, 2)[0], remote))
            except ValueError as exc:
                raise MalformedPacket(f"PCP FILTER option: {exc}") from None
        else:
            options.append(UnknownOption(code, bytes(body)))
    return tuple(options)
