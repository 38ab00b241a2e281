"""The simulated gateway without sockets: GatewayCore driven with bytes and a fake clock.

Requests are built with the project's own encoders and answers read with its own
decoders, so these tests also check that the two sides of the wire code agree.
"""

from __future__ import annotations

import random
import struct
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.codes import NatPmpResult, PcpResult
from engine.errors import MalformedPacket
from engine.simulator import (
    AnnouncementKind,
    AnnounceMode,
    GatewayConfig,
    GatewayCore,
    GatewayState,
    Mapping,
    plan_address_change,
    plan_restart,
)
from engine.timing import natpmp_announcement_schedule
from engine.wire import natpmp, pcp
from engine.wire.addresses import IPAddress

T0 = 1000.0
CLIENT = ("192.168.1.10", 40000)
OTHER = ("192.168.1.11", 40001)
EXTERNAL = "203.0.113.7"
NONCE = bytes(range(12))
NONCE2 = bytes(range(100, 112))
TCP, UDP = 6, 17
NO_ADDRESS = IPv4Address(0)


def make(config: GatewayConfig | None = None, external: str | None = EXTERNAL) -> GatewayCore:
    return GatewayCore(config or GatewayConfig(),
                       ip_address(external) if external is not None else None, T0)


def ask(core: GatewayCore, payload: bytes, source: tuple[str, int] = CLIENT,
        at: float = T0) -> bytes | None:
    """The one answer to ``payload`` (None if none)."""
    answers = core.handle(payload, source, at)
    assert len(answers) <= 1
    return answers[0] if answers else None


def nat(core: GatewayCore, request: natpmp.Request, source: tuple[str, int] = CLIENT,
        at: float = T0) -> natpmp.Response:
    answer = ask(core, request.encode(), source, at)
    assert answer is not None
    return natpmp.decode_response(answer)


def nat_map(core: GatewayCore, protocol: int, internal: int, suggested: int, lifetime: int,
            source: tuple[str, int] = CLIENT, at: float = T0) -> natpmp.MapResponse:
    response = nat(core, natpmp.MapPacket(protocol, internal, suggested, lifetime), source, at)
    assert isinstance(response, natpmp.MapResponse)
    return response


def pcp_map_request(*, protocol: int = TCP, internal: int = 8080, suggested: int = 0,
                    lifetime: int = 3600, nonce: bytes = NONCE,
                    suggested_address: IPAddress = NO_ADDRESS,
                    options: tuple[pcp.Option, ...] = (),
                    client: str = CLIENT[0]) -> bytes:
    return pcp.Request(pcp.Opcode.MAP, lifetime, ip_address(client),
                       pcp.MapData(nonce, protocol, internal, suggested, suggested_address),
                       options).encode()


def pcp_ask(core: GatewayCore, payload: bytes, source: tuple[str, int] = CLIENT,
            at: float = T0) -> pcp.Response:
    answer = ask(core, payload, source, at)
    assert answer is not None
    return pcp.decode_response(answer)


def map_data(response: pcp.Response) -> pcp.MapData:
    assert isinstance(response.data, pcp.MapData)
    return response.data


# --------------------------------------------------------------------------------------------
# NAT-PMP
# --------------------------------------------------------------------------------------------


def test_natpmp_external_address_and_epoch_counts_whole_seconds_since_start() -> None:
    core = make()
    response = nat(core, natpmp.ExternalAddressRequest(), at=T0 + 5.9)
    assert response == natpmp.ExternalAddressResponse(0, 5, IPv4Address(EXTERNAL))


def test_epoch_wraps_at_32_bits_from_the_configured_start() -> None:
    core = make(GatewayConfig(initial_epoch=2**32 - 2))
    assert core.epoch(T0 + 1) == 2**32 - 1
    assert core.epoch(T0 + 3) == 1


def test_natpmp_map_grants_the_suggested_port_then_renews_the_same_mapping() -> None:
    core = make()
    first = nat_map(core, TCP, 8080, 9000, 3600)
    assert (first.result, first.internal_port, first.external_port, first.lifetime) == (
        0, 8080, 9000, 3600)
    # The same client asking again (another suggestion, later) renews the same mapping.
    again = nat_map(core, TCP, 8080, 9100, 7200, at=T0 + 100)
    assert (again.external_port, again.lifetime) == (9000, 7200)
    (mapping,) = core.mappings(T0 + 100)
    assert (mapping.client, mapping.protocol, mapping.internal_port, mapping.external_port,
            mapping.via, mapping.nonce, mapping.expires_at) == (
        CLIENT[0], TCP, 8080, 9000, "natpmp", None, T0 + 100 + 7200)


def test_natpmp_suggested_zero_starts_from_the_internal_port_like_miniupnpd() -> None:
    assert nat_map(make(), UDP, 5000, 0, 3600).external_port == 5000


