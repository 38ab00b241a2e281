"""IP protocol numbers, the ``protocol`` of a mapping.

PCP carries any IANA protocol number (RFC 6887 §11.1, and 0 meaning "all
protocols"); NAT-PMP carries only UDP and TCP, as its opcodes 1 and 2
(RFC 6886 §3.3).
"""

from __future__ import annotations

import socket
from enum import IntEnum

__all__ = ["Protocol", "parse_protocol", "protocol_name"]


class Protocol(IntEnum):
    """Well-known IP protocol numbers; any other 0-255 value is accepted as an ``int``."""

    ALL = 0
    """Every protocol (PCP only, RFC 6887 §11.1: internal port and external port must be 0)."""
    ICMP = 1
    TCP = 6
    UDP = 17
    DCCP = 33
    ICMPV6 = 58
    SCTP = 132
    UDPLITE = 136


#: Protocols whose mappings have ports. For the others RFC 6887 §11.1 requires ports of zero.
PORTED_PROTOCOLS = frozenset({Protocol.TCP, Protocol.UDP, Protocol.DCCP, Protocol.SCTP,
                              Protocol.UDPLITE})


def as_protocol(value: int) -> Protocol | int:
    """Return the :class:`Protocol` member for ``value`` when there is one, else the int.

    Raises :class:`ValueError` outside 0-255, the width of the PCP protocol field.
    """
    if not 0 <= int(value) <= 255:
        raise ValueError(f"IP protocol number must be 0-255, not {value}")
    try:
        return Protocol(int(value))
    except ValueError:
        return int(value)


def protocol_name(value: int) -> str:
    """A short lower-case name for a protocol number: ``tcp``, ``udp``, ``proto-47``."""
    try:
        return Protocol(value).name.lower()
    except ValueError:
        return f"proto-{value}"


def parse_protocol(text: str) -> Protocol | int:
    """Parse ``tcp``, ``udp``, ``all``, a number (``47``) or a name from the system's
    protocol database (``gre``) into a protocol number.

    Raises :class:`ValueError` with a message a user can act on.
    """
    word = text.strip().lower()
    if not word:
        raise ValueError("empty protocol; use tcp, udp, a number 0-255 or a protocol name")
    # isascii(): str.isdigit() is also true of "²" and other digits int() refuses.
    if word.isascii() and word.isdigit():
        return as_protocol(int(word))
    if word.startswith("proto-") and word[6:].isascii() and word[6:].isdigit():
        return as_protocol(int(word[6:]))
    try:
        return Protocol[word.upper()]
    except KeyError:
        pass
    try:
        return as_protocol(socket.getprotobyname(word))
    except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate in the text
        raise ValueError(
            f"unknown protocol {text!r}; use tcp, udp, a number 0-255 or a protocol name"
        ) from None
