"""PCP wire format (RFC 6887): byte-exact vectors, options, validation.

Every vector was written out by hand from the packet diagrams of RFC 6887
(§7.1 request header, §7.2 response header, §7.3 options, §11.1 MAP, §12.1
PEER, §13.1-§13.3 THIRD_PARTY, PREFER_FAILURE, FILTER, §14.1 ANNOUNCE), one
field per line, not produced by our encoder. Each is checked both ways.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from engine.codes import PcpResult
from engine.errors import MalformedPacket
from engine.protocols import Protocol
from engine.wire import pcp
from engine.wire.pcp import (
    Filter,
    MapData,
    Opcode,
    PeerData,
    PreferFailure,
    Request,
    RequestRejected,
    Response,
    ThirdParty,
    UnknownOption,
    decode_request,
    decode_response,
)

NONCE = bytes.fromhex("0102030405060708090a0b0c")
NONCE_HEX = "0102030405060708090a0b0c"  # Mapping Nonce (96 bits)

CLIENT_V4 = IPv4Address("192.0.2.33")
CLIENT_V4_HEX = "00000000000000000000ffffc0000221"  # ::ffff:192.0.2.33 (§5: IPv4-mapped)
CLIENT_V6 = IPv6Address("2001:db8::1")
CLIENT_V6_HEX = "20010db8000000000000000000000001"  # 2001:db8::1 as is
ZERO_V4_HEX = "00000000000000000000ffff00000000"  # ::ffff:0.0.0.0, the IPv4 "no preference"
ZERO_V6_HEX = "00000000000000000000000000000000"  # ::, the IPv6 "no preference"
EXTERNAL_V4 = IPv4Address("203.0.113.7")
EXTERNAL_V4_HEX = "00000000000000000000ffffcb007107"  # ::ffff:203.0.113.7
EXTERNAL_V6 = IPv6Address("2001:db8:ffff::7")
EXTERNAL_V6_HEX = "20010db8ffff00000000000000000007"  # 2001:db8:ffff::7
REMOTE_V4 = IPv4Address("198.51.100.10")
REMOTE_V4_HEX = "00000000000000000000ffffc633640a"  # ::ffff:198.51.100.10
REMOTE_V6 = IPv6Address("2001:db8:5::80")
REMOTE_V6_HEX = "20010db8000500000000000000000080"  # 2001:db8:5::80


def wire(*fields: str) -> bytes:
    """Join hex fields (spaces allowed) into bytes."""
    return bytes.fromhex("".join(fields))


# --- §11.1 MAP --------------------------------------------------------------------------

MAP_REQUEST_V4 = wire(
    "02",  # Version = 2
    "01",  # R = 0 (request), Opcode = 1 (MAP)
    "0000",  # Reserved (16 bits)
    "00001c20",  # Requested Lifetime 7200 s
    CLIENT_V4_HEX,  # PCP Client's IP Address (128 bits)
    NONCE_HEX,  # Mapping Nonce (96 bits)
    "06",  # Protocol 6 (TCP)
    "000000",  # Reserved (24 bits)
    "1f90",  # Internal Port 8080
    "1f90",  # Suggested External Port 8080
    ZERO_V4_HEX,  # Suggested External IP Address: IPv4 all-zeros, no preference
)
MAP_REQUEST_V4_MESSAGE = Request(
    Opcode.MAP, 7200, CLIENT_V4, MapData(NONCE, Protocol.TCP, 8080, 8080, IPv4Address(0)))

MAP_REQUEST_V6 = wire(
    "02",  # Version = 2
    "01",  # R = 0, Opcode = 1 (MAP)
    "0000",  # Reserved
    "00000e10",  # Requested Lifetime 3600 s
    CLIENT_V6_HEX,  # PCP Client's IP Address 2001:db8::1
    NONCE_HEX,  # Mapping Nonce
    "11",  # Protocol 17 (UDP)
    "000000",  # Reserved
    "0035",  # Internal Port 53
    "0000",  # Suggested External Port 0: no preference
    ZERO_V6_HEX,  # Suggested External IP Address ::
)
MAP_REQUEST_V6_MESSAGE = Request(
    Opcode.MAP, 3600, CLIENT_V6, MapData(NONCE, Protocol.UDP, 53, 0, IPv6Address(0)))

MAP_DELETE_ALL_REQUEST = wire(
    "02",  # Version = 2
    "01",  # Opcode = 1 (MAP)
    "0000",  # Reserved
    "00000000",  # Requested Lifetime 0: delete
    CLIENT_V4_HEX,  # PCP Client's IP Address
    NONCE_HEX,  # Mapping Nonce
    "00",  # Protocol 0: all protocols
    "000000",  # Reserved
    "0000",  # Internal Port 0: all ports
    "0000",  # Suggested External Port 0
    ZERO_V4_HEX,  # Suggested External IP Address
)
MAP_DELETE_ALL_MESSAGE = Request(
    Opcode.MAP, 0, CLIENT_V4, MapData(NONCE, Protocol.ALL, 0, 0, IPv4Address(0)))

MAP_RESPONSE_V4 = wire(
    "02",  # Version = 2
    "81",  # R = 1 (response), Opcode = 1 (MAP)
    "00",  # Reserved (8 bits)
    "00",  # Result Code 0 (SUCCESS)
    "00001c20",  # Lifetime 7200 s granted
    "0000012c",  # Epoch Time 300
    "000000000000000000000000",  # Reserved (96 bits)
    NONCE_HEX,  # Mapping Nonce, copied from the request
    "06",  # Protocol 6
    "000000",  # Reserved
    "1f90",  # Internal Port 8080
    "c350",  # Assigned External Port 50000
    EXTERNAL_V4_HEX,  # Assigned External IP Address 203.0.113.7
)
MAP_RESPONSE_V4_MESSAGE = Response(
    Opcode.MAP, PcpResult.SUCCESS, 7200, 300,
    MapData(NONCE, Protocol.TCP, 8080, 50000, EXTERNAL_V4))

MAP_RESPONSE_V6 = wire(
    "02",  # Version = 2
    "81",  # R = 1, Opcode = 1 (MAP)
    "00",  # Reserved
    "00",  # Result Code 0
    "00000e10",  # Lifetime 3600 s
    "ffffffff",  # Epoch Time 2^32-1
    "000000000000000000000000",  # Reserved (96 bits)
    NONCE_HEX,  # Mapping Nonce
    "11",  # Protocol 17
    "000000",  # Reserved
    "0035",  # Internal Port 53
    "0035",  # Assigned External Port 53 (a firewall: no translation)
    EXTERNAL_V6_HEX,  # Assigned External IP Address 2001:db8:ffff::7
)
MAP_RESPONSE_V6_MESSAGE = Response(
    Opcode.MAP, PcpResult.SUCCESS, 3600, 0xFFFFFFFF,
    MapData(NONCE, Protocol.UDP, 53, 53, EXTERNAL_V6))

MAP_RESPONSE_NO_RESOURCES = wire(
    "02",  # Version = 2
    "81",  # R = 1, Opcode = 1 (MAP)
    "00",  # Reserved
    "08",  # Result Code 8 (NO_RESOURCES)
    "0000001e",  # Lifetime: the error lifetime, 30 s (a short-lifetime error)
    "0000012d",  # Epoch Time 301
    "000000000000000000000000",  # Reserved
    NONCE_HEX,  # Mapping Nonce
    "06",  # Protocol 6
    "000000",  # Reserved
    "1f90",  # Internal Port 8080
    "0000",  # Assigned External Port: none
    ZERO_V4_HEX,  # Assigned External IP Address: none
)
MAP_RESPONSE_NO_RESOURCES_MESSAGE = Response(
    Opcode.MAP, PcpResult.NO_RESOURCES, 30, 301,
    MapData(NONCE, Protocol.TCP, 8080, 0, IPv4Address(0)))

MALFORMED_REQUEST_RESPONSE = wire(
    "02",  # Version = 2
    "81",  # R = 1, Opcode = 1 (MAP), copied from the request
    "00",  # Reserved
    "03",  # Result Code 3 (MALFORMED_REQUEST)
    "00000708",  # Lifetime: error lifetime 1800 s (long-lifetime error)
    "0000012e",  # Epoch Time 302
    "00000000" "0000ffff" "c0000221",  # Reserved: the request's client address, last 96 bits
)
MALFORMED_REQUEST_RESPONSE_MESSAGE = Response(
    Opcode.MAP, PcpResult.MALFORMED_REQUEST, 1800, 302,
    reserved=bytes.fromhex("000000000000ffffc0000221"))

UNSUPP_VERSION_RESPONSE = wire(
    "01",  # Version = 1: the version this server speaks (§9)
    "81",  # R = 1, Opcode = 1
    "00",  # Reserved
    "01",  # Result Code 1 (UNSUPP_VERSION)
    "00000708",  # Lifetime 1800
    "00000010",  # Epoch Time 16
    "000000000000000000000000",  # Reserved
)
UNSUPP_VERSION_RESPONSE_MESSAGE = Response(
    Opcode.MAP, PcpResult.UNSUPP_VERSION, 1800, 16, version=1)

UNSUPP_OPCODE_RESPONSE = wire(
    "02",  # Version = 2
    "85",  # R = 1, Opcode = 5: not one we know, echoed by the server
    "00",  # Reserved
    "04",  # Result Code 4 (UNSUPP_OPCODE)
    "00000708",  # Lifetime 1800
    "00000011",  # Epoch Time 17
    "000000000000000000000000",  # Reserved
)
UNSUPP_OPCODE_RESPONSE_MESSAGE = Response(5, PcpResult.UNSUPP_OPCODE, 1800, 17)

# --- §12.1 PEER -------------------------------------------------------------------------

PEER_REQUEST_V4 = wire(
    "02",  # Version = 2
    "02",  # R = 0, Opcode = 2 (PEER)
    "0000",  # Reserved
    "00000078",  # Requested Lifetime 120 s
    CLIENT_V4_HEX,  # PCP Client's IP Address
    NONCE_HEX,  # Mapping Nonce
    "06",  # Protocol 6 (TCP)
    "000000",  # Reserved (24 bits)
    "d431",  # Internal Port 54321
    "0000",  # Suggested External Port 0
    ZERO_V4_HEX,  # Suggested External IP Address: IPv4 all-zeros
    "01bb",  # Remote Peer Port 443
    "0000",  # Reserved (16 bits)
    REMOTE_V4_HEX,  # Remote Peer IP Address 198.51.100.10
)
PEER_REQUEST_V4_MESSAGE = Request(
    Opcode.PEER, 120, CLIENT_V4,
    PeerData(NONCE, Protocol.TCP, 54321, 0, IPv4Address(0), 443, REMOTE_V4))

PEER_REQUEST_V6 = wire(
    "02",  # Version = 2
    "02",  # Opcode = 2 (PEER)
    "0000",  # Reserved
    "0000003c",  # Requested Lifetime 60 s
    CLIENT_V6_HEX,  # PCP Client's IP Address 2001:db8::1
    NONCE_HEX,  # Mapping Nonce
    "11",  # Protocol 17 (UDP)
    "000000",  # Reserved
    "1194",  # Internal Port 4500
    "1194",  # Suggested External Port 4500: re-creating a lost mapping
    EXTERNAL_V6_HEX,  # Suggested External IP Address 2001:db8:ffff::7
    "1194",  # Remote Peer Port 4500
    "0000",  # Reserved
    REMOTE_V6_HEX,  # Remote Peer IP Address 2001:db8:5::80
)
PEER_REQUEST_V6_MESSAGE = Request(
    Opcode.PEER, 60, CLIENT_V6,
    PeerData(NONCE, Protocol.UDP, 4500, 4500, EXTERNAL_V6, 4500, REMOTE_V6))

PEER_RESPONSE_V4 = wire(
    "02",  # Version = 2
    "82",  # R = 1, Opcode = 2 (PEER)
    "00",  # Reserved
    "00",  # Result Code 0
    "00000078",  # Lifetime 120 s
    "0000012c",  # Epoch Time 300
    "000000000000000000000000",  # Reserved (96 bits)
    NONCE_HEX,  # Mapping Nonce
    "06",  # Protocol 6
    "000000",  # Reserved
    "d431",  # Internal Port 54321
    "c351",  # Assigned External Port 50001
    EXTERNAL_V4_HEX,  # Assigned External IP Address 203.0.113.7
    "01bb",  # Remote Peer Port 443
    "0000",  # Reserved
    REMOTE_V4_HEX,  # Remote Peer IP Address
)
PEER_RESPONSE_V4_MESSAGE = Response(
    Opcode.PEER, PcpResult.SUCCESS, 120, 300,
    PeerData(NONCE, Protocol.TCP, 54321, 50001, EXTERNAL_V4, 443, REMOTE_V4))

PEER_RESPONSE_CANNOT_PROVIDE = wire(
    "02",  # Version = 2
    "82",  # R = 1, Opcode = 2 (PEER)
    "00",  # Reserved
    "0b",  # Result Code 11 (CANNOT_PROVIDE_EXTERNAL)
    "0000001e",  # Lifetime: error lifetime 30 s
    "0000012c",  # Epoch Time 300
    "000000000000000000000000",  # Reserved
    NONCE_HEX,  # Mapping Nonce
    "11",  # Protocol 17
    "000000",  # Reserved
    "1194",  # Internal Port 4500
    "0000",  # Assigned External Port: none
    ZERO_V6_HEX,  # Assigned External IP Address: none
    "1194",  # Remote Peer Port 4500
    "0000",  # Reserved
    REMOTE_V6_HEX,  # Remote Peer IP Address
)
PEER_RESPONSE_CANNOT_PROVIDE_MESSAGE = Response(
    Opcode.PEER, PcpResult.CANNOT_PROVIDE_EXTERNAL, 30, 300,
    PeerData(NONCE, Protocol.UDP, 4500, 0, IPv6Address(0), 4500, REMOTE_V6))

# --- §14.1 ANNOUNCE ---------------------------------------------------------------------

ANNOUNCE_REQUEST = wire(
    "02",  # Version = 2
    "00",  # R = 0, Opcode = 0 (ANNOUNCE)
    "0000",  # Reserved
    "00000000",  # Requested Lifetime 0 (§14.1: MUST be zero)
    CLIENT_V6_HEX,  # PCP Client's IP Address; ANNOUNCE has no opcode data
)
ANNOUNCE_REQUEST_MESSAGE = Request(Opcode.ANNOUNCE, 0, CLIENT_V6)

ANNOUNCE_RESPONSE = wire(
    "02",  # Version = 2
    "80",  # R = 1, Opcode = 0 (ANNOUNCE)
    "00",  # Reserved
    "00",  # Result Code 0
    "00000000",  # Lifetime 0
    "00000000",  # Epoch Time 0: the server just lost its state (§14.1.3 unsolicited)
    "000000000000000000000000",  # Reserved
)
ANNOUNCE_RESPONSE_MESSAGE = Response(Opcode.ANNOUNCE, PcpResult.SUCCESS, 0, 0)

# --- §7.3 / §13 options -----------------------------------------------------------------

THIRD_PARTY_V4_HEX = (
    "01"  # Option Code 1 (THIRD_PARTY)
    "00"  # Reserved
    "0010"  # Option Length 16
    "00000000000000000000ffffc0000263"  # Internal IP Address ::ffff:192.0.2.99
)
THIRD_PARTY_V6_HEX = (
    "01"  # Option Code 1 (THIRD_PARTY)
    "00"  # Reserved
    "0010"  # Option Length 16
    "20010db8000000000000000000000063"  # Internal IP Address 2001:db8::63
)
PREFER_FAILURE_HEX = (
    "02"  # Option Code 2 (PREFER_FAILURE)
    "00"  # Reserved
    "0000"  # Option Length 0: no data
)
FILTER_V4_HEX = (
    "03"  # Option Code 3 (FILTER)
    "00"  # Reserved
    "0014"  # Option Length 20
    "00"  # Reserved
    "20"  # Prefix Length 32: this one address
    "0050"  # Remote Peer Port 80
    + REMOTE_V4_HEX  # Remote Peer IP Address 198.51.100.10
)
FILTER_V4_NET_HEX = (
    "03"  # Option Code 3 (FILTER)
    "00"  # Reserved
    "0014"  # Option Length 20
    "00"  # Reserved
    "18"  # Prefix Length 24: 198.51.100.0/24
    "0000"  # Remote Peer Port 0: all ports
    "00000000000000000000ffffc6336400"  # Remote Peer IP Address 198.51.100.0
)
FILTER_V6_HEX = (
    "03"  # Option Code 3 (FILTER)
    "00"  # Reserved
    "0014"  # Option Length 20
    "00"  # Reserved
    "30"  # Prefix Length 48
    "01bb"  # Remote Peer Port 443
    "20010db8000500000000000000000000"  # Remote Peer IP Address 2001:db8:5::
)
FILTER_NONE_HEX = (
    "03"  # Option Code 3 (FILTER)
    "00"  # Reserved
    "0014"  # Option Length 20
    "00"  # Reserved
    "00"  # Prefix Length 0: "no filter", removes earlier filters
    "0000"  # Remote Peer Port 0
    + ZERO_V6_HEX  # Remote Peer IP Address ::
)
UNKNOWN_OPTIONAL_HEX = (
    "c8"  # Option Code 200: optional to process (top bit set)
    "00"  # Reserved
    "0003"  # Option Length 3
    "616263"  # Data "abc"
    "00"  # one octet of padding to a multiple of 4
)
UNKNOWN_MANDATORY_HEX = (
    "60"  # Option Code 96: mandatory to process (top bit clear), not one we know
    "00"  # Reserved
    "0005"  # Option Length 5
    "0102030405"  # Data
    "000000"  # three octets of padding
)

MAP_REQUEST_OPTIONS = wire(
    MAP_REQUEST_V4.hex(),  # the MAP request above, then its options:
    THIRD_PARTY_V4_HEX,
    PREFER_FAILURE_HEX,
    FILTER_V4_HEX,
    FILTER_V4_NET_HEX,
    FILTER_V6_HEX,
    FILTER_NONE_HEX,
    UNKNOWN_OPTIONAL_HEX,
    UNKNOWN_MANDATORY_HEX,
)
MAP_REQUEST_OPTIONS_MESSAGE = Request(
    Opcode.MAP, 7200, CLIENT_V4, MapData(NONCE, Protocol.TCP, 8080, 8080, IPv4Address(0)),
    (ThirdParty(IPv4Address("192.0.2.99")),
     PreferFailure(),
     Filter(32, 80, REMOTE_V4),
     Filter(24, 0, IPv4Address("198.51.100.0")),
     Filter(48, 443, IPv6Address("2001:db8:5::")),
     Filter(0, 0, IPv6Address(0)),
     UnknownOption(200, b"abc"),
     UnknownOption(96, bytes.fromhex("0102030405"))))

PEER_REQUEST_THIRD_PARTY = wire(PEER_REQUEST_V6.hex(), THIRD_PARTY_V6_HEX)
PEER_REQUEST_THIRD_PARTY_MESSAGE = Request(
    Opcode.PEER, 60, CLIENT_V6, PEER_REQUEST_V6_MESSAGE.data,
    (ThirdParty(IPv6Address("2001:db8::63")),))

MAP_RESPONSE_OPTIONS = wire(
    MAP_RESPONSE_V4.hex(),  # the MAP response above, echoing the options it honoured:
    THIRD_PARTY_V4_HEX,
    PREFER_FAILURE_HEX,
    FILTER_V4_HEX,
    UNKNOWN_MANDATORY_HEX,  # a response may carry options a client does not know (§7.3)
)
MAP_RESPONSE_OPTIONS_MESSAGE = Response(
    Opcode.MAP, PcpResult.SUCCESS, 7200, 300, MAP_RESPONSE_V4_MESSAGE.data,
    (ThirdParty(IPv4Address("192.0.2.99")), PreferFailure(), Filter(32, 80, REMOTE_V4),
     UnknownOption(96, bytes.fromhex("0102030405"))))

ANNOUNCE_RESPONSE_OPTION = wire(ANNOUNCE_RESPONSE.hex(), UNKNOWN_OPTIONAL_HEX)
ANNOUNCE_RESPONSE_OPTION_MESSAGE = Response(
    Opcode.ANNOUNCE, PcpResult.SUCCESS, 0, 0, None, (UnknownOption(200, b"abc"),))

REQUEST_VECTORS = [
    pytest.param(MAP_REQUEST_V4, MAP_REQUEST_V4_MESSAGE, id="map-v4"),
    pytest.param(MAP_REQUEST_V6, MAP_REQUEST_V6_MESSAGE, id="map-v6"),
    pytest.param(MAP_DELETE_ALL_REQUEST, MAP_DELETE_ALL_MESSAGE, id="map-delete-all"),
    pytest.param(PEER_REQUEST_V4, PEER_REQUEST_V4_MESSAGE, id="peer-v4"),
    pytest.param(PEER_REQUEST_V6, PEER_REQUEST_V6_MESSAGE, id="peer-v6"),
    pytest.param(ANNOUNCE_REQUEST, ANNOUNCE_REQUEST_MESSAGE, id="announce"),
    pytest.param(MAP_REQUEST_OPTIONS, MAP_REQUEST_OPTIONS_MESSAGE, id="map-all-options"),
    pytest.param(PEER_REQUEST_THIRD_PARTY, PEER_REQUEST_THIRD_PARTY_MESSAGE,
                 id="peer-third-party"),
]

RESPONSE_VECTORS = [
    pytest.param(MAP_RESPONSE_V4, MAP_RESPONSE_V4_MESSAGE, id="map-v4"),
    pytest.param(MAP_RESPONSE_V6, MAP_RESPONSE_V6_MESSAGE, id="map-v6"),
    pytest.param(MAP_RESPONSE_NO_RESOURCES, MAP_RESPONSE_NO_RESOURCES_MESSAGE,
                 id="map-no-resources"),
    pytest.param(MALFORMED_REQUEST_RESPONSE, MALFORMED_REQUEST_RESPONSE_MESSAGE,
                 id="header-only-malformed-request"),
    pytest.param(UNSUPP_VERSION_RESPONSE, UNSUPP_VERSION_RESPONSE_MESSAGE,
                 id="unsupp-version-v1"),
    pytest.param(UNSUPP_OPCODE_RESPONSE, UNSUPP_OPCODE_RESPONSE_MESSAGE, id="unsupp-opcode"),
    pytest.param(PEER_RESPONSE_V4, PEER_RESPONSE_V4_MESSAGE, id="peer-v4"),
    pytest.param(PEER_RESPONSE_CANNOT_PROVIDE, PEER_RESPONSE_CANNOT_PROVIDE_MESSAGE,
                 id="peer-cannot-provide-v6"),
    pytest.param(ANNOUNCE_RESPONSE, ANNOUNCE_RESPONSE_MESSAGE, id="announce"),
    pytest.param(MAP_RESPONSE_OPTIONS, MAP_RESPONSE_OPTIONS_MESSAGE, id="map-options"),
    pytest.param(ANNOUNCE_RESPONSE_OPTION, ANNOUNCE_RESPONSE_OPTION_MESSAGE,
                 id="announce-unknown-option"),
]


def test_vector_sizes_follow_the_rfc() -> None:
    # Header 24 octets (§7.1, §7.2), MAP data 36 (§11.1), PEER data 56 (§12.1),
    # THIRD_PARTY 4+16, PREFER_FAILURE 4+0, FILTER 4+20 (§13).
    assert len(ANNOUNCE_REQUEST) == len(ANNOUNCE_RESPONSE) == 24
    assert len(MAP_REQUEST_V4) == len(MAP_RESPONSE_V4) == 60
    assert len(PEER_REQUEST_V4) == len(PEER_RESPONSE_V4) == 80
    assert len(MAP_REQUEST_OPTIONS) == 60 + 20 + 4 + 4 * 24 + 8 + 12


@pytest.mark.parametrize(("data", "message"), REQUEST_VECTORS)
def test_request_vector_decodes(data: bytes, message: Request) -> None:
    assert decode_request(data) == message


@pytest.mark.parametrize(("data", "message"), REQUEST_VECTORS)
def test_request_vector_encodes(data: bytes, message: Request) -> None:
    assert message.encode() == data


@pytest.mark.parametrize(("data", "message"), RESPONSE_VECTORS)
def test_response_vector_decodes(data: bytes, message: Response) -> None:
    assert decode_response(data) == message


@pytest.mark.parametrize(("data", "message"), RESPONSE_VECTORS)
def test_response_vector_encodes(data: bytes, message: Response) -> None:
    assert message.encode() == data


def test_addresses_decode_to_their_family() -> None:
    # §5: the IPv4-mapped prefix means IPv4; anything else is IPv6.
    request = decode_request(MAP_REQUEST_V4)
    assert isinstance(request.client_address, IPv4Address)
    assert isinstance(request.data, MapData)
    assert request.data.external_address == IPv4Address("0.0.0.0")
    request = decode_request(MAP_REQUEST_V6)
    assert isinstance(request.client_address, IPv6Address)
    assert isinstance(request.data, MapData)
    assert request.data.external_address == IPv6Address("::")


def test_ipv4_compatible_address_is_not_ipv4_mapped() -> None:
    # §5: all of the first 96 bits are checked; ::c000:221 (IPv4-compatible, deprecated) and
    # ::1:ffff:c000:221 are IPv6.
    for text, hex_address in (("::c000:221", "000000000000000000000000c0000221"),
                              ("::1:ffff:c000:221", "00000000000000000001ffffc0000221")):
        data = MAP_REQUEST_V4[:8] + bytes.fromhex(hex_address) + MAP_REQUEST_V4[24:]
        assert decode_request(data).client_address == IPv6Address(text)


def test_reserved_fields_are_ignored_in_requests() -> None:
    # §7.1 and §11.1: reserved bits MUST be ignored on reception.
    data = bytearray(MAP_REQUEST_V4)
    data[2:4] = b"\xff\xff"  # header Reserved
    data[24 + 13:24 + 16] = b"\xff\xff\xff"  # MAP Reserved (24 bits)
    assert decode_request(bytes(data)) == MAP_REQUEST_V4_MESSAGE
    data = bytearray(PEER_REQUEST_V4)
    data[24 + 38:24 + 40] = b"\xff\xff"  # PEER Reserved (16 bits) after the remote port
    assert decode_request(bytes(data)) == PEER_REQUEST_V4_MESSAGE


def test_reserved_fields_are_ignored_in_options() -> None:
    # §7.3 option Reserved and §13.3 FILTER Reserved are ignored; padding content too.
    data = bytearray(MAP_REQUEST_OPTIONS)
    data[61] = 0xFF  # THIRD_PARTY's Reserved octet
    filter_at = 60 + 20 + 4
    data[filter_at + 1] = 0xFF  # FILTER option header Reserved
    data[filter_at + 4] = 0xFF  # FILTER's own Reserved octet
    assert decode_request(bytes(data)) == MAP_REQUEST_OPTIONS_MESSAGE


def test_response_header_reserved_octet_is_ignored() -> None:
    data = bytearray(MAP_RESPONSE_V4)
    data[2] = 0xFF
    assert decode_response(bytes(data)) == MAP_RESPONSE_V4_MESSAGE


@pytest.mark.parametrize(("length", "padding"), [(0, 0), (1, 3), (2, 2), (3, 1), (4, 0), (5, 3)])
def test_unknown_option_padding(length: int, padding: int) -> None:
    # §7.3: data not a multiple of 4 is followed by 1-3 zero octets; the length excludes them.
    option = UnknownOption(0xF0, bytes(range(1, length + 1)))
    message = Response(Opcode.ANNOUNCE, 0, 0, 0, None, (option,))
    expected = ANNOUNCE_RESPONSE + bytes([0xF0, 0, 0, length]) + bytes(range(1, length + 1)) \
        + bytes(padding)
    assert message.encode() == expected
    assert decode_response(expected) == message


def test_mandatory_range_of_unknown_options() -> None:
    # §7.3: the most significant bit of the option code says optional (1) or mandatory (0).
    assert UnknownOption(0).mandatory
    assert UnknownOption(127).mandatory
    assert not UnknownOption(128).mandatory
    assert not UnknownOption(255).mandatory
    response = decode_response(MAP_RESPONSE_OPTIONS)
    assert response.unknown_mandatory_options == (UnknownOption(96, bytes.fromhex("0102030405")),)
    assert decode_response(ANNOUNCE_RESPONSE_OPTION).unknown_mandatory_options == ()


def test_option_codes() -> None:
    assert pcp.option_code(ThirdParty(CLIENT_V4)) == 1
    assert pcp.option_code(PreferFailure()) == 2
    assert pcp.option_code(Filter(0, 0, IPv4Address(0))) == 3
    assert pcp.option_code(UnknownOption(77)) == 77


def test_largest_request_fits_1100_octets() -> None:
    # 24 header + 36 MAP + one option of 4 + 1036 = 1100, the §7 maximum.
    big = Request(Opcode.MAP, 1, CLIENT_V4, MAP_REQUEST_V4_MESSAGE.data,
                  (UnknownOption(200, bytes(1036)),))
    data = big.encode()
    assert len(data) == 1100
    assert decode_request(data) == big
    too_big = Request(Opcode.MAP, 1, CLIENT_V4, MAP_REQUEST_V4_MESSAGE.data,
                      (UnknownOption(200, bytes(1037)),))
    with pytest.raises(ValueError, match="1100"):
        too_big.encode()


def test_largest_response_fits_1100_octets() -> None:
    big = Response(Opcode.MAP, 0, 1, 1, MAP_RESPONSE_V4_MESSAGE.data,
                   (UnknownOption(200, bytes(1036)),))
    data = big.encode()
    assert len(data) == 1100
    assert decode_response(data) == big
    too_big = Response(Opcode.MAP, 0, 1, 1, MAP_RESPONSE_V4_MESSAGE.data,
                       (UnknownOption(200, bytes(1040)),))
    with pytest.raises(ValueError, match="1100"):
        too_big.encode()


def test_error_answer_with_data_keeps_it() -> None:
    # An error answer copies the request's opcode data (§7.2); decoding keeps it.
    response = decode_response(MAP_RESPONSE_NO_RESOURCES)
    assert response.result == PcpResult.NO_RESOURCES
    assert isinstance(response.data, MapData)
    assert response.data.nonce == NONCE


def test_unsupp_opcode_answer_with_copied_body_reads_header() -> None:
    # The server may copy a request it cannot parse; the body has no layout we know.
    data = UNSUPP_OPCODE_RESPONSE + bytes(36)
    assert decode_response(data) == UNSUPP_OPCODE_RESPONSE_MESSAGE


def test_other_version_answer_reads_header_only() -> None:
    data = UNSUPP_VERSION_RESPONSE + bytes(36)
    assert decode_response(data) == UNSUPP_VERSION_RESPONSE_MESSAGE


def test_zero_address_of_same_family() -> None:
    assert pcp.zero_address(CLIENT_V4) == IPv4Address(0)
    assert pcp.zero_address(CLIENT_V6) == IPv6Address(0)


# --- validation: decode_response ---------------------------------------------------------

def _with(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value):]


def _option_request(option_hex: str) -> bytes:
    return MAP_REQUEST_V4 + bytes.fromhex(option_hex)


BAD_RESPONSES = [
    pytest.param(b"", id="empty"),
    pytest.param(ANNOUNCE_RESPONSE[:20], id="20-octets"),
    pytest.param(ANNOUNCE_RESPONSE[:23], id="23-octets"),
    pytest.param(ANNOUNCE_RESPONSE + b"\x00", id="25-octets-not-multiple-of-4"),
    pytest.param(MAP_RESPONSE_V4 + b"\x00\x00", id="62-octets-not-multiple-of-4"),
    pytest.param(MAP_RESPONSE_V4 + b"\x00\x00\x00", id="63-octets-not-multiple-of-4"),
    pytest.param(Response(Opcode.MAP, 0, 1, 1, MAP_RESPONSE_V4_MESSAGE.data,
                          (UnknownOption(200, bytes(1036)),)).encode() + bytes(4),
                 id="1104-octets"),
    pytest.param(_with(MAP_RESPONSE_V4, 0, b"\x01"), id="version-1-success"),
    pytest.param(_with(MAP_RESPONSE_V4, 0, b"\x00"), id="version-0-success"),
    pytest.param(_with(MAP_RESPONSE_V4, 0, b"\x03"), id="version-3-success"),
    pytest.param(_with(MAP_RESPONSE_V4, 1, b"\x01"), id="response-bit-clear"),
    pytest.param(MAP_REQUEST_V4, id="a-map-request"),
    pytest.param(_with(ANNOUNCE_RESPONSE, 1, b"\x83"), id="unknown-opcode-3-success"),
    pytest.param(_with(ANNOUNCE_RESPONSE, 1, b"\xff"), id="unknown-opcode-127-success"),
    pytest.param(_with(ANNOUNCE_RESPONSE, 1, b"\x81"), id="map-success-without-data"),
    pytest.param(_with(MAP_RESPONSE_V4[:56], 1, b"\x81"), id="map-data-truncated"),
    pytest.param(_with(MAP_RESPONSE_V4, 1, b"\x82"), id="peer-with-map-sized-data"),
    pytest.param(_with(MALFORMED_REQUEST_RESPONSE + bytes(4), 1, b"\x81"),
                 id="error-with-partial-data"),
    pytest.param(MAP_RESPONSE_V4 + bytes.fromhex("01000014") + bytes(16),
                 id="option-overrun"),
    pytest.param(MAP_RESPONSE_V4 + bytes.fromhex("c80001f0"), id="option-length-496-overrun"),
    pytest.param(MAP_RESPONSE_V4 + bytes.fromhex("c8000005") + bytes(4),
                 id="option-data-cut-short"),
    pytest.param(MAP_RESPONSE_V4 + bytes.fromhex("0100000c") + bytes(12),
                 id="third-party-length-12"),
    pytest.param(MAP_RESPONSE_V4 + bytes.fromhex("01000014") + bytes(20),
                 id="third-party-length-20"),
    pytest.param(MAP_RESPONSE_V4 + bytes.fromhex("02000004") + bytes(4),
                 id="prefer-failure-length-4"),
    pytest.param(MAP_RESPONSE_V4 + bytes.fromhex("03000010") + bytes(16), id="filter-length-16"),
    pytest.param(MAP_RESPONSE_V4 + bytes.fromhex("03000018") + bytes(24), id="filter-length-24"),
    pytest.param(MAP_RESPONSE_V4 + bytes.fromhex(FILTER_V4_HEX.replace("0020", "0021", 1)),
                 id="filter-ipv4-prefix-33"),
    pytest.param(MAP_RESPONSE_V4 + bytes.fromhex(FILTER_V6_HEX.replace("0030", "0081", 1)),
                 id="filter-ipv6-prefix-129"),
    pytest.param(MAP_RESPONSE_V4 + bytes.fromhex(FILTER_V6_HEX.replace("0030", "00ff", 1)),
                 id="filter-ipv6-prefix-255"),
]


@pytest.mark.parametrize("data", BAD_RESPONSES)
def test_bad_response_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedPacket):
        decode_response(data)


def test_vector_patches_hit_the_intended_fields() -> None:
    # The FILTER patches above must change the Prefix Length octet and nothing else.
    assert bytes.fromhex(FILTER_V4_HEX.replace("0020", "0021", 1))[5] == 33
    assert bytes.fromhex(FILTER_V6_HEX.replace("0030", "0081", 1))[5] == 129


def test_decode_options_catches_what_a_whole_packet_cannot_show() -> None:
    # In a packet whose length is a multiple of 4, an option header cannot be cut short and
    # padding cannot be missing without an overrun first; decode_options checks both anyway.
    with pytest.raises(MalformedPacket, match="header"):
        pcp.decode_options(b"\xc8\x00")
    with pytest.raises(MalformedPacket, match="padding"):
        pcp.decode_options(bytes.fromhex("c8000005") + bytes(5))
    assert pcp.decode_options(bytes.fromhex("c8000005") + bytes(8)) == (UnknownOption(200,
                                                                                      bytes(5)),)


# --- validation: decode_request (the gateway's side) --------------------------------------

REJECTED_REQUESTS = [
    # §8.2 / §9: a version other than 2 -> UNSUPP_VERSION, checked before the length.
    pytest.param(_with(MAP_REQUEST_V4, 0, b"\x01"), PcpResult.UNSUPP_VERSION, 1, id="version-1"),
    pytest.param(_with(MAP_REQUEST_V4, 0, b"\x03"), PcpResult.UNSUPP_VERSION, 1, id="version-3"),
    pytest.param(bytes.fromhex("0000"), PcpResult.UNSUPP_VERSION, 0, id="nat-pmp-2-bytes"),
    pytest.param(bytes.fromhex("0002") + MAP_REQUEST_V4[2:12], PcpResult.UNSUPP_VERSION, 2,
                 id="nat-pmp-map-tcp"),
    # MALFORMED_REQUEST: length past 1100, not a multiple of 4, too short for the opcode.
    pytest.param(MAP_REQUEST_V4 + bytes.fromhex("c800040c") + bytes(1036 + 4),
                 PcpResult.MALFORMED_REQUEST, 1, id="1104-octets"),
    pytest.param(MAP_REQUEST_V4 + b"\x00\x00", PcpResult.MALFORMED_REQUEST, 1,
                 id="62-octets"),
    pytest.param(ANNOUNCE_REQUEST + b"\x00", PcpResult.MALFORMED_REQUEST, 0, id="25-octets"),
    pytest.param(_with(ANNOUNCE_REQUEST, 1, b"\x01"), PcpResult.MALFORMED_REQUEST, 1,
                 id="map-without-data"),
    pytest.param(_with(MAP_REQUEST_V4, 1, b"\x02"), PcpResult.MALFORMED_REQUEST, 2,
                 id="peer-with-map-sized-data"),
    pytest.param(PEER_REQUEST_V4 + bytes.fromhex(PREFER_FAILURE_HEX),
                 PcpResult.MALFORMED_REQUEST, 2, id="peer-with-prefer-failure"),
    # UNSUPP_OPCODE.
    pytest.param(_with(ANNOUNCE_REQUEST, 1, b"\x03"), PcpResult.UNSUPP_OPCODE, 3, id="opcode-3"),
    pytest.param(_with(MAP_REQUEST_V4, 1, b"\x7f"), PcpResult.UNSUPP_OPCODE, 127,
                 id="opcode-127"),
    # MALFORMED_OPTION: overrun, bad length, bad value, too many occurrences.
    pytest.param(_option_request("01000014" + "00" * 16), PcpResult.MALFORMED_OPTION, 1,
                 id="option-overrun"),
    pytest.param(_option_request("0100000c" + "00" * 12), PcpResult.MALFORMED_OPTION, 1,
                 id="third-party-length-12"),
    pytest.param(_option_request("02000004" + "00" * 4), PcpResult.MALFORMED_OPTION, 1,
                 id="prefer-failure-length-4"),
    pytest.param(_option_request("03000010" + "00" * 16), PcpResult.MALFORMED_OPTION, 1,
                 id="filter-length-16"),
    pytest.param(_option_request(FILTER_V4_HEX.replace("0020", "0021", 1)),
                 PcpResult.MALFORMED_OPTION, 1, id="filter-ipv4-prefix-33"),
    pytest.param(_option_request(FILTER_V6_HEX.replace("0030", "0081", 1)),
                 PcpResult.MALFORMED_OPTION, 1, id="filter-ipv6-prefix-129"),
    pytest.param(_option_request(THIRD_PARTY_V4_HEX + THIRD_PARTY_V6_HEX),
                 PcpResult.MALFORMED_OPTION, 1, id="two-third-party"),
    pytest.param(_option_request(PREFER_FAILURE_HEX + PREFER_FAILURE_HEX),
                 PcpResult.MALFORMED_OPTION, 1, id="two-prefer-failure"),
]


@pytest.mark.parametrize(("data", "result", "opcode"), REJECTED_REQUESTS)
def test_rejected_request_carries_result_code(data: bytes, result: PcpResult,
                                              opcode: int) -> None:
    with pytest.raises(RequestRejected) as caught:
        decode_request(data)
    assert caught.value.result is result
    assert caught.value.opcode == opcode


DROPPED_REQUESTS = [
    # §8.2: silently dropped, no answer: fewer than 2 octets, R bit set, or version 2 but
    # shorter than the 24-octet header.
    pytest.param(b"", id="empty"),
    pytest.param(b"\x02", id="one-octet"),
    pytest.param(MAP_RESPONSE_V4, id="r-bit-set"),
    pytest.param(b"\x01\x81", id="r-bit-set-other-version"),
    pytest.param(MAP_REQUEST_V4[:20], id="20-octets"),
    pytest.param(MAP_REQUEST_V4[:23], id="23-octets"),
]


@pytest.mark.parametrize("data", DROPPED_REQUESTS)
def test_dropped_request_is_plain_malformed(data: bytes) -> None:
    with pytest.raises(MalformedPacket) as caught:
        decode_request(data)
    assert type(caught.value) is MalformedPacket


def test_many_filters_are_allowed() -> None:
    # §13.3: FILTER may appear "as many as fit within maximum PCP message size".
    filters = tuple(Filter(32, port, REMOTE_V4) for port in range(1, 43))
    request = Request(Opcode.MAP, 60, CLIENT_V4, MAP_REQUEST_V4_MESSAGE.data, filters)
    data = request.encode()
    assert len(data) == 60 + 42 * 24 == 1068
    assert decode_request(data) == request


def test_unknown_mandatory_option_is_left_to_the_server() -> None:
    # UNSUPP_OPTION depends on what the server supports: the decoder keeps the option.
    request = decode_request(MAP_REQUEST_OPTIONS)
    assert UnknownOption(96, bytes.fromhex("0102030405")) in request.options


# --- encoders refuse what the wire cannot carry ------------------------------------------

MAP_DATA = MAP_REQUEST_V4_MESSAGE.data
PEER_DATA = PEER_REQUEST_V4_MESSAGE.data

BAD_CONSTRUCTIONS = [
    pytest.param(lambda: MapData(bytes(11), 6, 1, 1, CLIENT_V4), id="nonce-11"),
    pytest.param(lambda: MapData(bytes(13), 6, 1, 1, CLIENT_V4), id="nonce-13"),
    pytest.param(lambda: MapData(NONCE, 256, 1, 1, CLIENT_V4), id="protocol-256"),
    pytest.param(lambda: MapData(NONCE, -1, 1, 1, CLIENT_V4), id="protocol-negative"),
    pytest.param(lambda: MapData(NONCE, 6, 65536, 1, CLIENT_V4), id="internal-port"),
    pytest.param(lambda: MapData(NONCE, 6, 1, 65536, CLIENT_V4), id="external-port"),
    pytest.param(lambda: PeerData(NONCE, 6, 1, 1, CLIENT_V4, 65536, REMOTE_V4),
                 id="remote-port"),
    pytest.param(lambda: PeerData(bytes(0), 6, 1, 1, CLIENT_V4, 1, REMOTE_V4), id="peer-nonce"),
    pytest.param(lambda: Filter(33, 0, REMOTE_V4), id="filter-v4-prefix-33"),
    pytest.param(lambda: Filter(129, 0, REMOTE_V6), id="filter-v6-prefix-129"),
    pytest.param(lambda: Filter(-1, 0, REMOTE_V6), id="filter-prefix-negative"),
    pytest.param(lambda: Filter(0, 65536, REMOTE_V6), id="filter-port"),
    pytest.param(lambda: UnknownOption(256), id="option-code-256"),
    pytest.param(lambda: UnknownOption(-1), id="option-code-negative"),
    pytest.param(lambda: UnknownOption(200, bytes(65536)), id="option-data-65536"),
    pytest.param(lambda: Request(128, 0, CLIENT_V4), id="request-opcode-128"),
    pytest.param(lambda: Request(Opcode.ANNOUNCE, 1 << 32, CLIENT_V4), id="request-lifetime"),
    pytest.param(lambda: Request(Opcode.ANNOUNCE, -1, CLIENT_V4), id="request-lifetime-neg"),
    pytest.param(lambda: Request(Opcode.ANNOUNCE, 0, CLIENT_V4, version=256),
                 id="request-version"),
    pytest.param(lambda: Request(Opcode.MAP, 0, CLIENT_V4), id="request-map-without-data"),
    pytest.param(lambda: Request(Opcode.MAP, 0, CLIENT_V4, PEER_DATA), id="request-map-peer"),
    pytest.param(lambda: Request(Opcode.PEER, 0, CLIENT_V4, MAP_DATA), id="request-peer-map"),
    pytest.param(lambda: Request(Opcode.ANNOUNCE, 0, CLIENT_V4, MAP_DATA),
                 id="request-announce-data"),
    pytest.param(lambda: Response(128, 0, 0, 0), id="response-opcode-128"),
    pytest.param(lambda: Response(0, 256, 0, 0), id="response-result-256"),
    pytest.param(lambda: Response(0, 0, 1 << 32, 0), id="response-lifetime"),
    pytest.param(lambda: Response(0, 0, 0, 1 << 32), id="response-epoch"),
    pytest.param(lambda: Response(0, 0, 0, -1), id="response-epoch-negative"),
    pytest.param(lambda: Response(0, 1, 0, 0, version=256), id="response-version-256"),
    pytest.param(lambda: Response(0, 0, 0, 0, reserved=bytes(11)), id="response-reserved-11"),
    pytest.param(lambda: Response(Opcode.MAP, 0, 0, 0), id="map-success-without-data"),
    pytest.param(lambda: Response(Opcode.PEER, 0, 0, 0), id="peer-success-without-data"),
    pytest.param(lambda: Response(Opcode.MAP, 3, 0, 0, None, (PreferFailure(),)),
                 id="map-options-without-data"),
    pytest.param(lambda: Response(Opcode.MAP, 0, 0, 0, PEER_DATA), id="map-with-peer-data"),
    pytest.param(lambda: Response(Opcode.ANNOUNCE, 0, 0, 0, MAP_DATA),
                 id="announce-with-data"),
    pytest.param(lambda: Response(Opcode.MAP, 0, 0, 0, MAP_DATA, version=1),
                 id="other-version-success"),
    pytest.param(lambda: Response(Opcode.MAP, 1, 0, 0, MAP_DATA, version=1),
                 id="other-version-with-data"),
    pytest.param(lambda: Response(5, 0, 0, 0), id="unknown-opcode-success"),
    pytest.param(lambda: Response(5, 4, 0, 0, None, (PreferFailure(),)),
                 id="unknown-opcode-options"),
]


@pytest.mark.parametrize("build", BAD_CONSTRUCTIONS)
def test_bad_construction_is_value_error(build: object) -> None:
    assert callable(build)
    with pytest.raises(ValueError):
        build()


def test_a_test_may_build_requests_a_server_must_refuse() -> None:
    # Other versions and unknown opcodes construct and encode, so a test can send them.
    assert Request(Opcode.MAP, 0, CLIENT_V4, MAP_DATA, version=1).encode()[0] == 1
    assert Request(99, 0, CLIENT_V4).encode()[1] == 99