def test_port_conflict_assigns_the_next_free_port_above_the_suggestion() -> None:
    core = make()
    assert nat_map(core, TCP, 8080, 8080, 3600).external_port == 8080
    assert nat_map(core, TCP, 8080, 8080, 3600, source=OTHER).external_port == 8081
    assert nat_map(core, TCP, 9, 8080, 3600, source=OTHER).external_port == 8082
    # UDP is another port space.
    assert nat_map(core, UDP, 8080, 8080, 3600, source=OTHER).external_port == 8080


def test_port_assignment_wraps_within_the_port_range_and_runs_out() -> None:
    core = make(GatewayConfig(port_range=(5000, 5002)))
    assert nat_map(core, TCP, 1, 5002, 3600).external_port == 5002
    assert nat_map(core, TCP, 2, 5002, 3600).external_port == 5000  # wrapped
    assert nat_map(core, TCP, 3, 0, 3600).external_port == 5001  # internal 3 is out of range
    full = nat_map(core, TCP, 4, 0, 3600)
    assert (full.result, full.external_port, full.lifetime) == (
        NatPmpResult.OUT_OF_RESOURCES, 0, 0)


def test_natpmp_delete_and_delete_all_of_one_protocol() -> None:
    core = make()
    for port in (1000, 1001, 1002):
        nat_map(core, TCP, port, 0, 3600)
    nat_map(core, UDP, 1000, 0, 3600)
    nat_map(core, TCP, 1000, 0, 3600, source=OTHER)
    deleted = nat_map(core, TCP, 1001, 0, 0)
    # RFC 6886 §3.4: the answer to a deletion has external port and lifetime 0.
    assert (deleted.result, deleted.internal_port, deleted.external_port, deleted.lifetime) == (
        0, 1001, 0, 0)
    assert {(m.client, m.protocol, m.internal_port) for m in core.mappings(T0)} == {
        (CLIENT[0], TCP, 1000), (CLIENT[0], TCP, 1002), (CLIENT[0], UDP, 1000),
        (OTHER[0], TCP, 1000)}
    everything = nat_map(core, TCP, 0, 0, 0)
    assert everything.result == 0
    assert {(m.client, m.protocol, m.internal_port) for m in core.mappings(T0)} == {
        (CLIENT[0], UDP, 1000), (OTHER[0], TCP, 1000)}
    # Deleting what is not there succeeds too.
    assert nat_map(core, TCP, 4242, 0, 0).result == 0


def test_natpmp_internal_port_zero_with_a_lifetime_is_refused() -> None:
    assert nat_map(make(), TCP, 0, 0, 3600).result == NatPmpResult.NOT_AUTHORIZED


@pytest.mark.parametrize(("erratum", "opcode"), [(True, 128 + 7), (False, 0)])
def test_natpmp_unknown_opcode_gets_unsupported_opcode(erratum: bool, opcode: int) -> None:
    core = make(GatewayConfig(natpmp_erratum_opcode=erratum))
    answer = ask(core, bytes([0, 7]))
    assert answer is not None
    assert len(answer) == 8
    assert natpmp.decode_response(answer) == natpmp.ErrorResponse(
        opcode, NatPmpResult.UNSUPPORTED_OPCODE, 0)


def test_natpmp_only_gateway_answers_other_versions_with_the_8_byte_error() -> None:
    core = make(GatewayConfig(speak_pcp=False))
    for payload in (pcp_map_request(), bytes([1, 1, 0, 0])):
        answer = ask(core, payload, at=T0 + 2)
        assert answer is not None
        assert len(answer) == 8
        assert natpmp.decode_response(answer) == natpmp.ErrorResponse(
            128 + 1, NatPmpResult.UNSUPPORTED_VERSION, 2)


def test_pcp_only_gateway_answers_natpmp_with_pcp_unsupp_version_version_2() -> None:
    core = make(GatewayConfig(speak_natpmp=False))
    answer = ask(core, natpmp.MapPacket(TCP, 1, 1, 60).encode())
    assert answer is not None
    assert len(answer) == 24
    response = pcp.decode_response(answer)
    assert (response.version, response.opcode, response.result, response.lifetime) == (
        2, 2, PcpResult.UNSUPP_VERSION, 1800)


def test_requests_a_gateway_cannot_answer_are_ignored_and_counted() -> None:
    core = make()
    for junk in (b"", b"\x00", bytes([0, 1]) + bytes(9),  # map request one byte short
                 bytes([0, 128]) + bytes(10),  # a NAT-PMP response
                 bytes([2, 0x81]) + bytes(58),  # a PCP response
                 bytes([2, 1]) + bytes(10)):  # PCP, shorter than the header
        assert ask(core, junk) is None
    assert core.counters.ignored == 6
    assert core.counters.answered == 0
    assert core.counters.received == 6


