"""The 128-bit address fields of PCP (RFC 6887 §5): IPv4 travels IPv4-mapped."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

__all__ = ["IPAddress", "decode_address", "encode_address", "to_address"]

IPAddress = IPv4Address | IPv6Address

_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def to_address(value: str | IPAddress) -> IPAddress:
    """Parse a string (or pass through an address object); a ``%scope`` suffix is kept."""
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    return ip_address(value)


#: Addresses encoded and decoded before, both ways: every request and answer names the same
#: few addresses (ours, the gateway's external one, the zero address), and ``ipaddress``
#: objects are immutable. Bounded: cleared when full, so a flood of distinct addresses
#: cannot grow them.
_DECODED: dict[bytes, IPAddress] = {}
_ENCODED: dict[IPAddress, bytes] = {}
_DECODED_MAX = 256
#: The address objects encoded last, and their octets (held, so that an identity check is
#: sound: a live object's id is never reused).
_RECENT: list[tuple[IPAddress, bytes]] = []
_RECENT_MAX = 4


def encode_address(address: IPAddress) -> bytes:
    """16 bytes: an IPv6 address as is, an IPv4 address IPv4-mapped (``::ffff:a.b.c.d``).

    The all-zeros IPv4 address becomes ``::ffff:0.0.0.0``, as RFC 6887 §5 requires.
    """
    for known, octets in _RECENT:
        # The same objects request after request (a client's own address, the zero address):
        # ipaddress hashes in Python, several times the cost of these identity checks.
        if known is address:
            return octets
    found = _ENCODED.get(address)
    if found is not None:
        _remember(address, found)
        return found
    packed = _V4_MAPPED_PREFIX + address.packed if isinstance(address, IPv4Address) \
        else address.packed
    if len(_ENCODED) >= _DECODED_MAX:
        _ENCODED.clear()
    _ENCODED[address] = packed
    _remember(address, packed)
    return packed


def _remember(address: IPAddress, octets: bytes) -> None:
    _RECENT.insert(0, (address, octets))
    del _RECENT[_RECENT_MAX:]


def decode_address(data: bytes) -> IPAddress:
    """The inverse of :func:`encode_address`.

    RFC 6887 §5: all of the first 96 bits are checked for the IPv4-mapped pattern.
    """
    key = bytes(data[:16])
    found = _DECODED.get(key)
    if found is not None:
        return found
    address: IPAddress = IPv4Address(key[12:16]) if key[:12] == _V4_MAPPED_PREFIX \
        else IPv6Address(key)
    if len(_DECODED) >= _DECODED_MAX:
        _DECODED.clear()
    _DECODED[key] = address
    return address
