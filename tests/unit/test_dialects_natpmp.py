"""NAT-PMP as a datagram dialect (engine.dialects.natpmp): build, match, read; pure.

Issue 14 finding 5: a 16-byte map error must echo the internal port; an 8-byte error is
believed only as UNSUPPORTED_VERSION or UNSUPPORTED_OPCODE. And the known gap: an 8-byte
UNSUPPORTED_VERSION answers a NAT-PMP request when no PCP request takes it (Match.WEAK).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from engine.codes import NatPmpResult, PcpResult
from engine.dialects.natpmp import NatPmpDialect, address_matcher
from engine.errors import ResultCodeError, UnsupportedVersion
from engine.exchange import Match
from engine.protocols import Protocol
from engine.request import MapRequest
from engine.wire import natpmp, pcp

LOCAL = IPv4Address("192.168.1.20")
DIALECT = NatPmpDialect("192.168.1.1")
REQUEST = MapRequest(Protocol.TCP, 8080, lifetime=3600, via="natpmp")


def test_the_map_request_suggests_the_internal_port() -> None:
    sent = DIALECT.map(REQUEST, LOCAL, "map")
    assert sent.packet == natpmp.MapPacket(Protocol.TCP, 8080, 8080, 3600).encode()
    assert sent.description() == "NAT-PMP map tcp 8080"


def test_a_delete_asks_for_external_port_zero() -> None:
    sent = DIALECT.map(MapRequest(Protocol.UDP, 5000, 6000, lifetime=0), LOCAL, "delete")
    assert sent.packet == natpmp.MapPacket(Protocol.UDP, 5000, 0, 0).encode()


def test_a_success_is_read_into_a_grant_without_the_address() -> None:
    sent = DIALECT.map(REQUEST, LOCAL, "map")
    message = natpmp.MapResponse(Protocol.TCP, 0, 9, 8080, 18080, 3600)
    assert sent.match(message) is Match.YES
    grant = sent.read(message)
    assert (grant.mapping_protocol, grant.external_port, grant.external_address,
            grant.lifetime, grant.epoch) == ("natpmp", 18080, None, 3600, 9)


@pytest.mark.parametrize("result", [NatPmpResult.NOT_AUTHORIZED, 59000])
def test_a_map_error_echoing_the_internal_port_is_believed(result: int) -> None:
    sent = DIALECT.map(REQUEST, LOCAL, "map")
    message = natpmp.MapResponse(Protocol.TCP, result, 9, 8080, 0, 0)
    assert sent.match(message) is Match.YES
    with pytest.raises(ResultCodeError) as caught:
        sent.read(message)
    assert caught.value.code == result
    assert caught.value.request == "NAT-PMP map tcp 8080"  # the words, said for the error


@pytest.mark.parametrize("forged", [
    pytest.param(natpmp.MapResponse(Protocol.TCP, 59000, 9, 8081, 0, 0), id="other port"),
    pytest.param(natpmp.MapResponse(Protocol.UDP, 3, 9, 8080, 0, 0), id="other protocol"),
    pytest.param(natpmp.ErrorResponse(0x82, 59000, 9), id="8 bytes, unknown code"),
    pytest.param(natpmp.ErrorResponse(0x82, NatPmpResult.NOT_AUTHORIZED, 9), id="8 bytes, 2"),
    pytest.param(natpmp.ErrorResponse(0x81, NatPmpResult.UNSUPPORTED_OPCODE, 9),
                 id="8 bytes, another opcode"),
    pytest.param(pcp.Response(pcp.Opcode.MAP, PcpResult.NOT_AUTHORIZED, 0, 0), id="PCP error"),
])
def test_forged_errors_do_not_match(forged: natpmp.Response | pcp.Response) -> None:
    assert DIALECT.map(REQUEST, LOCAL, "map").match(forged) is Match.NO


@pytest.mark.parametrize("opcode", [0, 0x82])
def test_unsupported_opcode_in_8_bytes_is_believed(opcode: int) -> None:
    sent = DIALECT.map(REQUEST, LOCAL, "map")
    message = natpmp.ErrorResponse(opcode, NatPmpResult.UNSUPPORTED_OPCODE, 9)
    assert sent.match(message) is Match.YES
    with pytest.raises(ResultCodeError):
        sent.read(message)


def test_unsupported_version_in_8_bytes_is_a_weak_answer_read_as_natpmp_refused() -> None:
    # The same 8 bytes answer a PCP request from a NAT-PMP gateway: the transport gives
    # them to a NAT-PMP request only when no PCP request matches firmly.
    sent = DIALECT.map(REQUEST, LOCAL, "map")
    message = natpmp.ErrorResponse(0x82, NatPmpResult.UNSUPPORTED_VERSION, 9)
    assert sent.match(message) is Match.WEAK
    with pytest.raises(UnsupportedVersion) as caught:
        sent.read(message)
    assert caught.value.mapping_protocol == "natpmp"


def test_a_pcp_only_gateway_refusing_version_0() -> None:
    sent = DIALECT.map(REQUEST, LOCAL, "map")
    refusal = pcp.Response(pcp.Opcode.MAP, PcpResult.UNSUPP_VERSION, 0, 3)
    assert sent.match(refusal) is Match.YES
    with pytest.raises(UnsupportedVersion) as caught:
        sent.read(refusal)
    assert caught.value.server_version == 2


def test_the_external_address_request_and_its_answers() -> None:
    sent = DIALECT.address()
    assert sent is not None
    answer = natpmp.ExternalAddressResponse(0, 4, IPv4Address("203.0.113.7"))
    assert sent.match(answer) is Match.YES
    assert sent.read(answer).external_address == IPv4Address("203.0.113.7")
    assert address_matcher(natpmp.ErrorResponse(0x80, 59000, 4)) is Match.NO
    assert address_matcher(natpmp.ErrorResponse(0x80, NatPmpResult.UNSUPPORTED_VERSION, 4)) \
        is Match.WEAK


def test_heard_by_a_probe() -> None:
    answer = natpmp.ExternalAddressResponse(0, 4, IPv4Address("203.0.113.7"))
    heard = DIALECT.heard(answer, 0.002)
    assert (heard.spoken, heard.epoch, heard.external_address) == (
        True, 4, IPv4Address("203.0.113.7"))
    assert DIALECT.heard(natpmp.ErrorResponse(0, 1, 4), None).spoken is False


@pytest.mark.parametrize(("request_", "words"), [
    (MapRequest(47, 0), "NAT-PMP can map only TCP and UDP, not gre"),
    (MapRequest(Protocol.TCP, 80, prefer_failure=True), "PCP options"),
    (MapRequest(Protocol.TCP, 80, external_address=IPv4Address("203.0.113.7")),
     "external address"),
])
def test_natpmp_refuses_what_it_cannot_carry(request_: MapRequest, words: str) -> None:
    refusal = DIALECT.refusal(request_)
    assert refusal is not None
    assert words in refusal
    assert DIALECT.refusal(REQUEST) is None


def test_a_success_of_the_other_operation_on_the_port_is_not_this_ones_answer() -> None:
    # The map's late answer after the delete went out (same protocol and internal port):
    # taken as the delete's, it would say closed a port that may be open; and back.
    delete = DIALECT.map(MapRequest(Protocol.TCP, 8080, lifetime=0, via="natpmp"), LOCAL,
                         "delete")
    assert delete.match(natpmp.MapResponse(Protocol.TCP, 0, 9, 8080, 8080, 3600)) is Match.NO
    assert delete.match(natpmp.MapResponse(Protocol.TCP, 0, 9, 8080, 0, 0)) is Match.YES
    assert delete.match(natpmp.MapResponse(Protocol.TCP, NatPmpResult.NOT_AUTHORIZED, 9,
                                           8080, 0, 0)) is Match.YES
    mapping = DIALECT.map(REQUEST, LOCAL, "map")
    assert mapping.match(natpmp.MapResponse(Protocol.TCP, 0, 9, 8080, 0, 0)) is Match.NO


def test_the_address_request_after_a_map_gets_what_is_left_of_the_callers_timeout() -> None:
    from engine.dialects.datagram import address_budget

    # A map that took 16 s of a 20 s timeout leaves its address request 4 s, not 20 more.
    assert address_budget(20.0, 16.0) == pytest.approx(4.0)
    assert address_budget(20.0, 25.0) == 0.0
    assert address_budget(None, 16.0) is None