def test_natpmp_lifetime_is_clamped_like_pcp() -> None:
    core = make(GatewayConfig(min_lifetime=60, max_lifetime=60))  # a VPN gateway
    assert nat_map(core, TCP, 1, 0, 7200).lifetime == 60
    assert nat_map(core, TCP, 2, 0, 1).lifetime == 60


def test_no_external_address_is_a_network_failure() -> None:
    core = make(external=None)
    assert nat(core, natpmp.ExternalAddressRequest()) == natpmp.ExternalAddressResponse(
        NatPmpResult.NETWORK_FAILURE, 0, IPv4Address(0))
    assert nat_map(core, TCP, 1, 0, 60).result == NatPmpResult.NETWORK_FAILURE
    response = pcp_ask(core, pcp_map_request())
    assert (response.result, response.lifetime) == (PcpResult.NETWORK_FAILURE, 30)


def test_natpmp_may_not_touch_a_pcp_mapping_unless_nonces_are_lax() -> None:
    core = make()
    pcp_ask(core, pcp_map_request(internal=7000))
    assert nat_map(core, TCP, 7000, 0, 60).result == NatPmpResult.NOT_AUTHORIZED
    assert nat_map(core, TCP, 7000, 0, 0).result == NatPmpResult.NOT_AUTHORIZED
    core.config = replace(core.config, strict_nonce=False)
    taken = nat_map(core, TCP, 7000, 0, 600)
    assert (taken.result, taken.external_port) == (0, 7000)
    assert [m.via for m in core.mappings(T0)] == ["natpmp"]


# --------------------------------------------------------------------------------------------
# Expiry
# --------------------------------------------------------------------------------------------


def test_mappings_expire_at_their_lifetime_and_free_their_port() -> None:
    core = make(GatewayConfig(min_lifetime=1))
    nat_map(core, TCP, 8080, 8080, 100)
    assert len(core.mappings(T0 + 99.9)) == 1
    assert core.mappings(T0 + 100) == ()
    # Expired: another client gets the port, and checks run lazily on each request too.
    assert nat_map(core, TCP, 8080, 8080, 100, source=OTHER, at=T0 + 100).external_port == 8080


def test_a_renewal_postpones_expiry() -> None:
    core = make(GatewayConfig(min_lifetime=1))
    pcp_ask(core, pcp_map_request(lifetime=100))
    pcp_ask(core, pcp_map_request(lifetime=100), at=T0 + 90)
    assert len(core.mappings(T0 + 150)) == 1
    assert core.mappings(T0 + 190) == ()


def test_expired_pcp_mapping_no_longer_guards_its_nonce() -> None:
    core = make(GatewayConfig(min_lifetime=1))
    pcp_ask(core, pcp_map_request(lifetime=10))
    refused = pcp_ask(core, pcp_map_request(nonce=NONCE2), at=T0 + 5)
    assert refused.result == PcpResult.NOT_AUTHORIZED
    assert pcp_ask(core, pcp_map_request(nonce=NONCE2), at=T0 + 10).result == 0


def test_state_heap_survives_many_renewals() -> None:
    state = GatewayState(IPv4Address(1), 0.0)
    endpoint_address = IPv4Address("10.0.0.1")
    for i in range(500):
        state.put(Mapping(endpoint_address, TCP, 80, 80, 10, float(i + 10), "natpmp"))
    assert len(state) == 1
    assert len(state._expiry) < 4 * len(state) + 65
    assert state.expire(508.0) == []
    assert [m.expires_at for m in state.expire(509.0)] == [509.0]
    assert state.port_of((TCP, endpoint_address, 80)) is None


# --------------------------------------------------------------------------------------------
# PCP MAP
# --------------------------------------------------------------------------------------------


def test_pcp_map_echoes_nonce_and_reports_assigned_port_and_address() -> None:
    core = make()
    response = pcp_ask(core, pcp_map_request(protocol=UDP, internal=5000, suggested=6000,
                                             lifetime=7200), at=T0 + 3)
    assert (response.opcode, response.result, response.lifetime, response.epoch) == (
        1, 0, 7200, 3)
    assert map_data(response) == pcp.MapData(NONCE, UDP, 5000, 6000, IPv4Address(EXTERNAL))


def test_pcp_renewal_with_another_nonce_is_not_authorized_unless_lax() -> None:
    core = make()
    first = map_data(pcp_ask(core, pcp_map_request(suggested=9000)))
    renewed = pcp_ask(core, pcp_map_request(suggested=9999, lifetime=600), at=T0 + 60)
    assert (renewed.result, map_data(renewed).external_port, renewed.lifetime) == (
        0, first.external_port, 600)
    stranger = pcp_ask(core, pcp_map_request(nonce=NONCE2))
    assert (stranger.result, stranger.lifetime) == (PcpResult.NOT_AUTHORIZED, 1800)
    # An error echoes the request's opcode data unchanged.
    assert map_data(stranger) == pcp.MapData(NONCE2, TCP, 8080, 0, IPv4Address(0))
    core.config = replace(core.config, strict_nonce=False)
    assert pcp_ask(core, pcp_map_request(nonce=NONCE2)).result == 0
    assert [m.nonce for m in core.mappings(T0)] == [NONCE2]


