"""PCP as a datagram dialect (engine.dialects.pcp): build, match, read; pure.

The matching rule of issue 14 finding 5: errors are held to the same matching as
successes (nonce, opcode, protocol, internal port), and a header-only error is
believed only where the server could not have parsed the request.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from engine.codes import NatPmpResult, PcpResult
from engine.dialects.base import Ask
from engine.dialects.pcp import HEADER_ONLY_ERRORS, PcpDialect
from engine.errors import ResultCodeError, UnsupportedVersion
from engine.exchange import Match
from engine.protocols import Protocol
from engine.request import MapRequest
from engine.wire import natpmp, pcp

LOCAL = IPv4Address("192.168.1.20")
EXTERNAL = IPv4Address("203.0.113.7")
NONCE = bytes(range(12))
OTHER_NONCE = bytes(12)
REQUEST = MapRequest(Protocol.TCP, 8080, lifetime=3600, nonce=NONCE)
DIALECT = PcpDialect("192.168.1.1")


def ask() -> Ask:
    return DIALECT.map(REQUEST, LOCAL, "map")


def answer(result: int = PcpResult.SUCCESS, *, nonce: bytes = NONCE, port: int = 8080,
           protocol: int = Protocol.TCP, lifetime: int = 3600) -> pcp.Response:
    data = pcp.MapData(nonce, protocol, port, 8080 if result == 0 else 0,
                       EXTERNAL if result == 0 else IPv4Address(0))
    return pcp.Response(pcp.Opcode.MAP, result, lifetime, 5, data)


def test_the_request_carries_what_was_asked() -> None:
    sent = ask()
    assert sent.protocol == "pcp"
    assert sent.description() == "PCP map tcp 8080"
    assert sent.packet == pcp.Request(pcp.Opcode.MAP, 3600, LOCAL, pcp.MapData(
        NONCE, Protocol.TCP, 8080, 8080, IPv4Address(0))).encode()


def test_a_genuine_success_is_read_into_a_grant() -> None:
    sent = ask()
    message = answer()
    assert sent.match(message) is Match.YES
    grant = sent.read(message)
    assert (grant.mapping_protocol, grant.external_port, grant.external_address,
            grant.lifetime, grant.epoch) == ("pcp", 8080, EXTERNAL, 3600, 5)


@pytest.mark.parametrize("result", [PcpResult.NOT_AUTHORIZED, PcpResult.NO_RESOURCES, 97])
def test_an_error_with_our_nonce_is_believed(result: int) -> None:
    sent = ask()
    message = answer(result, lifetime=30)
    assert sent.match(message) is Match.YES
    with pytest.raises(ResultCodeError) as caught:
        sent.read(message)
    assert caught.value.code == result
    assert caught.value.mapping_protocol == "pcp"
    assert caught.value.request == "PCP map tcp 8080"  # the words, said for the error


@pytest.mark.parametrize("forged", [
    pytest.param(answer(PcpResult.NOT_AUTHORIZED, nonce=OTHER_NONCE), id="other nonce"),
    pytest.param(answer(97, nonce=OTHER_NONCE), id="unknown code, other nonce"),
    pytest.param(answer(PcpResult.NO_RESOURCES, port=8081), id="other internal port"),
    pytest.param(answer(PcpResult.NO_RESOURCES, protocol=Protocol.UDP), id="other protocol"),
    pytest.param(answer(nonce=OTHER_NONCE), id="success, other nonce"),
    pytest.param(pcp.Response(pcp.Opcode.PEER, PcpResult.NOT_AUTHORIZED, 0, 0), id="opcode"),
])
def test_errors_are_held_to_the_same_matching_as_successes(forged: pcp.Response) -> None:
    assert ask().match(forged) is Match.NO


@pytest.mark.parametrize("result", sorted(set(range(1, 14)) | {97, 200}))
def test_a_header_only_error_is_believed_only_where_the_request_could_not_be_parsed(
        result: int) -> None:
    header_only = pcp.Response(pcp.Opcode.MAP, result, 0, 1)
    expected = Match.YES if result in HEADER_ONLY_ERRORS - {PcpResult.UNSUPP_VERSION} \
        else Match.NO
    assert ask().match(header_only) is expected


def test_a_version_2_unsupp_version_header_answers_the_natpmp_request_not_ours() -> None:
    # RFC 6887 §9: a PCP-only gateway refusing the version-0 request sent alongside.
    assert ask().match(pcp.Response(pcp.Opcode.MAP, PcpResult.UNSUPP_VERSION, 0, 1)) is Match.NO


def test_an_older_version_refusal_is_unsupported_version() -> None:
    sent = ask()
    message = pcp.Response(pcp.Opcode.MAP, PcpResult.UNSUPP_VERSION, 0, 1, version=1)
    assert sent.match(message) is Match.YES
    with pytest.raises(UnsupportedVersion) as caught:
        sent.read(message)
    assert caught.value.server_version == 1


def test_a_natpmp_gateway_refusing_version_2_is_a_firm_answer() -> None:
    sent = ask()
    refusal = natpmp.ErrorResponse(0x81, NatPmpResult.UNSUPPORTED_VERSION, 12)
    assert sent.match(refusal) is Match.YES
    with pytest.raises(UnsupportedVersion) as caught:
        sent.read(refusal)
    assert caught.value.server_version == 0
    for result in (NatPmpResult.UNSUPPORTED_OPCODE, NatPmpResult.NOT_AUTHORIZED, 59000):
        assert sent.match(natpmp.ErrorResponse(0x81, result, 12)) is Match.NO


def test_an_unknown_mandatory_option_makes_a_success_unbelievable() -> None:
    message = pcp.Response(pcp.Opcode.MAP, 0, 3600, 5, answer().data,
                           (pcp.UnknownOption(99, b""),))
    assert ask().match(message) is Match.NO


def test_peer_answers_must_name_the_same_remote_peer() -> None:
    request = MapRequest(Protocol.UDP, 5000, lifetime=600, via="pcp", nonce=NONCE,
                         remote_address=IPv4Address("198.51.100.20"), remote_port=443)
    sent = DIALECT.map(request, LOCAL, "map")
    assert sent.description() == "PCP PEER udp 5000 to 198.51.100.20:443"

    def peer_answer(remote_port: int) -> pcp.Response:
        return pcp.Response(pcp.Opcode.PEER, 0, 600, 5, pcp.PeerData(
            NONCE, Protocol.UDP, 5000, 5000, EXTERNAL, remote_port,
            IPv4Address("198.51.100.20")))

    assert sent.match(peer_answer(443)) is Match.YES
    assert sent.match(peer_answer(444)) is Match.NO


def test_announce_takes_a_bare_header() -> None:
    sent = DIALECT.probe(LOCAL)
    reply = pcp.Response(pcp.Opcode.ANNOUNCE, 0, 0, 42)
    assert sent.match(reply) is Match.YES
    heard = DIALECT.heard(reply, 0.01)
    assert (heard.spoken, heard.epoch, heard.rtt) == (True, 42, 0.01)
    refused = DIALECT.heard(pcp.Response(pcp.Opcode.ANNOUNCE, 1, 0, 0, version=1), None)
    assert (refused.spoken, refused.server_version) == (False, 1)


def test_pcp_carries_every_valid_request() -> None:
    assert DIALECT.refusal(MapRequest(47, 0, via="pcp")) is None
    assert DIALECT.address() is None  # the client maps briefly instead (RFC 6887 §11.6)


def test_the_answer_key_indexes_answers_by_what_their_request_sent() -> None:
    from engine.dialects.base import answer_key

    assert ask().key == answer_key(answer()) == ("pcp", NONCE)
    assert answer_key(answer(nonce=OTHER_NONCE)) != ask().key
    # Answers without data are offered to every request out.
    assert answer_key(pcp.Response(pcp.Opcode.MAP, PcpResult.MALFORMED_REQUEST, 0, 1)) is None
    assert answer_key(natpmp.ErrorResponse(0x81, 1, 0)) is None


def test_a_success_of_the_other_operation_on_the_mapping_is_not_this_ones_answer() -> None:
    # The late answer to a MAP (or renewal) arriving after the delete went out: same nonce,
    # protocol and port. Taken as the delete's, it would say closed a port that may be open.
    delete = DIALECT.map(MapRequest(Protocol.TCP, 8080, lifetime=0, nonce=NONCE), LOCAL,
                         "delete")
    assert delete.match(answer(lifetime=3600)) is Match.NO
    assert delete.match(answer(lifetime=0)) is Match.YES
    # An error answers either, whatever its (error) lifetime.
    assert delete.match(answer(PcpResult.NOT_AUTHORIZED, lifetime=30)) is Match.YES
    # And the delete's late answer is not a new MAP's.
    assert ask().match(answer(lifetime=0)) is Match.NO
