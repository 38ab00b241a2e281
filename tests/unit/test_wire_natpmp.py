"""NAT-PMP wire format (RFC 6886 §3.2-§3.5): byte-exact vectors and validation.

Every vector below was written out by hand from the packet diagrams of RFC 6886,
field by field, not produced by our encoder. Each one is checked both ways:
the decoder turns the bytes into the expected message and the encoder turns
the message back into the same bytes.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from engine.errors import MalformedPacket
from engine.protocols import Protocol
from engine.wire import natpmp
from engine.wire.natpmp import (
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Opcode,
    decode_request,
    decode_response,
)

# --- §3.2: determining the external address ----------------------------------------------

EXTERNAL_ADDRESS_REQUEST = bytes.fromhex(
    "00"  # Vers = 0
    "00"  # OP = 0
)

EXTERNAL_ADDRESS_RESPONSE = bytes.fromhex(
    "00"  # Vers = 0
    "80"  # OP = 128 + 0
    "0000"  # Result Code 0 (success), network byte order
    "00001c20"  # Seconds Since Start of Epoch = 7200
    "cb007107"  # External IPv4 Address 203.0.113.7
)

EXTERNAL_ADDRESS_RESPONSE_FAILURE = bytes.fromhex(
    "00"  # Vers = 0
    "80"  # OP = 128 + 0
    "0003"  # Result Code 3 (Network Failure)
    "00000005"  # Seconds Since Start of Epoch = 5
    "00000000"  # External IPv4 Address: undefined, sent as zero
)

# --- §3.3: requesting a mapping ----------------------------------------------------------

MAP_UDP_REQUEST = bytes.fromhex(
    "00"  # Vers = 0
    "01"  # OP = 1 (Map UDP)
    "0000"  # Reserved
    "1388"  # Internal Port 5000
    "1388"  # Suggested External Port 5000
    "00001c20"  # Requested Port Mapping Lifetime 7200 s (the RECOMMENDED value)
)

MAP_TCP_REQUEST = bytes.fromhex(
    "00"  # Vers = 0
    "02"  # OP = 2 (Map TCP)
    "0000"  # Reserved
    "0016"  # Internal Port 22
    "08ae"  # Suggested External Port 2222
    "00000e10"  # Requested Port Mapping Lifetime 3600 s
)

MAP_UDP_RESPONSE = bytes.fromhex(
    "00"  # Vers = 0
    "81"  # OP = 128 + 1
    "0000"  # Result Code 0
    "0001e240"  # Seconds Since Start of Epoch = 123456
    "1388"  # Internal Port 5000
    "c350"  # Mapped External Port 50000
    "00001c20"  # Port Mapping Lifetime 7200 s
)

MAP_TCP_RESPONSE_REFUSED = bytes.fromhex(
    "00"  # Vers = 0
    "82"  # OP = 128 + 2
    "0002"  # Result Code 2 (Not Authorized/Refused)
    "0001e241"  # Seconds Since Start of Epoch = 123457
    "0016"  # Internal Port 22: the failed request's, so the client can match it (§3.5)
    "0000"  # Mapped External Port: zero, no mapping was made
    "00000000"  # Port Mapping Lifetime: zero
)

# --- §3.4: destroying a mapping ----------------------------------------------------------

DELETE_UDP_REQUEST = bytes.fromhex(
    "00"  # Vers = 0
    "01"  # OP = 1 (Map UDP)
    "0000"  # Reserved
    "1388"  # Internal Port 5000
    "0000"  # Suggested External Port: MUST be zero in a deletion
    "00000000"  # Requested Lifetime 0: delete
)

DELETE_ALL_TCP_REQUEST = bytes.fromhex(
    "00"  # Vers = 0
    "02"  # OP = 2 (Map TCP)
    "0000"  # Reserved
    "0000"  # Internal Port 0: all of this client's TCP mappings
    "0000"  # Suggested External Port 0
    "00000000"  # Requested Lifetime 0
)

DELETE_UDP_RESPONSE = bytes.fromhex(
    "00"  # Vers = 0
    "81"  # OP = 128 + 1
    "0000"  # Result Code 0
    "0001e242"  # Seconds Since Start of Epoch = 123458
    "1388"  # Internal Port 5000, as in the deletion request
    "0000"  # Mapped External Port 0
    "00000000"  # Lifetime 0
)

# --- §3.5: the 8-byte error answer -------------------------------------------------------

UNSUPPORTED_VERSION_OP0 = bytes.fromhex(
    "00"  # Vers = 0 (the highest version the gateway supports)
    "00"  # OP = 0, as drawn in §3.5
    "0001"  # Result Code = 1 (Unsupported Version)
    "0000002a"  # Seconds Since Start of Epoch = 42
)

UNSUPPORTED_VERSION_OP129 = bytes.fromhex(
    "00"  # Vers = 0
    "81"  # OP = 128 + 1: the request's opcode with the response bit (the erratum's form)
    "0001"  # Result Code = 1 (Unsupported Version)
    "0000002b"  # Seconds Since Start of Epoch = 43
)

UNSUPPORTED_OPCODE_OP131 = bytes.fromhex(
    "00"  # Vers = 0
    "83"  # OP = 128 + 3: an opcode the gateway does not know, echoed
    "0005"  # Result Code = 5 (Unsupported opcode)
    "0000002c"  # Seconds Since Start of Epoch = 44
)

REQUEST_VECTORS = [
    pytest.param(EXTERNAL_ADDRESS_REQUEST, ExternalAddressRequest(), id="external-address"),
    pytest.param(MAP_UDP_REQUEST, MapRequest(Protocol.UDP, 5000, 5000, 7200), id="map-udp"),
    pytest.param(MAP_TCP_REQUEST, MapRequest(Protocol.TCP, 22, 2222, 3600), id="map-tcp"),
    pytest.param(DELETE_UDP_REQUEST, MapRequest(Protocol.UDP, 5000, 0, 0), id="delete-udp"),
    pytest.param(DELETE_ALL_TCP_REQUEST, MapRequest(Protocol.TCP, 0, 0, 0), id="delete-all-tcp"),
]

RESPONSE_VECTORS = [
    pytest.param(EXTERNAL_ADDRESS_RESPONSE,
                 ExternalAddressResponse(0, 7200, IPv4Address("203.0.113.7")),
                 id="external-address"),
    pytest.param(EXTERNAL_ADDRESS_RESPONSE_FAILURE,
                 ExternalAddressResponse(3, 5, IPv4Address("0.0.0.0")),
                 id="external-address-failure"),
    pytest.param(MAP_UDP_RESPONSE, MapResponse(Protocol.UDP, 0, 123456, 5000, 50000, 7200),
                 id="map-udp"),
    pytest.param(MAP_TCP_RESPONSE_REFUSED, MapResponse(Protocol.TCP, 2, 123457, 22, 0, 0),
                 id="map-tcp-refused"),
    pytest.param(DELETE_UDP_RESPONSE, MapResponse(Protocol.UDP, 0, 123458, 5000, 0, 0),
                 id="delete-udp"),
    pytest.param(UNSUPPORTED_VERSION_OP0, ErrorResponse(0, 1, 42), id="error-opcode-0"),
    pytest.param(UNSUPPORTED_VERSION_OP129, ErrorResponse(129, 1, 43), id="error-opcode-129"),
    pytest.param(UNSUPPORTED_OPCODE_OP131, ErrorResponse(131, 5, 44), id="error-opcode-131"),
]


@pytest.mark.parametrize(("wire", "message"), REQUEST_VECTORS)
def test_request_vector_decodes(wire: bytes, message: natpmp.Request) -> None:
    assert decode_request(wire) == message


@pytest.mark.parametrize(("wire", "message"), REQUEST_VECTORS)
def test_request_vector_encodes(wire: bytes, message: natpmp.Request) -> None:
    assert message.encode() == wire


@pytest.mark.parametrize(("wire", "message"), RESPONSE_VECTORS)
def test_response_vector_decodes(wire: bytes, message: natpmp.Response) -> None:
    assert decode_response(wire) == message


@pytest.mark.parametrize(("wire", "message"), RESPONSE_VECTORS)
def test_response_vector_encodes(wire: bytes, message: natpmp.Response) -> None:
    assert message.encode() == wire


def test_decoded_fields_are_typed() -> None:
    response = decode_response(MAP_UDP_RESPONSE)
    assert isinstance(response, MapResponse)
    assert response.protocol is Protocol.UDP
    address = decode_response(EXTERNAL_ADDRESS_RESPONSE)
    assert isinstance(address, ExternalAddressResponse)
    assert isinstance(address.external_address, IPv4Address)
    request = decode_request(MAP_TCP_REQUEST)
    assert isinstance(request, MapRequest)
    assert request.opcode is Opcode.MAP_TCP


def test_reserved_field_is_ignored_on_reception() -> None:
    # §3.3: "The Reserved field MUST be set to zero on transmission and MUST be ignored on
    # reception."
    wire = MAP_UDP_REQUEST[:2] + b"\xbe\xef" + MAP_UDP_REQUEST[4:]
    assert decode_request(wire) == MapRequest(Protocol.UDP, 5000, 5000, 7200)


def test_largest_field_values() -> None:
    wire = bytes.fromhex(
        "00"  # Vers
        "82"  # OP = 128 + 2
        "ffff"  # Result Code 65535 (unknown to us; §3.5: treat as a fatal error)
        "ffffffff"  # epoch 2^32-1
        "ffff"  # Internal Port 65535
        "ffff"  # Mapped External Port 65535
        "ffffffff"  # lifetime 2^32-1
    )
    message = MapResponse(Protocol.TCP, 0xFFFF, 0xFFFFFFFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF)
    assert decode_response(wire) == message
    assert message.encode() == wire


def test_map_opcode_follows_protocol() -> None:
    assert MapRequest(Protocol.UDP, 1, 1, 1).opcode is Opcode.MAP_UDP
    assert MapRequest(Protocol.TCP, 1, 1, 1).opcode is Opcode.MAP_TCP
    assert MapRequest(17, 1, 1, 1).opcode is Opcode.MAP_UDP


# --- validation: every bad field is MalformedPacket and nothing else ---------------------

BAD_REQUESTS = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x00", id="one-byte"),
    pytest.param(EXTERNAL_ADDRESS_REQUEST + b"\x00", id="external-address-too-long"),
    pytest.param(MAP_UDP_REQUEST[:-1], id="map-too-short"),
    pytest.param(MAP_UDP_REQUEST + b"\x00", id="map-too-long"),
    pytest.param(MAP_UDP_REQUEST + bytes(4), id="map-too-long-by-a-word"),
    pytest.param(b"\x01\x00", id="version-1"),
    pytest.param(b"\x02" + MAP_UDP_REQUEST[1:], id="version-2-pcp"),
    pytest.param(b"\x00\x03" + MAP_UDP_REQUEST[2:], id="unknown-opcode-3"),
    pytest.param(b"\x00\x7f", id="unknown-opcode-127"),
    pytest.param(EXTERNAL_ADDRESS_RESPONSE, id="a-response-opcode-128"),
    pytest.param(MAP_UDP_RESPONSE[:12], id="opcode-129"),
]


@pytest.mark.parametrize("wire", BAD_REQUESTS)
def test_bad_request_is_malformed(wire: bytes) -> None:
    with pytest.raises(MalformedPacket):
        decode_request(wire)


BAD_RESPONSES = [
    pytest.param(b"", id="empty"),
    pytest.param(UNSUPPORTED_VERSION_OP0[:7], id="seven-bytes"),
    pytest.param(EXTERNAL_ADDRESS_RESPONSE[:9], id="nine-bytes"),
    pytest.param(EXTERNAL_ADDRESS_RESPONSE[:11], id="eleven-bytes"),
    pytest.param(EXTERNAL_ADDRESS_RESPONSE + b"\x00", id="external-address-13-bytes"),
    pytest.param(MAP_UDP_RESPONSE[:15], id="map-15-bytes"),
    pytest.param(MAP_UDP_RESPONSE + b"\x00", id="map-17-bytes"),
    pytest.param(MAP_UDP_RESPONSE + bytes(4), id="map-20-bytes"),
    pytest.param(b"\x01" + EXTERNAL_ADDRESS_RESPONSE[1:], id="version-1"),
    pytest.param(b"\x02" + UNSUPPORTED_VERSION_OP0[1:], id="version-2-short-error"),
    pytest.param(bytes.fromhex("00 00 0000 0000002a"), id="eight-byte-success-opcode-0"),
    pytest.param(bytes.fromhex("00 81 0000 0000002a"), id="eight-byte-success-opcode-129"),
    pytest.param(bytes.fromhex("00 01 0001 0000002a"), id="eight-byte-request-opcode"),
    pytest.param(b"\x00\x00" + EXTERNAL_ADDRESS_RESPONSE[2:], id="response-bit-clear-12"),
    pytest.param(b"\x00\x01" + MAP_UDP_RESPONSE[2:], id="response-bit-clear-16"),
    pytest.param(b"\x00\x81" + EXTERNAL_ADDRESS_RESPONSE[2:], id="map-opcode-12-bytes"),
    pytest.param(b"\x00\x80" + MAP_UDP_RESPONSE[2:], id="address-opcode-16-bytes"),
    pytest.param(b"\x00\x83" + EXTERNAL_ADDRESS_RESPONSE[2:], id="unknown-opcode-131-12"),
    pytest.param(b"\x00\xff" + MAP_UDP_RESPONSE[2:], id="unknown-opcode-255-16"),
]


@pytest.mark.parametrize("wire", BAD_RESPONSES)
def test_bad_response_is_malformed(wire: bytes) -> None:
    with pytest.raises(MalformedPacket):
        decode_response(wire)


# --- encoders refuse what the wire cannot carry ------------------------------------------

BAD_CONSTRUCTIONS = [
    pytest.param(lambda: MapRequest(Protocol.SCTP, 1, 1, 1), id="request-sctp"),
    pytest.param(lambda: MapRequest(Protocol.ALL, 0, 0, 0), id="request-all"),
    pytest.param(lambda: MapRequest(Protocol.UDP, -1, 1, 1), id="request-internal-negative"),
    pytest.param(lambda: MapRequest(Protocol.UDP, 65536, 1, 1), id="request-internal-65536"),
    pytest.param(lambda: MapRequest(Protocol.UDP, 1, 65536, 1), id="request-external-65536"),
    pytest.param(lambda: MapRequest(Protocol.UDP, 1, 1, 1 << 32), id="request-lifetime-2^32"),
    pytest.param(lambda: MapRequest(Protocol.UDP, 1, 1, -1), id="request-lifetime-negative"),
    pytest.param(lambda: ExternalAddressResponse(65536, 0, IPv4Address(0)),
                 id="address-result-65536"),
    pytest.param(lambda: ExternalAddressResponse(0, 1 << 32, IPv4Address(0)),
                 id="address-epoch-2^32"),
    pytest.param(lambda: ExternalAddressResponse(0, -1, IPv4Address(0)),
                 id="address-epoch-negative"),
    pytest.param(lambda: ExternalAddressResponse(0, 0, IPv6Address("2001:db8::1")),  # type: ignore[arg-type]
                 id="address-ipv6"),
    pytest.param(lambda: MapResponse(Protocol.ICMP, 0, 0, 1, 1, 1), id="map-response-icmp"),
    pytest.param(lambda: MapResponse(Protocol.UDP, 65536, 0, 1, 1, 1), id="map-response-result"),
    pytest.param(lambda: MapResponse(Protocol.UDP, 0, 1 << 32, 1, 1, 1), id="map-response-epoch"),
    pytest.param(lambda: MapResponse(Protocol.UDP, 0, 0, 65536, 1, 1),
                 id="map-response-internal"),
    pytest.param(lambda: MapResponse(Protocol.UDP, 0, 0, 1, -1, 1), id="map-response-external"),
    pytest.param(lambda: MapResponse(Protocol.UDP, 0, 0, 1, 1, 1 << 32),
                 id="map-response-lifetime"),
    pytest.param(lambda: ErrorResponse(1, 1, 0), id="error-request-opcode"),
    pytest.param(lambda: ErrorResponse(127, 1, 0), id="error-opcode-127"),
    pytest.param(lambda: ErrorResponse(256, 1, 0), id="error-opcode-256"),
    pytest.param(lambda: ErrorResponse(0, 0, 0), id="error-success"),
    pytest.param(lambda: ErrorResponse(0, 65536, 0), id="error-result-65536"),
    pytest.param(lambda: ErrorResponse(0, 1, 1 << 32), id="error-epoch"),
]


@pytest.mark.parametrize("build", BAD_CONSTRUCTIONS)
def test_out_of_range_field_is_value_error(build: object) -> None:
    assert callable(build)
    with pytest.raises(ValueError):
        build()


def test_value_error_names_the_field() -> None:
    with pytest.raises(ValueError, match="internal port"):
        MapRequest(Protocol.UDP, 70000, 1, 1)
    with pytest.raises(ValueError, match="only TCP and UDP"):
        MapRequest(Protocol.SCTP, 1, 1, 1)