def test_pcp_delete_checks_the_nonce_and_answers_with_zeros() -> None:
    core = make()
    pcp_ask(core, pcp_map_request(suggested=9000))
    refused = pcp_ask(core, pcp_map_request(nonce=NONCE2, lifetime=0))
    assert refused.result == PcpResult.NOT_AUTHORIZED
    assert len(core.mappings(T0)) == 1
    deleted = pcp_ask(core, pcp_map_request(lifetime=0))
    assert (deleted.result, deleted.lifetime) == (0, 0)
    # RFC 6887 §15.1 with erratum 3621: port 0 and the all-zeros address of the family.
    assert map_data(deleted) == pcp.MapData(NONCE, TCP, 8080, 0, IPv4Address(0))
    assert core.mappings(T0) == ()


def test_pcp_delete_of_nothing_succeeds_or_emulates_miniupnpd() -> None:
    core = make()
    assert pcp_ask(core, pcp_map_request(lifetime=0)).result == 0
    core.config = replace(core.config, missing_delete_result=PcpResult.NO_RESOURCES)
    response = pcp_ask(core, pcp_map_request(lifetime=0))
    assert (response.result, response.lifetime) == (PcpResult.NO_RESOURCES, 30)


def test_pcp_delete_all_ports_removes_only_what_the_nonce_owns() -> None:
    core = make()
    pcp_ask(core, pcp_map_request(internal=1))
    pcp_ask(core, pcp_map_request(internal=2))
    pcp_ask(core, pcp_map_request(internal=3, nonce=NONCE2))
    pcp_ask(core, pcp_map_request(internal=4, protocol=UDP))
    assert pcp_ask(core, pcp_map_request(internal=0, lifetime=0)).result == 0
    assert sorted((m.protocol, m.internal_port) for m in core.mappings(T0)) == [
        (TCP, 3), (UDP, 4)]
    assert pcp_ask(core, pcp_map_request(protocol=0, internal=0, lifetime=0)).result == 0
    assert [(m.protocol, m.internal_port) for m in core.mappings(T0)] == [(TCP, 3)]


def test_lifetime_is_clamped_to_the_configured_range() -> None:
    core = make(GatewayConfig(min_lifetime=120, max_lifetime=86400))
    assert pcp_ask(core, pcp_map_request(internal=1, lifetime=30)).lifetime == 120
    assert pcp_ask(core, pcp_map_request(internal=2, lifetime=2**32 - 1)).lifetime == 86400
    vpn = make(GatewayConfig(min_lifetime=60, max_lifetime=60))
    assert pcp_ask(vpn, pcp_map_request(lifetime=7200)).lifetime == 60


def test_prefer_failure_gets_exactly_the_suggestion_or_cannot_provide_external() -> None:
    core = make()
    pcp_ask(core, pcp_map_request(internal=1, suggested=9000))
    options: tuple[pcp.Option, ...] = (pcp.PreferFailure(),)
    taken = pcp_ask(core, pcp_map_request(internal=2, suggested=9000, options=options))
    assert (taken.result, taken.lifetime) == (PcpResult.CANNOT_PROVIDE_EXTERNAL, 30)
    free = pcp_ask(core, pcp_map_request(internal=2, suggested=9001, options=options))
    assert (free.result, map_data(free).external_port, free.options) == (0, 9001, options)
    wrong_address = pcp_ask(core, pcp_map_request(internal=3, suggested=9500, options=options,
                                                  suggested_address=IPv4Address("192.0.2.1")))
    assert wrong_address.result == PcpResult.CANNOT_PROVIDE_EXTERNAL
    # Renewing with PREFER_FAILURE but another port than the one held cannot be granted.
    moved = pcp_ask(core, pcp_map_request(internal=2, suggested=9002, options=options))
    assert moved.result == PcpResult.CANNOT_PROVIDE_EXTERNAL
    nothing_suggested = pcp_ask(core, pcp_map_request(internal=4, options=options))
    assert nothing_suggested.result == PcpResult.MALFORMED_OPTION


def test_without_prefer_failure_another_port_and_the_real_address_are_given() -> None:
    core = make()
    pcp_ask(core, pcp_map_request(internal=1, suggested=9000))
    response = pcp_ask(core, pcp_map_request(internal=2, suggested=9000,
                                             suggested_address=IPv4Address("192.0.2.1")))
    assert (response.result, map_data(response).external_port,
            map_data(response).external_address) == (0, 9001, IPv4Address(EXTERNAL))


