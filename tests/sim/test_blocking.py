"""The blocking client (engine.blocking) against the simulated gateway over loopback UDP.

The simulator runs on the test's event loop; each blocking call runs in a worker thread
(``asyncio.to_thread``), which has no event loop of its own: what a script sees. Both sides
are checked, as in test_client.py: what the client returns or raises, and what the gateway
holds and counted.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import TypeVar

import pytest

import engine.blocking
from engine import (
    GatewayClient,
    GatewayTimeout,
    InvalidRequest,
    PcpResult,
    PortMapping,
    PortUnreachable,
    Protocol,
    ResultCodeError,
)
from engine.blocking import BlockingClient, BlockingVia, run_to_end
from engine.simulator import GatewayConfig, SimulatedGateway
from engine.wire import natpmp, pcp
from tests.support.loopback import free_udp_port

from .conftest import HOST4, StartSim

T = TypeVar("T")

ANSWERED = 2.0
EXTERNAL = IPv4Address("203.0.113.7")


async def off_loop(work: Callable[[], T]) -> T:
    """``work()`` in a thread without an event loop, while this loop serves the gateway."""
    def checked() -> T:
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()
        return work()
    return await asyncio.to_thread(checked)


def client_for(gw: SimulatedGateway) -> BlockingClient:
    host, port = gw.address
    return BlockingClient(host, port, local_address=HOST4)


@pytest.mark.parametrize("via", ["pcp", "natpmp"])
async def test_map_renew_delete(sim: SimulatedGateway, via: BlockingVia) -> None:
    def script() -> tuple[PortMapping, float, list[tuple[int, int]], bool, int]:
        with client_for(sim) as client:
            mapping = client.map(Protocol.TCP, 8080, lifetime=3600, via=via, timeout=ANSWERED)
            remaining = mapping.remaining()  # no event loop: on time.monotonic()
            held = [(m.internal_port, m.lifetime) for m in sim.mappings]
            before = mapping.expires_at
            time.sleep(0.01)
            assert client.renew(mapping) is mapping
            renewed = mapping.expires_at > before
            client.delete(mapping)
            return mapping, remaining, held, renewed, len(sim.mappings)

    mapping, remaining, held, renewed, left = await off_loop(script)
    assert mapping.via == via
    assert mapping.external_port == 8080
    assert mapping.external_address == EXTERNAL
    assert 3590 < remaining <= 3600
    assert held == [(8080, 3600)]
    assert renewed
    assert left == 0
    assert mapping.deleted


async def test_auto_falls_back_to_natpmp_and_learns_the_address(
        start_sim: StartSim) -> None:
    gw = await start_sim(GatewayConfig(speak_pcp=False))

    def script() -> tuple[PortMapping, bool | None, int]:
        with client_for(gw) as client:
            first = client.map(Protocol.UDP, 5000, timeout=ANSWERED)
            # Learnt: the next request goes straight to NAT-PMP.
            sent = client.client.channel.sent
            client.map(Protocol.UDP, 5001, timeout=ANSWERED)
            return first, client.client.speaks["pcp"], client.client.channel.sent - sent

    mapping, speaks_pcp, sent = await off_loop(script)
    assert mapping.via == "natpmp"
    assert mapping.external_address == EXTERNAL
    assert speaks_pcp is False
    assert sent == 1
    assert {m.internal_port for m in gw.mappings} == {5000, 5001}


async def test_the_gateways_no_is_a_typed_error_with_its_lifetime(start_sim: StartSim) -> None:
    gw = await start_sim(GatewayConfig(force_pcp_result=PcpResult.NOT_AUTHORIZED))

    def script() -> None:
        with client_for(gw) as client:
            client.map(Protocol.TCP, 8080, via="pcp", timeout=ANSWERED)

    with pytest.raises(ResultCodeError) as caught:
        await off_loop(script)
    assert caught.value.code == PcpResult.NOT_AUTHORIZED
    assert caught.value.error_lifetime  # PCP says how long the refusal lasts
    assert not gw.mappings


async def test_silence_ends_at_the_deadline_after_the_rfc_tries(start_sim: StartSim) -> None:
    gw = await start_sim(GatewayConfig(silent=True))

    def script() -> float:
        start = time.monotonic()
        with client_for(gw) as client, pytest.raises(GatewayTimeout) as caught:
            client.map(Protocol.TCP, 8080, via="natpmp", timeout=0.6)
        assert caught.value.tries == 2  # 0 s and 0.25 s; the third would be at 0.75 s
        return time.monotonic() - start

    elapsed = await off_loop(script)
    assert 0.6 <= elapsed < 0.9
    assert gw.counters.received == 2


async def test_nothing_listening_is_known_at_once() -> None:
    port = free_udp_port(HOST4)

    def script() -> float:
        start = time.monotonic()
        with BlockingClient(HOST4, port, local_address=HOST4) as client, \
                pytest.raises(PortUnreachable):
            client.map(Protocol.TCP, 8080, via="pcp", timeout=5.0)
        return time.monotonic() - start

    assert await off_loop(script) < 1.0


async def test_hostile_datagrams_are_dropped_and_the_genuine_answer_taken(
        sim: SimulatedGateway) -> None:
    # Before the real answer, the gateway's own port sends a truncated packet, an answer
    # to another request (another nonce) and a NAT-PMP answer for another port.
    def tamper(request: bytes, answers: list[bytes]) -> list[bytes]:
        if request[0] == 0:
            got = natpmp.decode_request(request)
            assert isinstance(got, natpmp.MapPacket)
            other = natpmp.MapResponse(got.protocol, 0, 5, got.internal_port + 1, 1, 60)
            return [b"\x00\x81", other.encode(), *answers]
        real = pcp.decode_response(answers[0])
        assert real.data is not None
        forged = pcp.Response(real.opcode, real.result, real.lifetime, real.epoch,
                              pcp.MapData(bytes(12), real.data.protocol,
                                          real.data.internal_port, 1, IPv4Address(0)))
        return [answers[0][:7], forged.encode(), *answers]

    sim.tamper = tamper

    def script() -> tuple[int, int, int]:
        with client_for(sim) as client:
            via_pcp = client.map(Protocol.TCP, 8080, via="pcp", timeout=ANSWERED)
            via_natpmp = client.map(Protocol.UDP, 9090, via="natpmp", timeout=ANSWERED)
            return (via_pcp.external_port, via_natpmp.external_port,
                    client.client.channel.dropped)

    pcp_port, natpmp_port, dropped = await off_loop(script)
    assert (pcp_port, natpmp_port) == (8080, 9090)
    assert dropped >= 4


async def test_upnp_is_refused_with_a_clear_error(sim: SimulatedGateway) -> None:
    def script() -> None:
        with client_for(sim) as client:
            client.map(Protocol.TCP, 8080, via="upnp")  # type: ignore[arg-type]

    with pytest.raises(InvalidRequest, match="UPnP IGD needs GatewayClient"):
        await off_loop(script)


async def test_a_client_without_a_upnp_mapper_refuses_upnp(sim: SimulatedGateway) -> None:
    # Was a KeyError: GatewayClient(upnp=False) asked for via="upnp".
    host, port = sim.address
    async with GatewayClient(host, port, upnp=False) as client:
        with pytest.raises(InvalidRequest, match="does not speak upnp"):
            await client.map(Protocol.TCP, 8080, via="upnp", timeout=ANSWERED)


async def test_one_socket_for_the_clients_life(sim: SimulatedGateway) -> None:
    def script() -> tuple[object, object, bool]:
        client = client_for(sim)
        client.map(Protocol.TCP, 8080, via="pcp", timeout=ANSWERED)
        first = client.client.channel.local_endpoint()
        client.map(Protocol.TCP, 8081, via="pcp", timeout=ANSWERED)
        second = client.client.channel.local_endpoint()
        client.close()
        return first, second, client.client.channel.is_open

    first, second, still_open = await off_loop(script)
    assert first is not None
    assert first == second
    assert not still_open


def test_run_to_end_refuses_a_coroutine_that_waits_on_a_loop() -> None:
    async def waits() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="awaited the event loop"):
        run_to_end(waits())


def test_an_interrupted_request_leaves_the_channel_clean(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C while waiting for a gateway that never answers (here: at the first timer): the
    # request is abandoned, its window slot given back, and the next request goes out.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((HOST4, 0))
        client = BlockingClient(HOST4, silent.getsockname()[1], local_address=HOST4)
        channel = client.client.channel

        def interrupted(*args: object) -> bool:
            raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr(engine.blocking, "held", interrupted)
            with pytest.raises(KeyboardInterrupt):
                client.map(Protocol.TCP, 8080, via="natpmp", timeout=5.0)
        assert channel.windows["natpmp"].room == 1
        with pytest.raises(GatewayTimeout):
            client.map(Protocol.TCP, 8080, via="natpmp", timeout=0.1)
        silent.settimeout(1.0)
        first, second = silent.recv(100), silent.recv(100)  # each request went out
        assert first == second
        assert natpmp.decode_request(first) == natpmp.MapPacket(Protocol.TCP, 8080, 8080, 7200)
        client.close()


async def test_a_slow_gateway_gets_what_the_asyncio_client_sends(start_sim: StartSim) -> None:
    # A gateway slower than NAT-PMP's first timer (0.25 s): both clients retransmit the first
    # request, learn from the duplicate answers, and hold later tries while the gateway is
    # still answering -- the same tries, the same drops, request after request.
    def counts(gw: SimulatedGateway, sent: int, dropped: int) -> tuple[int, int, int]:
        return gw.counters.received, sent, dropped

    ours = await start_sim(GatewayConfig(delay=0.3))
    theirs = await start_sim(GatewayConfig(delay=0.3))
    host, port = theirs.address
    async with GatewayClient(host, port, local_address=HOST4, upnp=False) as client:
        expected = []
        for number in (8080, 8081, 8082):
            await client.map(Protocol.TCP, number, via="natpmp", timeout=10)
            expected.append(counts(theirs, client.channel.sent, client.channel.dropped))

    def script() -> list[tuple[int, int, int]]:
        seen = []
        with client_for(ours) as blocking:
            for number in (8080, 8081, 8082):
                blocking.map(Protocol.TCP, number, via="natpmp", timeout=10)
                channel = blocking.client.channel
                seen.append(counts(ours, channel.sent, channel.dropped))
        return seen

    assert await off_loop(script) == expected
    assert expected[0][0] > 2  # the first request was sent again: the case is exercised


async def test_probe_asks_both_protocols_and_auto_then_goes_where_it_was_answered(
        start_sim: StartSim) -> None:
    gw = await start_sim(GatewayConfig(speak_pcp=False))

    def script() -> tuple[object, ...]:
        with client_for(gw) as client:
            result = client.probe(timeout=1.0)
            before = gw.counters.received
            mapping = client.map(Protocol.TCP, 8080, timeout=ANSWERED)  # auto
            return (result.pcp, result.natpmp, result.via, result.external_address,
                    mapping.via, gw.counters.received - before)

    pcp_spoken, natpmp_spoken, via, address, mapped_via, sent = await off_loop(script)
    assert (pcp_spoken, natpmp_spoken, via) == (False, True, "natpmp")
    assert address == EXTERNAL
    assert mapped_via == "natpmp"
    assert sent == 1  # no PCP try first: the probe heard it refused


async def test_probe_of_a_silent_gateway_says_so_within_its_timeout(start_sim: StartSim) -> None:
    gw = await start_sim(GatewayConfig(silent=True))

    def script() -> tuple[bool, float]:
        start = time.monotonic()
        with client_for(gw) as client:
            result = client.probe(timeout=0.6)
        return result.reachable, time.monotonic() - start

    reachable, elapsed = await off_loop(script)
    assert not reachable
    assert 0.6 <= elapsed < 0.9


async def test_an_ipv6_gateway(sim6: SimulatedGateway) -> None:
    host, port = sim6.address

    def script() -> PortMapping:
        with BlockingClient(host, port, local_address="::1") as client:
            mapping = client.map(Protocol.UDP, 5000, via="pcp", timeout=ANSWERED)
            client.delete(mapping)
            return mapping

    mapping = await off_loop(script)
    assert str(mapping.external_address) == "2001:db8::7"
    assert str(mapping.local_address) == "::1"
    assert mapping.deleted
    assert not sim6.mappings


async def test_a_client_without_a_upnp_mapper_refuses_the_upnp_address(
        sim: SimulatedGateway) -> None:
    # get_external_address(via="upnp") on such a client was a KeyError too.
    host, port = sim.address
    async with GatewayClient(host, port, upnp=False) as client:
        with pytest.raises(InvalidRequest, match="does not speak upnp"):
            await client.get_external_address(via="upnp", timeout=ANSWERED)
