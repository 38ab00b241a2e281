"""IP protocol numbers (IANA "Assigned Internet Protocol Numbers")."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.protocols import (
    PORTED_PROTOCOLS,
    Protocol,
    as_protocol,
    parse_protocol,
    protocol_name,
)

# IANA protocol numbers, and 0 as PCP's "all protocols" (RFC 6887 §11.1).
IANA = {"ALL": 0, "ICMP": 1, "TCP": 6, "UDP": 17, "DCCP": 33, "ICMPV6": 58, "SCTP": 132,
        "UDPLITE": 136}


def test_members_are_the_iana_numbers() -> None:
    assert {member.name: member.value for member in Protocol} == IANA


def test_ported_protocols_have_16_bit_ports() -> None:
    assert {Protocol.TCP, Protocol.UDP, Protocol.DCCP, Protocol.SCTP, Protocol.UDPLITE} \
        == PORTED_PROTOCOLS
    assert Protocol.ALL not in PORTED_PROTOCOLS
    assert Protocol.ICMP not in PORTED_PROTOCOLS


@pytest.mark.parametrize(("text", "expected"), [
    ("tcp", Protocol.TCP),
    ("TCP", Protocol.TCP),
    ("  udp ", Protocol.UDP),
    ("all", Protocol.ALL),
    ("sctp", Protocol.SCTP),
    ("icmpv6", Protocol.ICMPV6),
    ("0", Protocol.ALL),
    ("6", Protocol.TCP),
    ("17", Protocol.UDP),
    ("47", 47),
    ("255", 255),
    ("proto-47", 47),
    ("proto-6", Protocol.TCP),
])
def test_parse_protocol(text: str, expected: int) -> None:
    parsed = parse_protocol(text)
    assert parsed == expected
    assert type(parsed) is type(expected)


def test_parse_protocol_from_system_database() -> None:
    try:
        gre = socket.getprotobyname("gre")
    except OSError:
        pytest.skip("no protocol database (/etc/protocols) on this machine")
    assert gre == 47
    assert parse_protocol("gre") == 47
    assert parse_protocol("GRE") == 47


@pytest.mark.parametrize("text", ["", "   ", "256", "1000", "-1", "proto-256", "proto-",
                                  "proto-x", "tcpp", "6.0", "²", "proto-²", "0x11",
                                  "no-such-protocol", "tcp\x00", "\ud800"])
def test_parse_protocol_refuses_with_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="protocol"):
        parse_protocol(text)


@pytest.mark.parametrize("value", [-1, 256, 1 << 16])
def test_as_protocol_range(value: int) -> None:
    with pytest.raises(ValueError, match="0-255"):
        as_protocol(value)


def test_as_protocol_returns_members_when_known() -> None:
    assert as_protocol(6) is Protocol.TCP
    assert as_protocol(47) == 47
    assert type(as_protocol(47)) is int


def test_names() -> None:
    assert protocol_name(6) == "tcp"
    assert protocol_name(Protocol.UDP) == "udp"
    assert protocol_name(0) == "all"
    assert protocol_name(99) == "proto-99"


@pytest.mark.parametrize(("number", "name"), [
    (47, "gre"), (50, "esp"), (51, "ah"), (132, "sctp"), (1, "icmp"), (58, "ipv6-icmp"),
    (136, "udplite"), (33, "dccp"),
])
def test_iana_names_are_shown_and_read_back(number: int, name: str) -> None:
    # Issue 17: gre was shown as "proto-47".
    assert protocol_name(number) == name
    assert parse_protocol(name) == number
    assert parse_protocol(name.upper()) == number


def test_name_round_trips_for_every_number() -> None:
    for number in range(256):
        assert parse_protocol(protocol_name(number)) == number


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_parse_protocol_any_text(text: str) -> None:
    # Anything a user types gives a protocol number 0-255 or a ValueError.
    try:
        value = parse_protocol(text)
    except ValueError as exc:
        message = str(exc)
    else:
        assert 0 <= value <= 255
        return
    assert "protocol" in message