def test_third_party_is_refused_unless_allowed() -> None:
    third = pcp.ThirdParty(IPv4Address("192.168.1.50"))
    core = make()
    refused = pcp_ask(core, pcp_map_request(options=(third,)))
    assert (refused.result, refused.lifetime) == (PcpResult.NOT_AUTHORIZED, 1800)
    core.config = replace(core.config, third_party_refusal=PcpResult.UNSUPP_OPTION)
    assert pcp_ask(core, pcp_map_request(options=(third,))).result == PcpResult.UNSUPP_OPTION
    core.config = replace(core.config, allow_third_party=True)
    granted = pcp_ask(core, pcp_map_request(options=(third,)))
    assert (granted.result, granted.options) == (0, (third,))
    (mapping,) = core.mappings(T0)
    assert (mapping.client, mapping.requested_by) == ("192.168.1.50", IPv4Address(CLIENT[0]))
    itself = pcp_ask(core, pcp_map_request(options=(pcp.ThirdParty(IPv4Address(CLIENT[0])),)))
    assert itself.result == PcpResult.MALFORMED_REQUEST


def test_filters_are_stored_echoed_added_and_cleared_by_prefix_zero() -> None:
    core = make(GatewayConfig(max_filters=3))
    f1 = pcp.Filter(32, 0, IPv4Address("198.51.100.1"))
    f2 = pcp.Filter(24, 443, IPv4Address("198.51.100.0"))
    f3 = pcp.Filter(32, 0, IPv4Address("198.51.100.3"))
    first = pcp_ask(core, pcp_map_request(options=(f1, f2)))
    assert (first.result, first.options) == (0, (f1, f2))
    assert core.mappings(T0)[0].filters == (f1, f2)
    pcp_ask(core, pcp_map_request(options=(f3,)))
    assert core.mappings(T0)[0].filters == (f1, f2, f3)
    pcp_ask(core, pcp_map_request())  # a renewal without FILTER keeps them
    assert core.mappings(T0)[0].filters == (f1, f2, f3)
    too_many = pcp_ask(core, pcp_map_request(options=(pcp.Filter(32, 1, IPv4Address(9)),)))
    assert (too_many.result, too_many.lifetime) == (PcpResult.EXCESSIVE_REMOTE_PEERS, 1800)
    cleared = pcp_ask(core, pcp_map_request(options=(pcp.Filter(0, 0, IPv4Address(0)), f3)))
    assert cleared.result == 0
    assert core.mappings(T0)[0].filters == (f3,)


def test_unknown_options_mandatory_refused_optional_ignored() -> None:
    core = make()
    mandatory = pcp_ask(core, pcp_map_request(options=(pcp.UnknownOption(99, b"abcd"),)))
    assert (mandatory.result, mandatory.options) == (
        PcpResult.UNSUPP_OPTION, (pcp.UnknownOption(99, b"abcd"),))
    optional = pcp_ask(core, pcp_map_request(options=(pcp.UnknownOption(200, b"abcd"),)))
    assert (optional.result, optional.options) == (0, ())


def test_options_an_opcode_does_not_take_are_malformed_requests() -> None:
    core = make()
    peer = pcp.Request(pcp.Opcode.PEER, 600, IPv4Address(CLIENT[0]),
                       pcp.PeerData(NONCE, TCP, 1, 0, IPv4Address(0), 80,
                                    IPv4Address("198.51.100.1")),
                       (pcp.Filter(32, 0, IPv4Address(1)),))
    assert pcp_ask(core, peer.encode()).result == PcpResult.MALFORMED_REQUEST


def test_client_address_field_must_match_the_source() -> None:
    response = pcp_ask(make(), pcp_map_request(client="10.9.9.9"))
    assert (response.result, response.lifetime) == (PcpResult.ADDRESS_MISMATCH, 1800)


def test_protocol_zero_maps_every_protocol_with_ports_zero() -> None:
    core = make()
    response = pcp_ask(core, pcp_map_request(protocol=0, internal=0))
    assert (response.result, map_data(response).external_port) == (0, 0)
    assert [(m.protocol, m.external_port) for m in core.mappings(T0)] == [(0, 0)]
    # Only one host can have the whole external address.
    other = pcp_ask(core, pcp_map_request(protocol=0, internal=0, client=OTHER[0]), OTHER)
    assert other.result == PcpResult.NO_RESOURCES
    bad = pcp_ask(core, pcp_map_request(protocol=0, internal=80))
    assert bad.result == PcpResult.MALFORMED_REQUEST
    no_port = pcp_ask(core, pcp_map_request(protocol=TCP, internal=0))
    assert no_port.result == PcpResult.MALFORMED_REQUEST


def test_unsupported_protocols_are_refused_by_both_protocols() -> None:
    core = make(GatewayConfig(unsupported_protocols=frozenset({UDP, 132})))
    assert pcp_ask(core, pcp_map_request(protocol=132)).result == PcpResult.UNSUPP_PROTOCOL
    assert pcp_ask(core, pcp_map_request(protocol=TCP)).result == 0
    refused = nat(core, natpmp.MapPacket(UDP, 1, 1, 60))
    assert refused == natpmp.ErrorResponse(129, NatPmpResult.UNSUPPORTED_OPCODE, 0)


