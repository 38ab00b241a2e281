"""A hostile or confused gateway (issue 8): every answer is validated before it is believed.

The simulator's ``tamper`` hook sends a forged datagram just before the genuine answer (from
the gateway's own address and port, so only validation can tell them apart), or sends the
genuine answers out of order; ``inject`` sends from a stranger's socket. Each forgery must be
dropped -- counted in ``client.channel.dropped`` -- and the genuine answer that follows in
the same round trip accepted, or, where the forgery is a well-formed answer to our request
(an unknown result code), turned into a typed error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

import engine
from engine import GatewayClient, NatPmpResult, PcpResult, Protocol, ResultCodeError
from engine.codes import ErrorLifetime
from engine.simulator import GatewayConfig, SimulatedGateway
from engine.wire import natpmp, pcp
from tests.support.loopback import until

from .conftest import StartSim

ANSWERED = 2.0
FORGED_PORT = 4444
Forge = Callable[[bytes], bytes]


def forged_first(forge: Forge, *, natpmp_map_only: bool = False
                 ) -> Callable[[bytes, list[bytes]], list[bytes]]:
    """A tamper hook: the first answer goes out as ``[forge(genuine), genuine]``."""
    done = False

    def tamper(request: bytes, answers: list[bytes]) -> list[bytes]:
        nonlocal done
        if done or not answers or (natpmp_map_only and request[1] not in (1, 2)):
            return answers
        done = True
        return [forge(answers[0]), *answers]

    return tamper


# -- PCP forgeries -----------------------------------------------------------------------------


def _pcp_data(raw: bytes, **changes: object) -> bytes:
    """The genuine MAP answer with some opcode-data fields changed (and a port we'd notice)."""
    answer = pcp.decode_response(raw)
    assert isinstance(answer.data, pcp.MapData)
    changes.setdefault("external_port", FORGED_PORT)
    return replace(answer, data=replace(answer.data, **changes)).encode()  # type: ignore[arg-type]


def _pcp_peer_answer(raw: bytes) -> bytes:
    answer = pcp.decode_response(raw)
    data = answer.data
    assert isinstance(data, pcp.MapData)
    return pcp.Response(pcp.Opcode.PEER, PcpResult.SUCCESS, answer.lifetime, answer.epoch,
                        pcp.PeerData(data.nonce, data.protocol, data.internal_port, FORGED_PORT,
                                     data.external_address, 443,
                                     IPv4Address("198.51.100.20"))).encode()


def _pcp_unknown_mandatory_option(raw: bytes) -> bytes:
    answer = pcp.decode_response(raw)
    assert isinstance(answer.data, pcp.MapData)
    return replace(answer, data=replace(answer.data, external_port=FORGED_PORT),
                   options=(pcp.UnknownOption(99, bytes(4)),)).encode()


def _flip(nonce: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in nonce)


PCP_FORGERIES: dict[str, Forge] = {
    "wrong nonce": lambda g: _pcp_data(g, nonce=_flip(pcp.decode_response(g).data.nonce)),  # type: ignore[union-attr]
    "wrong protocol": lambda g: _pcp_data(g, protocol=Protocol.TCP),
    "wrong internal port": lambda g: _pcp_data(g, internal_port=8081),
    "wrong opcode (PEER)": _pcp_peer_answer,
    "wrong opcode (ANNOUNCE)": lambda g: pcp.Response(pcp.Opcode.ANNOUNCE, 0, 0, 9).encode(),
    "shorter than the header": lambda g: g[:20],
    "missing opcode data": lambda g: g[:-4],
    "header only success": lambda g: g[:pcp.HEADER_SIZE],
    "not a multiple of 4": lambda g: g + b"\0",
    "oversized": lambda g: g + bytes(pcp.MAX_PACKET_SIZE + 4 - len(g)),
    "version 3": lambda g: b"\x03" + g[1:],
    "version 0 (read as NAT-PMP)": lambda g: b"\x00" + g[1:],
    "response bit clear": lambda g: g[:1] + bytes([g[1] & 0x7F]) + g[2:],
    "unknown mandatory option": _pcp_unknown_mandatory_option,
    "NAT-PMP map answer": lambda g: natpmp.MapResponse(Protocol.UDP, 0, 9, 8080, FORGED_PORT,
                                                       7200).encode(),
    "NAT-PMP short error": lambda g: natpmp.ErrorResponse(0x81, NatPmpResult.NETWORK_FAILURE,
                                                          9).encode(),
    "garbage": lambda g: bytes(range(64)),
}


@pytest.mark.parametrize("forge", PCP_FORGERIES.values(), ids=PCP_FORGERIES.keys())
async def test_pcp_forgery_is_dropped_and_the_genuine_answer_accepted(
        sim: SimulatedGateway, forge: Forge) -> None:
    sim.tamper = forged_first(forge)
    host, port = sim.address
    async with GatewayClient(host, port) as client:
        mapping = await client.map(Protocol.UDP, 8080, via="pcp", timeout=ANSWERED)
        assert (mapping.via, mapping.external_port) == ("pcp", 8080)
        assert client.channel.dropped == 1
    assert sim.counters.received == 1  # accepted in the same round trip: no retransmission
    assert sim.mappings[0].external_port == 8080


async def test_an_unknown_optional_option_is_ignored_not_dropped(sim: SimulatedGateway) -> None:
    # RFC 6887 §7.3: options 128-255 are optional to process; the answer stands.
    def add_option(raw: bytes) -> bytes:
        answer = pcp.decode_response(raw)
        return replace(answer, options=(pcp.UnknownOption(200, b"abcd"),)).encode()

    def tamper(request: bytes, answers: list[bytes]) -> list[bytes]:
        return [add_option(a) for a in answers]

    sim.tamper = tamper
    host, port = sim.address
    async with GatewayClient(host, port) as client:
        mapping = await client.map(Protocol.UDP, 8080, via="pcp", timeout=ANSWERED)
        assert client.channel.dropped == 0
    # The mapping keeps what was sent, which its renewals and delete send again: never the
    # answer's options (a vendor's, echoed back, or a THIRD_PARTY left out).
    assert mapping.options == ()


async def test_pcp_unknown_result_code_is_a_typed_error(sim: SimulatedGateway) -> None:
    # A well-formed answer to our request (our nonce) with a code we do not know: an error,
    # which RFC 6887 §7.4's classes cannot call short, so it counts as lasting.
    sim.tamper = forged_first(lambda g: replace(pcp.decode_response(g), result=200,
                                                lifetime=600).encode())
    host, port = sim.address
    with pytest.raises(ResultCodeError) as caught:
        await engine.map_port(host, 8080, Protocol.UDP, gateway_port=port, via="pcp",
                              timeout=ANSWERED)
    error = caught.value
    assert (error.protocol, error.code, error.name, error.error_lifetime) == (
        "pcp", 200, "UNKNOWN(200)", 600)
    assert error.lifetime_kind is ErrorLifetime.LONG
    assert "200" in str(error)


async def test_pcp_header_only_error_is_a_typed_error(sim: SimulatedGateway) -> None:
    # An error about the whole request may come as a bare header (RFC 6887 §7.2): it has no
    # nonce to check, and is taken as the answer.
    sim.tamper = forged_first(lambda g: pcp.Response(pcp.Opcode.MAP, PcpResult.MALFORMED_REQUEST,
                                                     1800, 9).encode())
    host, port = sim.address
    with pytest.raises(ResultCodeError) as caught:
        await engine.map_port(host, 8080, gateway_port=port, via="pcp", timeout=ANSWERED)
    assert (caught.value.name, caught.value.error_lifetime) == ("MALFORMED_REQUEST", 1800)


async def test_an_answer_from_a_strangers_port_is_never_accepted(sim: SimulatedGateway) -> None:
    host, port = sim.address
    async with GatewayClient(host, port) as client:
        endpoint = client.channel.local_endpoint()
        assert endpoint is not None

        def tamper(request: bytes, answers: list[bytes]) -> list[bytes]:
            # A perfect answer (our nonce) but from another port of the gateway's host.
            sim.inject(_pcp_data(answers[0]), endpoint, from_gateway_socket=False)
            return answers

        sim.tamper = tamper
        mapping = await client.map(Protocol.UDP, 8080, via="pcp", timeout=ANSWERED)
        assert mapping.external_port == 8080
        # The connected socket lets the kernel drop it; the transport would too.
        assert client.channel.dropped in (0, 1)
    assert sim.counters.received == 1


async def test_late_duplicates_and_unsolicited_answers_are_dropped(
        sim: SimulatedGateway) -> None:
    sim.tamper = lambda request, answers: [*answers, *answers]
    host, port = sim.address
    async with GatewayClient(host, port) as client:
        mapping = await client.map(Protocol.UDP, 8080, via="pcp", timeout=ANSWERED)
        await until(lambda: client.channel.dropped == 1)
        endpoint = client.channel.local_endpoint()
        assert endpoint is not None
        # Nothing pending: a replay of a success is no answer to anything.
        sim.inject(pcp.Response(pcp.Opcode.MAP, 0, 7200, 1, pcp.MapData(
            mapping.nonce or bytes(12), 17, 8080, FORGED_PORT, IPv4Address("198.51.100.66")),
        ).encode(), endpoint)
        await until(lambda: client.channel.dropped == 2)
        # The channel still works.
        await mapping.renew(timeout=ANSWERED)
        assert mapping.external_port == 8080


# -- NAT-PMP forgeries -------------------------------------------------------------------------


def _natpmp_map(raw: bytes, **changes: int) -> bytes:
    answer = natpmp.decode_response(raw)
    assert isinstance(answer, natpmp.MapResponse)
    changes.setdefault("external_port", FORGED_PORT)
    return replace(answer, **changes).encode()


NATPMP_FORGERIES: dict[str, Forge] = {
    "wrong opcode (TCP)": lambda g: _natpmp_map(g, protocol=Protocol.TCP),
    "wrong internal port": lambda g: _natpmp_map(g, internal_port=8081),
    "external address answer": lambda g: natpmp.ExternalAddressResponse(
        0, 9, IPv4Address("198.51.100.66")).encode(),
    "short error for another opcode": lambda g: natpmp.ErrorResponse(
        0x85, NatPmpResult.UNSUPPORTED_OPCODE, 9).encode(),
    "truncated to 12": lambda g: g[:12],
    "truncated to 7": lambda g: g[:7],
    "8-byte success": lambda g: g[:2] + b"\0\0" + g[4:8],
    "oversized": lambda g: g + bytes(4),
    "version 1 (read as PCP)": lambda g: b"\x01" + g[1:],
    "response bit clear": lambda g: g[:1] + bytes([g[1] & 0x7F]) + g[2:],
    "PCP map answer": lambda g: pcp.Response(pcp.Opcode.MAP, 0, 7200, 9, pcp.MapData(
        bytes(12), Protocol.UDP, 8080, FORGED_PORT, IPv4Address("198.51.100.66"))).encode(),
}


@pytest.mark.parametrize("forge", NATPMP_FORGERIES.values(), ids=NATPMP_FORGERIES.keys())
async def test_natpmp_forgery_is_dropped_and_the_genuine_answer_accepted(
        sim: SimulatedGateway, forge: Forge) -> None:
    sim.tamper = forged_first(forge, natpmp_map_only=True)
    host, port = sim.address
    async with GatewayClient(host, port) as client:
        mapping = await client.map(Protocol.UDP, 8080, via="natpmp", timeout=ANSWERED)
        assert (mapping.via, mapping.external_port) == ("natpmp", 8080)
        assert mapping.external_address == IPv4Address("203.0.113.7")
        assert client.channel.dropped == 1
    # The map request and the external-address request, each answered at the first try.
    assert (sim.counters.count("natpmp", 1), sim.counters.count("natpmp", 0)) == (1, 1)


async def test_natpmp_unknown_result_code_is_a_typed_error(sim: SimulatedGateway) -> None:
    sim.tamper = forged_first(lambda g: _natpmp_map(g, result=99, external_port=0, lifetime=0))
    host, port = sim.address
    with pytest.raises(ResultCodeError) as caught:
        await engine.map_port(host, 8080, Protocol.UDP, gateway_port=port, via="natpmp",
                              timeout=ANSWERED)
    error = caught.value
    assert (error.protocol, error.code, error.name, error.error_lifetime) == (
        "natpmp", 99, "UNKNOWN(99)", None)


# -- answers out of order ----------------------------------------------------------------------


def swap_first_two_answers() -> Callable[[bytes, list[bytes]], list[bytes]]:
    """A tamper hook that holds the first request's answers and sends them after the second's
    (a probe's PCP and NAT-PMP answers, reordered on the way)."""
    held: list[bytes] | None = None
    count = 0

    def tamper(request: bytes, answers: list[bytes]) -> list[bytes]:
        nonlocal held, count
        count += 1
        if count == 1:
            held = answers
            return []
        if count == 2:
            assert held is not None
            return [*answers, *held]
        return answers

    return tamper


@pytest.mark.parametrize(("config", "pcp_spoken", "natpmp_spoken"), [
    (GatewayConfig(), True, True),
    (GatewayConfig(speak_natpmp=False), True, False),
    (GatewayConfig(speak_pcp=False), False, True),
    (GatewayConfig(speak_pcp=False, natpmp_erratum_opcode=False), False, True),
])
async def test_probe_answers_in_either_order(start_sim: StartSim, config: GatewayConfig,
                                             pcp_spoken: bool, natpmp_spoken: bool) -> None:
    gw = await start_sim(config, tamper=swap_first_two_answers())
    host, port = gw.address
    found = await engine.probe(host, gateway_port=port, timeout=ANSWERED)
    assert (found.pcp, found.natpmp) == (pcp_spoken, natpmp_spoken)
    assert gw.counters.received == 2  # both answered at the first try


async def test_concurrent_pcp_and_natpmp_maps_on_a_pcp_only_gateway(start_sim: StartSim) -> None:
    # The NAT-PMP request (UDP: opcode 1) draws a header-only PCP UNSUPP_VERSION with opcode 1,
    # MAP's. Arriving first, it must not be taken as the PCP MAP's answer.
    gw = await start_sim(GatewayConfig(speak_natpmp=False), tamper=swap_first_two_answers())
    host, port = gw.address
    async with GatewayClient(host, port) as client:
        by_pcp, by_natpmp = await asyncio.gather(
            client.map(Protocol.UDP, 8080, via="pcp", timeout=ANSWERED),
            client.map(Protocol.UDP, 9090, via="natpmp", timeout=ANSWERED),
            return_exceptions=True)
        assert isinstance(by_pcp, engine.PortMapping)
        assert by_pcp.via == "pcp"
        assert isinstance(by_natpmp, engine.UnsupportedVersion)
        assert by_natpmp.protocol == "natpmp"
        assert client.speaks == {"pcp": True, "natpmp": False}
    assert gw.counters.received == 2


async def test_a_gateway_that_does_not_echo_options(start_sim: StartSim) -> None:
    # A success means the mandatory options were processed (RFC 6887 §7.3) even when the
    # answer leaves them out: the renewal and the deletion must still carry THIRD_PARTY, or
    # they would act on the sender's own mapping and leave the third party's behind.
    def strip_options(request: bytes, answers: list[bytes]) -> list[bytes]:
        return [replace(pcp.decode_response(a), options=()).encode() for a in answers]

    gw = await start_sim(GatewayConfig(allow_third_party=True), tamper=strip_options)
    host, port = gw.address
    third = IPv4Address("192.0.2.10")
    mapping = await engine.map_port(host, 8080, gateway_port=port, third_party=third,
                                    timeout=ANSWERED)
    assert pcp.ThirdParty(third) in mapping.options
    await mapping.renew(timeout=ANSWERED)
    assert [m.internal_address for m in gw.mappings] == [third]
    await mapping.delete(timeout=ANSWERED)
    assert gw.mappings == ()


async def test_renewals_and_the_delete_send_what_the_map_sent_not_the_answers_options(
        ) -> None:
    # The gateway answers a THIRD_PARTY map without echoing THIRD_PARTY and with a vendor
    # option of its own (optional, 128-255). Kept as the mapping's options, that answer made
    # the renewal map this host instead and the delete miss the third party's mapping.
    sent: list[tuple[pcp.Option, ...]] = []

    def vendor_option(request: bytes, answers: list[bytes]) -> list[bytes]:
        if request[0] != pcp.PCP_VERSION:
            return answers
        sent.append(pcp.decode_request(request).options)
        return [replace(answer, options=(pcp.UnknownOption(200, b"abcd"),)).encode()
                if answer.result == PcpResult.SUCCESS else raw
                for raw, answer in ((raw, pcp.decode_response(raw)) for raw in answers)]

    async with SimulatedGateway("127.0.0.1", 0, tamper=vendor_option,
                                config=GatewayConfig(allow_third_party=True)) as gateway:
        host, port = gateway.address
        clock = asyncio.get_running_loop().time
        async with GatewayClient(host, port, upnp=False) as client:
            mapping = await client.map(Protocol.UDP, 5000, via="pcp", lifetime=600,
                                       third_party="127.0.0.9", timeout=ANSWERED)
            await client.renew(mapping, timeout=ANSWERED)
            held = [(str(m.internal_address), m.internal_port)
                    for m in gateway.core.state.mappings(clock())]
            assert held == [("127.0.0.9", 5000)]
            await client.delete(mapping, timeout=ANSWERED)
            assert gateway.core.state.mappings(clock()) == ()
    third_party = pcp.ThirdParty(IPv4Address("127.0.0.9"))
    assert sent == [(third_party,)] * 3


async def test_a_gateway_named_in_its_ipv4_mapped_form_is_heard(sim: SimulatedGateway) -> None:
    host, port = sim.address
    async with GatewayClient(f"::ffff:{host}", port) as client:
        mapping = await client.map(Protocol.TCP, 8080, via="natpmp", timeout=ANSWERED)
        assert mapping.external_port == 8080
        assert client.channel.dropped == 0


async def test_auto_on_an_ipv6_gateway_tries_pcp_alone() -> None:
    # RFC 6886 is IPv4 only: a PCP gateway silent over IPv6 is not asked in NAT-PMP.
    seen: list[int] = []

    def silent(request: bytes, answers: list[bytes]) -> list[bytes]:
        seen.append(request[0])
        return []

    async with SimulatedGateway("::1", 0, tamper=silent) as gateway:
        host, port = gateway.address[:2]
        async with GatewayClient(host, port, upnp=False) as client:
            with pytest.raises(engine.GatewayTimeout):
                await client.map(Protocol.TCP, 8080, timeout=1.0)
    assert seen
    assert set(seen) == {pcp.PCP_VERSION}
