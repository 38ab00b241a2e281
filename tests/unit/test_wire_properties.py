"""Properties of the wire layer, checked with Hypothesis.

* Every decoder, fed any bytes, returns a message or raises MalformedPacket:
  no IndexError, struct.error, ValueError or anything else escapes.
* Every valid message round-trips: ``decode(m.encode()) == m``, over all fields
  and options.
* Whatever a decoder accepts, re-encoded, decodes to the same message.
* Every response that constructs round-trips, so the encoders never emit a
  packet our own decoders would drop.
* Constructors refuse out-of-range fields with ValueError.

Example counts are kept moderate so the file runs in a few seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.codes import PcpResult
from engine.errors import MalformedPacket
from engine.protocols import Protocol
from engine.wire import natpmp, pcp
from engine.wire.addresses import IPAddress, decode_address, encode_address

FAST = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
# Boundary values get drawn often; Hypothesis already favours them, this makes sure.
u16_edges = st.one_of(u16, st.sampled_from([0, 1, 0x7FFF, 0x8000, 0xFFFF]))
u32_edges = st.one_of(u32, st.sampled_from([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]))

ipv4 = st.one_of(st.builds(IPv4Address, st.integers(0, 0xFFFFFFFF)),
                 st.sampled_from([IPv4Address(0), IPv4Address("255.255.255.255")]))
# IPv6 addresses other than IPv4-mapped ones: those decode as IPv4 (RFC 6887 §5), so an
# IPv6Address("::ffff:a.b.c.d") is the same wire value as IPv4Address("a.b.c.d").
ipv6 = st.one_of(
    st.builds(IPv6Address, st.integers(0, (1 << 128) - 1)),
    st.sampled_from([IPv6Address(0), IPv6Address("::1"), IPv6Address("::c000:221"),
                     IPv6Address("::1:ffff:c000:221"), IPv6Address("ffff::")]),
).filter(lambda address: address.ipv4_mapped is None)
addresses: st.SearchStrategy[IPAddress] = st.one_of(ipv4, ipv6)
nonces = st.binary(min_size=pcp.NONCE_SIZE, max_size=pcp.NONCE_SIZE)

# --- NAT-PMP -----------------------------------------------------------------------------

natpmp_protocols = st.sampled_from([Protocol.UDP, Protocol.TCP])
natpmp_requests: st.SearchStrategy[natpmp.Request] = st.one_of(
    st.just(natpmp.ExternalAddressRequest()),
    st.builds(natpmp.MapPacket, natpmp_protocols, u16_edges, u16_edges, u32_edges),
)
natpmp_responses: st.SearchStrategy[natpmp.Response] = st.one_of(
    st.builds(natpmp.ExternalAddressResponse, u16_edges, u32_edges, ipv4),
    st.builds(natpmp.MapResponse, natpmp_protocols, u16_edges, u32_edges, u16_edges,
              u16_edges, u32_edges),
    st.builds(natpmp.ErrorResponse, st.one_of(st.just(0), st.integers(128, 255)),
              st.integers(1, 0xFFFF), u32_edges),
)

# --- PCP ---------------------------------------------------------------------------------

map_data = st.builds(pcp.MapData, nonces, u8, u16_edges, u16_edges, addresses)
peer_data = st.builds(pcp.PeerData, nonces, u8, u16_edges, u16_edges, addresses, u16_edges,
                      addresses)


@st.composite
def filters(draw: st.DrawFn) -> pcp.Filter:
    address = draw(addresses)
    limit = 32 if isinstance(address, IPv4Address) else 128
    return pcp.Filter(draw(st.integers(0, limit)), draw(u16_edges), address)


third_parties = st.builds(pcp.ThirdParty, addresses)
unknown_options = st.builds(
    pcp.UnknownOption,
    u8.filter(lambda code: code not in tuple(pcp.OptionCode)),
    st.binary(max_size=24),
)


@st.composite
def option_lists(draw: st.DrawFn, *, prefer_failure: bool = True) -> tuple[pcp.Option, ...]:
    """Options a server accepts: at most one THIRD_PARTY and one PREFER_FAILURE (§13)."""
    options: list[pcp.Option] = []
    if draw(st.booleans()):
        options.append(draw(third_parties))
    if prefer_failure and draw(st.booleans()):
        options.append(pcp.PreferFailure())
    options += draw(st.lists(st.one_of(filters(), unknown_options), max_size=5))
    return tuple(draw(st.permutations(options)))


@st.composite
def pcp_requests(draw: st.DrawFn) -> pcp.Request:
    opcode = draw(st.sampled_from(list(pcp.Opcode)))
    data: pcp.OpData | None
    if opcode == pcp.Opcode.MAP:
        data = draw(map_data)
    elif opcode == pcp.Opcode.PEER:
        data = draw(peer_data)
    else:
        data = None
    options = draw(option_lists(prefer_failure=opcode != pcp.Opcode.PEER))
    return pcp.Request(opcode, draw(u32_edges), draw(addresses), data, options)


@st.composite
def pcp_responses(draw: st.DrawFn) -> pcp.Response:
    """Responses of every shape a server sends (§7.2, §9, §14.1)."""
    lifetime, epoch = draw(u32_edges), draw(u32_edges)
    reserved = draw(st.one_of(st.just(bytes(12)), st.binary(min_size=12, max_size=12)))
    shape = draw(st.sampled_from(["full", "header-only-error", "other-version",
                                  "unknown-opcode"]))
    if shape == "other-version":
        version = draw(u8.filter(lambda v: v != pcp.PCP_VERSION))
        return pcp.Response(draw(st.integers(0, 127)), PcpResult.UNSUPP_VERSION, lifetime, epoch,
                            version=version, reserved=reserved)
    if shape == "unknown-opcode":
        opcode = draw(st.integers(3, 127))
        return pcp.Response(opcode, draw(st.integers(1, 255)), lifetime, epoch,
                            reserved=reserved)
    opcode = draw(st.sampled_from(list(pcp.Opcode)))
    if shape == "header-only-error":
        return pcp.Response(opcode, draw(st.integers(1, 255)), lifetime, epoch,
                            reserved=reserved)
    data: pcp.OpData | None
    if opcode == pcp.Opcode.MAP:
        data = draw(map_data)
    elif opcode == pcp.Opcode.PEER:
        data = draw(peer_data)
    else:
        data = None
    return pcp.Response(opcode, draw(u8), lifetime, epoch, data, draw(option_lists()),
                        reserved=reserved)


# --- every decoder accepts or raises MalformedPacket, nothing else -----------------------

DECODERS: list[Callable[[bytes], object]] = [
    natpmp.decode_request, natpmp.decode_response, pcp.decode_request, pcp.decode_response]


def only_malformed(data: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(MalformedPacket):
            decode(data)


@FUZZ
@given(st.binary(max_size=1200))
def test_any_bytes_are_a_message_or_malformed(data: bytes) -> None:
    only_malformed(data)


@FUZZ
@given(st.sampled_from([0, 2]), st.binary(max_size=200))
def test_any_bytes_after_a_plausible_version(version: int, rest: bytes) -> None:
    # Most random packets die at the version check; these get past it.
    only_malformed(bytes([version]) + rest)


@st.composite
def mutated_packets(draw: st.DrawFn) -> bytes:
    """A valid packet of either protocol with a few bytes changed, cut, or added."""
    message = draw(st.one_of(natpmp_requests, natpmp_responses, pcp_requests(),
                             pcp_responses()))
    try:
        packet = bytearray(message.encode())
    except ValueError:  # past 1100 octets
        assume(False)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["set", "cut", "add", "drop"]))
        if action == "set" and packet:
            packet[draw(st.integers(0, len(packet) - 1))] = draw(u8)
        elif action == "cut":
            del packet[draw(st.integers(0, len(packet))):]
        elif action == "add":
            packet += draw(st.binary(min_size=1, max_size=8))
        elif action == "drop" and packet:
            del packet[draw(st.integers(0, len(packet) - 1))]
    return bytes(packet)


@FUZZ
@given(mutated_packets())
def test_mutated_packets_are_a_message_or_malformed(data: bytes) -> None:
    only_malformed(data)


# --- valid messages round-trip -----------------------------------------------------------

@FAST
@given(natpmp_requests)
def test_natpmp_request_round_trip(message: natpmp.Request) -> None:
    assert natpmp.decode_request(message.encode()) == message


@FAST
@given(natpmp_responses)
def test_natpmp_response_round_trip(message: natpmp.Response) -> None:
    assert natpmp.decode_response(message.encode()) == message


@FAST
@given(pcp_requests())
def test_pcp_request_round_trip(message: pcp.Request) -> None:
    assert pcp.decode_request(message.encode()) == message


@FAST
@given(pcp_responses())
def test_pcp_response_round_trip(message: pcp.Response) -> None:
    assert pcp.decode_response(message.encode()) == message


# The answers to maps and deletes are read in one unpack (issue 15): every packet of their
# size and kind, whatever its other octets, reads as what encodes back to it.


@FAST
@given(st.sampled_from([129, 130]), st.binary(min_size=14, max_size=14))
def test_every_natpmp_map_answer_reads_as_what_encodes_to_it(opcode: int, rest: bytes) -> None:
    data = bytes([0, opcode]) + rest
    message = natpmp.decode_response(data)
    assert isinstance(message, natpmp.MapResponse)
    assert message.protocol == (Protocol.UDP if opcode == 129 else Protocol.TCP)
    assert message.encode() == data


@FAST
@given(st.binary(min_size=58, max_size=58))
def test_every_pcp_map_answer_without_options_reads_as_what_encodes_to_it(rest: bytes) -> None:
    data = bytes([pcp.PCP_VERSION, 0x80 | pcp.Opcode.MAP]) + rest
    message = pcp.decode_response(data)
    assert isinstance(message.data, pcp.MapData)
    assert message.options == ()
    # The reserved octets after the header's opcode and in MAP's data are sent as zero.
    assert message.encode() == data[:2] + b"\0" + data[3:37] + bytes(3) + data[40:]


@FAST
@given(addresses)
def test_address_round_trip(address: IPAddress) -> None:
    packed = encode_address(address)
    assert len(packed) == 16
    assert decode_address(packed) == address


@FAST
@given(st.binary(min_size=16, max_size=16))
def test_every_16_octets_are_one_address(packed: bytes) -> None:
    assert encode_address(decode_address(packed)) == packed


@FAST
@given(st.data())
def test_what_constructs_round_trips(data: st.DataObject) -> None:
    # Draw every field freely, in range; whatever the constructor accepts must survive
    # encode -> decode, or the constructor should have refused it.
    fields: dict[str, Any] = {
        "opcode": data.draw(st.integers(0, 127)),
        "result": data.draw(st.sampled_from([0, 1, 3, 4, 8, 200])),
        "lifetime": data.draw(u32),
        "epoch": data.draw(u32),
        "data": data.draw(st.one_of(st.none(), map_data, peer_data)),
        "options": tuple(data.draw(st.lists(st.one_of(filters(), unknown_options),
                                            max_size=2))),
        "version": data.draw(st.sampled_from([0, 1, 2, 3])),
    }
    try:
        message = pcp.Response(**fields)
    except ValueError:
        return
    assert pcp.decode_response(message.encode()) == message


# --- what a decoder accepts is canonical -------------------------------------------------

def _reencodes(decode: Callable[[bytes], Any], data: bytes) -> None:
    try:
        message = decode(data)
    except MalformedPacket:
        return
    assert decode(message.encode()) == message


@FUZZ
@given(mutated_packets())
def test_accepted_packets_reencode_to_the_same_message(data: bytes) -> None:
    for decode in DECODERS:
        _reencodes(decode, data)


# --- encoders refuse out-of-range fields -------------------------------------------------

too_big_u16 = st.one_of(st.integers(max_value=-1), st.integers(min_value=0x10000))
too_big_u32 = st.one_of(st.integers(max_value=-1), st.integers(min_value=1 << 32))
too_big_u8 = st.one_of(st.integers(max_value=-1), st.integers(min_value=0x100))


def refuses(build: Callable[[], object]) -> None:
    try:
        build()
    except ValueError:
        return
    raise AssertionError("constructor accepted an out-of-range field")


@FAST
@given(too_big_u16, u16, u32)
def test_natpmp_map_request_refuses_ports_and_lifetimes(bad: int, port: int,
                                                        lifetime: int) -> None:
    refuses(lambda: natpmp.MapPacket(Protocol.UDP, bad, port, lifetime))
    refuses(lambda: natpmp.MapPacket(Protocol.TCP, port, bad, lifetime))


@FAST
@given(too_big_u32)
def test_natpmp_refuses_32_bit_fields(bad: int) -> None:
    refuses(lambda: natpmp.MapPacket(Protocol.UDP, 1, 1, bad))
    refuses(lambda: natpmp.ExternalAddressResponse(0, bad, IPv4Address(0)))
    refuses(lambda: natpmp.MapResponse(Protocol.UDP, 0, bad, 1, 1, 1))
    refuses(lambda: natpmp.MapResponse(Protocol.UDP, 0, 0, 1, 1, bad))
    refuses(lambda: natpmp.ErrorResponse(0, 1, bad))


@FAST
@given(too_big_u16)
def test_natpmp_refuses_16_bit_fields(bad: int) -> None:
    refuses(lambda: natpmp.ExternalAddressResponse(bad, 0, IPv4Address(0)))
    refuses(lambda: natpmp.MapResponse(Protocol.UDP, bad, 0, 1, 1, 1))
    refuses(lambda: natpmp.MapResponse(Protocol.UDP, 0, 0, bad, 1, 1))
    refuses(lambda: natpmp.MapResponse(Protocol.UDP, 0, 0, 1, bad, 1))


@FAST
@given(st.integers(-1000, 1000).filter(lambda p: p not in (Protocol.UDP, Protocol.TCP)))
def test_natpmp_maps_only_udp_and_tcp(protocol: int) -> None:
    refuses(lambda: natpmp.MapPacket(protocol, 1, 1, 1))
    refuses(lambda: natpmp.MapResponse(protocol, 0, 0, 1, 1, 1))


@FAST
@given(too_big_u8, too_big_u16, too_big_u32, nonces, addresses)
def test_pcp_opdata_refuses_fields(bad8: int, bad16: int, bad32: int, nonce: bytes,
                                   address: IPAddress) -> None:
    refuses(lambda: pcp.MapData(nonce, bad8, 1, 1, address))
    refuses(lambda: pcp.MapData(nonce, 6, bad16, 1, address))
    refuses(lambda: pcp.MapData(nonce, 6, 1, bad16, address))
    refuses(lambda: pcp.PeerData(nonce, 6, 1, 1, address, bad16, address))
    refuses(lambda: pcp.Request(pcp.Opcode.ANNOUNCE, bad32, address))
    refuses(lambda: pcp.Response(pcp.Opcode.ANNOUNCE, 0, bad32, 0))
    refuses(lambda: pcp.Response(pcp.Opcode.ANNOUNCE, 0, 0, bad32))
    refuses(lambda: pcp.Response(pcp.Opcode.ANNOUNCE, bad8, 0, 0))
    refuses(lambda: pcp.UnknownOption(bad8))
    refuses(lambda: pcp.Filter(0, bad16, address))


@FAST
@given(st.binary(max_size=40).filter(lambda nonce: len(nonce) != pcp.NONCE_SIZE), addresses)
def test_pcp_refuses_nonces_of_other_sizes(nonce: bytes, address: IPAddress) -> None:
    refuses(lambda: pcp.MapData(nonce, 6, 1, 1, address))
    refuses(lambda: pcp.PeerData(nonce, 6, 1, 1, address, 1, address))


@FAST
@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=128)), addresses)
def test_pcp_refuses_opcodes_past_7_bits(opcode: int, address: IPAddress) -> None:
    refuses(lambda: pcp.Request(opcode, 0, address))
    refuses(lambda: pcp.Response(opcode, 1, 0, 0))


@FAST
@given(st.integers(-5, 300), addresses)
def test_filter_prefix_range_follows_the_address_family(prefix: int,
                                                       address: IPAddress) -> None:
    limit = 32 if isinstance(address, IPv4Address) else 128
    if 0 <= prefix <= limit:
        assert pcp.Filter(prefix, 0, address).prefix_length == prefix
    else:
        refuses(lambda: pcp.Filter(prefix, 0, address))