def test_requests_the_decoder_rejects_get_header_only_errors_with_the_reserved_copy() -> None:
    core = make()
    request = pcp_map_request()
    short = pcp_ask(core, request[:-4])  # missing part of its opcode data
    assert (short.opcode, short.result, short.data, short.lifetime) == (
        1, PcpResult.MALFORMED_REQUEST, None, 1800)
    # RFC 6887 §7.2: the last 96 bits of the client address field, copied.
    assert short.reserved == request[12:24]
    unknown = pcp_ask(core, bytes([2, 5]) + request[2:24])
    assert (unknown.opcode, unknown.result) == (5, PcpResult.UNSUPP_OPCODE)
    odd = pcp_ask(core, request + b"\x00\x00")
    assert odd.result == PcpResult.MALFORMED_REQUEST


def test_announce_request_is_answered_success_lifetime_zero() -> None:
    request = pcp.Request(pcp.Opcode.ANNOUNCE, 0, IPv4Address(CLIENT[0]))
    response = pcp_ask(make(), request.encode(), at=T0 + 7)
    assert (response.opcode, response.result, response.lifetime, response.epoch,
            response.data) == (0, 0, 0, 7, None)


def test_peer_creates_an_implicit_mapping_sharing_the_endpoints_port() -> None:
    core = make()
    remote = IPv4Address("198.51.100.20")
    peer = pcp.Request(pcp.Opcode.PEER, 600, IPv4Address(CLIENT[0]),
                       pcp.PeerData(NONCE, UDP, 4000, 4500, IPv4Address(0), 3478, remote))
    response = pcp_ask(core, peer.encode())
    assert isinstance(response.data, pcp.PeerData)
    assert (response.result, response.lifetime, response.data.external_port,
            response.data.external_address, response.data.remote_port,
            response.data.remote_address) == (0, 600, 4500, IPv4Address(EXTERNAL), 3478, remote)
    (mapping,) = core.mappings(T0)
    assert (mapping.is_peer, mapping.remote_peer) == (True, (remote, 3478))
    # A MAP of the same endpoint shares the external port (one endpoint, one port).
    mapped = pcp_ask(core, pcp_map_request(protocol=UDP, internal=4000, suggested=5555))
    assert map_data(mapped).external_port == 4500
    gone = pcp_ask(core, replace(peer, lifetime=0).encode())
    assert (gone.result, gone.lifetime) == (0, 0)
    assert [m.is_peer for m in core.mappings(T0)] == [False]


def test_forced_results_answer_everything_and_change_nothing() -> None:
    core = make(GatewayConfig(force_pcp_result=PcpResult.NO_RESOURCES, force_natpmp_result=3))
    response = pcp_ask(core, pcp_map_request())
    assert (response.result, response.lifetime, map_data(response).nonce) == (
        PcpResult.NO_RESOURCES, 30, NONCE)
    assert nat_map(core, TCP, 1, 0, 60).result == NatPmpResult.NETWORK_FAILURE
    assert nat(core, natpmp.ExternalAddressRequest()) == natpmp.ExternalAddressResponse(
        3, 0, IPv4Address(0))
    assert core.mappings(T0) == ()
    core.config = replace(core.config, force_pcp_result=200)  # an unknown code: long lifetime
    assert pcp_ask(core, pcp_map_request()).lifetime == 1800


def test_mikrotik_quirk_refuses_suggested_port_zero() -> None:
    core = make(GatewayConfig(refuse_zero_suggested_port=True))
    assert pcp_ask(core, pcp_map_request(suggested=0)).result == PcpResult.MALFORMED_REQUEST
    assert pcp_ask(core, pcp_map_request(suggested=8080)).result == 0


def test_apple_quirk_answers_pcp_with_natpmp_unsupported_version() -> None:
    core = make(GatewayConfig(answer_pcp_with_natpmp=True))
    answer = ask(core, pcp_map_request())
    assert answer is not None
    assert len(answer) == 8
    assert natpmp.decode_response(answer).result == NatPmpResult.UNSUPPORTED_VERSION
    assert nat_map(core, TCP, 1, 0, 60).result == 0


def test_max_mappings_gives_no_resources_but_renewals_pass() -> None:
    core = make(GatewayConfig(max_mappings=1))
    assert pcp_ask(core, pcp_map_request(internal=1)).result == 0
    full = pcp_ask(core, pcp_map_request(internal=2))
    assert (full.result, full.lifetime) == (PcpResult.NO_RESOURCES, 30)
    assert nat_map(core, TCP, 3, 0, 60).result == NatPmpResult.OUT_OF_RESOURCES
    assert pcp_ask(core, pcp_map_request(internal=1)).result == 0


