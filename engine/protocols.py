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


_MEMBERS: dict[int, Protocol] = {member.value: member for member in Protocol}


def as_protocol(value: int) -> Protocol | int:
    """Return the :class:`Protocol` member for ``value`` when there is one, else the int.

    Raises :class:`ValueError` outside 0-255, the width of the PCP protocol field.
    """
    number = int(value)
    if not 0 <= number <= 255:
        raise ValueError(f"IP protocol number must be 0-255, not {value}")
    # A dict look-up, not Protocol(number): the enum's call costs several times more, on
    # every request (issue 15).
    return _MEMBERS.get(number, number)


#: IANA's keywords ("Assigned Internet Protocol Numbers", lower-cased) for the protocols a
#: mapping may name; 0 is PCP's "all protocols" (RFC 6887 §11.1), not IANA's HOPOPT.
IANA_NAMES: dict[int, str] = {
    0: "all", 1: "icmp", 2: "igmp", 4: "ipv4", 6: "tcp", 8: "egp", 17: "udp", 27: "rdp",
    33: "dccp", 41: "ipv6", 46: "rsvp", 47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp",
    88: "eigrp", 89: "ospf", 94: "ipip", 103: "pim", 108: "ipcomp", 112: "vrrp", 115: "l2tp",
    132: "sctp", 136: "udplite", 137: "mpls-in-ip", 143: "ethernet",
}
_BY_NAME: dict[str, int] = {name: number for number, name in IANA_NAMES.items()}
#: Other spellings people type.
_BY_NAME.update({"icmpv6": 58, "ipv6icmp": 58, "udp-lite": 136, "ospfigp": 89, "ip-in-ip": 4})


def protocol_name(value: int) -> str:
    """A short lower-case name for a protocol number: IANA's keyword (``tcp``, ``gre``,
    ``ipv6-icmp``), else ``proto-N``."""
    number = int(value)
    name = IANA_NAMES.get(number)  # the fallback's text built only when it is the answer
    return name if name is not None else f"proto-{number}"


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
    if word in _BY_NAME:
        return as_protocol(_BY_NAME[word])
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