def test_ipv6_client_and_scoped_source() -> None:
    core = make()
    response = pcp_ask(core, pcp_map_request(client="fe80::1"), source=("fe80::1%lo", 1))
    assert response.result == 0
    assert core.mappings(T0)[0].internal_address == IPv6Address("fe80::1")
    # A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d.
    mapped = pcp_ask(core, pcp_map_request(internal=2), source=("::ffff:" + CLIENT[0], 1))
    assert mapped.result == 0


# --------------------------------------------------------------------------------------------
# Faults, events
# --------------------------------------------------------------------------------------------


def test_silent_gateway_answers_nothing_and_changes_nothing() -> None:
    core = make(GatewayConfig(silent=True))
    assert ask(core, pcp_map_request()) is None
    assert core.mappings(T0) == ()
    assert (core.counters.received, core.counters.silenced) == (1, 1)
    assert core.counters.count("pcp", 1) == 1


def test_drop_rate_is_deterministic_for_a_seed() -> None:
    def answered(seed: int) -> list[bool]:
        core = make(GatewayConfig(drop_rate=0.5, seed=seed))
        return [ask(core, natpmp.ExternalAddressRequest().encode()) is not None
                for _ in range(40)]

    pattern = answered(7)
    assert pattern == answered(7)
    rng = random.Random(7)
    assert pattern == [rng.random() >= 0.5 for _ in range(40)]
    assert 5 < sum(pattern) < 35


def test_restart_loses_state_and_resets_the_epoch() -> None:
    core = make()
    nat_map(core, TCP, 1, 0, 3600)
    core.restart(T0 + 50)
    assert core.mappings(T0 + 50) == ()
    assert core.epoch(T0 + 52) == 2


def test_address_change_keeps_mappings_and_answers_with_the_new_address() -> None:
    core = make()
    pcp_ask(core, pcp_map_request())
    core.set_external_address(IPv4Address("198.51.100.9"))
    core.reset_epoch(T0 + 30)
    renewed = pcp_ask(core, pcp_map_request(), at=T0 + 31)
    assert (map_data(renewed).external_address, renewed.epoch) == (
        IPv4Address("198.51.100.9"), 1)
    assert core.natpmp_announcement(T0 + 31) == natpmp.ExternalAddressResponse(
        0, 1, IPv4Address("198.51.100.9")).encode()
    assert pcp.decode_response(core.pcp_announcement(T0 + 31) or b"") == pcp.Response(
        0, 0, 0, 1)


def test_announcements_follow_the_spoken_protocols() -> None:
    core = make(GatewayConfig(speak_natpmp=False), external="2001:db8::1")
    assert core.natpmp_announcement(T0) is None
    assert core.pcp_announcement(T0) is not None
    natpmp_only = make(GatewayConfig(speak_pcp=False))
    assert natpmp_only.pcp_announcement(T0) is None
    # NAT-PMP cannot announce an IPv6 address.
    assert make(external="2001:db8::1").natpmp_announcement(T0) is None


def test_announcement_plans() -> None:
    targets = (("127.0.0.1", 6000), ("::1", 6001))
    rfc = GatewayConfig(announce_targets=targets, announce_count=3, announce_first_interval=0.5)
    plan = plan_address_change(rfc)
    assert [p.at for p in plan] == [at for at in natpmp_announcement_schedule(3, 0.5)
                                    for _ in range(4)]
    assert {(p.kind, p.target) for p in plan} == {
        (kind, target) for kind in AnnouncementKind for target in targets}
    assert plan_restart(rfc) == plan
    mini = replace(rfc, announce_mode=AnnounceMode.MINIUPNPD, miniupnpd_announce_ports=(7, 8))
    assert [(p.at, p.kind, p.target) for p in plan_address_change(mini)] == [
        (0.0, AnnouncementKind.NATPMP, ("127.0.0.1", 7)),
        (0.0, AnnouncementKind.NATPMP, ("127.0.0.1", 8)),
        (0.0, AnnouncementKind.NATPMP, ("::1", 7)),
        (0.0, AnnouncementKind.NATPMP, ("::1", 8)),
        (0.0, AnnouncementKind.PCP, ("127.0.0.1", 7)),
        (0.0, AnnouncementKind.PCP, ("::1", 7))]
    assert [p.kind for p in plan_restart(mini)] == [AnnouncementKind.PCP] * 2
    assert {p.kind for p in plan_address_change(replace(rfc, speak_pcp=False))} == {
        AnnouncementKind.NATPMP}


@pytest.mark.parametrize("changes", [
    {"announce_targets": (("192.168.1.1", 5350),)},
    {"announce_targets": (("localhost", 5350),)},
    {"drop_rate": 1.5},
    {"delay": -1},
    {"delay": 0.1, "delay_max": 0.05},
    {"delay_max": float("inf")},
    {"service_times": (0.1, -0.1)},
    {"min_lifetime": 100, "max_lifetime": 50},
    {"force_pcp_result": 0},
    {"force_pcp_result": 256},
    {"port_range": (10, 5)},
    {"announce_count": 0},
])
def test_config_rejects_invalid_values(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        replace(GatewayConfig(), **changes)


def test_service_times_replay_a_profile_then_draw_from_a_seeded_range() -> None:
    def drawn(config: GatewayConfig, count: int) -> list[float]:
        core = GatewayCore(config, None, 0.0)
        times = []
        for _ in range(count):
            core.accept(natpmp.ExternalAddressRequest().encode())  # draws a drop, if lossy
            times.append(core.service_time())
        assert core.counters.busy == pytest.approx(sum(times))
        return times

    assert drawn(GatewayConfig(delay=0.01), 2) == [0.01, 0.01]
    assert drawn(GatewayConfig(delay=0.01, service_times=(0.3, 0.2)), 3) == [0.3, 0.2, 0.01]
    erratic = GatewayConfig(delay=0.06, delay_max=0.25, seed=3)
    times = drawn(erratic, 50)
    assert all(0.06 <= t <= 0.25 for t in times)
    assert len(set(times)) == 50
    assert drawn(erratic, 50) == times  # the seed fixes them
    assert drawn(replace(erratic, drop_rate=0.5), 50) == times  # drops draw elsewhere


# --------------------------------------------------------------------------------------------
# Hostile input
# --------------------------------------------------------------------------------------------


def _check_answer(request: bytes, answer: bytes) -> None:
    """Whatever the gateway sends must decode with the client's own decoders."""
    if len(answer) in (8, 12, 16) and answer[0] == 0:
        natpmp.decode_response(answer)
    else:
        pcp.decode_response(answer)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_crash_and_every_answer_decodes(data: bytes) -> None:
    core = make(GatewayConfig(allow_third_party=True))
    for answer in core.handle(data, CLIENT, T0):
        _check_answer(data, answer)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([pcp_map_request(options=(pcp.Filter(24, 80, IPv4Address(5)),)),
                        natpmp.MapPacket(TCP, 80, 80, 60).encode(),
                        pcp.Request(pcp.Opcode.PEER, 60, IPv4Address(CLIENT[0]),
                                    pcp.PeerData(NONCE, TCP, 1, 0, IPv4Address(0), 2,
                                                 IPv4Address(3))).encode()]),
       st.integers(0, 119), st.integers(0, 255))
def test_mutated_requests_never_crash_and_every_answer_decodes(base: bytes, index: int,
                                                               value: int) -> None:
    data = bytearray(base)
    data[index % len(data)] = value
    core = make()
    for answer in core.handle(bytes(data), CLIENT, T0):
        try:
            _check_answer(bytes(data), answer)
        except MalformedPacket as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{bytes(data).hex()} got an undecodable answer {answer.hex()}: {exc}")


def test_natpmp_forced_map_error_reads_the_internal_port() -> None:
    core = make(GatewayConfig(force_natpmp_result=NatPmpResult.OUT_OF_RESOURCES))
    response = nat_map(core, UDP, 4321, 0, 60)
    assert (response.result, response.internal_port) == (4, 4321)
    raw = ask(core, natpmp.MapPacket(UDP, 4321, 0, 60).encode())
    assert raw is not None
    assert struct.unpack_from("!H", raw, 8)[0] == 4321


def test_a_mapping_removed_and_added_again_expires_at_its_new_time_only() -> None:
    state = GatewayState(IPv4Address(1), 0.0)
    address = IPv4Address("10.0.0.1")
    state.put(Mapping(address, TCP, 80, 80, 10, 10.0, "natpmp"))
    state.remove((TCP, address, 80, None))
    state.put(Mapping(address, TCP, 80, 80, 30, 30.0, "natpmp"))
    assert state.expire(20.0) == []  # the first one's entry is left behind, not acted on
    assert [m.expires_at for m in state.expire(30.0)] == [30.0]
    assert len(state) == 0
    assert state.port_of((TCP, address, 80)) is None


def test_a_renewal_keeps_what_the_table_holds_instead_of_new_equal_objects() -> None:
    # Issue 15: each object a renewal left behind lived for hours, walked by every full
    # garbage collection (charged to the manager in tests/bench/manager_scale.py).
    core = make(GatewayConfig(min_lifetime=1))
    pcp_ask(core, pcp_map_request(lifetime=100))
    (first,) = core.mappings(T0)
    use = core.state._ports[(TCP, first.external_port)]
    pcp_ask(core, pcp_map_request(lifetime=100), at=T0 + 50)
    (renewed,) = core.mappings(T0 + 50)
    assert renewed.expires_at == T0 + 150
    assert renewed.internal_address is first.internal_address
    assert renewed.requested_by is first.requested_by
    assert core.state._ports[(TCP, first.external_port)] is use
    assert all(type(entry) is tuple and len(entry) == 2 for entry in core.state._expiry)
