"""Issue 14 finding 5 against the simulator: forged errors from the gateway's own address.

300 packets sent from the gateway's address and port before the genuine answer -- error
answers that do not echo the request (other nonce, other internal port, a header or 8 bytes
with a code that cannot be sent bare, unknown codes) -- must not end the request: each is
dropped (and logged) and the genuine answer is taken. Before the matching rule, the first
forged error ended the request (UNKNOWN(97) / UNKNOWN(59000)).
"""

from __future__ import annotations

import asyncio
import random
from ipaddress import IPv4Address

import pytest

from engine import GatewayClient, Protocol, ResultCodeError
from engine.codes import PcpResult
from engine.simulator import GatewayConfig, SimulatedGateway
from engine.wire import natpmp, pcp
from tests.support.forgery import forged_natpmp, forged_pcp

from .conftest import StartSim, on_virtual_clock

FORGED = 300
TIMEOUT = 5.0
class Forger:
    """A tamper hook that, for each map request, sends the forged errors from the gateway's
    socket in bursts of 50 (a socket buffer holds ~250 small datagrams), then the answer."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.sent: list[int] = []
        self.gateway: SimulatedGateway | None = None
        self.client: tuple[str, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, request: bytes, answers: list[bytes]) -> list[bytes]:
        if request[0] == pcp.PCP_VERSION and request[1] == pcp.Opcode.MAP:
            forged = forged_pcp(self.rng, request, FORGED)
        elif request[0] == 0 and request[1] in (1, 2):
            forged = forged_natpmp(self.rng, request, FORGED)
        else:
            return answers
        self.sent.append(len(forged))
        task = asyncio.get_running_loop().create_task(self._send(forged + answers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return []

    async def _send(self, packets: list[bytes]) -> None:
        assert self.gateway is not None
        assert self.client is not None
        for start in range(0, len(packets), 50):
            for packet in packets[start:start + 50]:
                self.gateway.inject(packet, self.client)
            await asyncio.sleep(0.005)


async def started(start_sim: StartSim, forger: Forger, client: GatewayClient) -> None:
    await client.channel.open()
    forger.client = client.channel.local_endpoint()


async def test_forged_pcp_errors_do_not_end_a_map_request(start_sim: StartSim) -> None:
    forger = Forger(14)
    gw = forger.gateway = await start_sim(tamper=forger)
    host, port = gw.address
    async with GatewayClient(host, port) as client:
        await started(start_sim, forger, client)
        mapping = await client.map(Protocol.TCP, 8080, via="pcp", timeout=TIMEOUT)
        assert (mapping.via, mapping.external_port) == ("pcp", 8080)
        assert forger.sent == [FORGED]
        assert client.channel.dropped == FORGED
        await mapping.delete(timeout=TIMEOUT)  # forged again: still the genuine answer
        assert mapping.deleted
        assert client.channel.dropped == 2 * FORGED
    assert gw.mappings == ()


async def test_forged_natpmp_errors_do_not_end_a_map_request(start_sim: StartSim) -> None:
    forger = Forger(5)
    gw = forger.gateway = await start_sim(tamper=forger)
    host, port = gw.address
    async with GatewayClient(host, port) as client:
        await started(start_sim, forger, client)
        mapping = await client.map(Protocol.UDP, 5000, via="natpmp", timeout=TIMEOUT)
        assert (mapping.via, mapping.external_port) == ("natpmp", 5000)
        assert mapping.external_address == IPv4Address("203.0.113.7")
        assert forger.sent == [FORGED]
        assert client.channel.dropped == FORGED


async def test_a_genuine_error_with_our_nonce_still_ends_the_request(
        start_sim: StartSim) -> None:
    # The rule drops only what cannot be matched: the gateway's own refusal, which echoes
    # the nonce, is still believed at once.
    gw = await start_sim(GatewayConfig(force_pcp_result=PcpResult.NOT_AUTHORIZED))
    host, port = gw.address
    async with GatewayClient(host, port) as client:
        with pytest.raises(ResultCodeError) as caught:
            await client.map(Protocol.TCP, 8080, via="pcp", timeout=TIMEOUT)
    assert caught.value.code == PcpResult.NOT_AUTHORIZED


def test_a_flood_of_unmatched_answers_does_not_stall_a_retransmission() -> None:
    """Answers that look genuine but answer nothing out (a success for another internal
    port), sent from the gateway's address every 50 ms, once held a due try for ever: each
    counted as the gateway still busy (RFC 6298 §5.3's restart), so the lost first try was
    never sent again, and without a deadline the request never ended. A gateway answers a
    try at most once: past that they show nothing, and the retransmission goes out."""

    async def scenario(start_sim: StartSim) -> None:
        dropped: list[bytes] = []

        def lose_the_first_map(request: bytes, answers: list[bytes]) -> list[bytes]:
            if request[:2] == b"\x00\x02" and not dropped:
                dropped.append(request)
                return []
            return answers

        gw = await start_sim(tamper=lose_the_first_map)
        host, port = gw.address
        async with GatewayClient(host, port) as client:
            await client.get_external_address(via="natpmp", timeout=TIMEOUT)  # a round trip
            client_end = client.channel.local_endpoint()
            assert client_end is not None
            stray = natpmp.MapResponse(natpmp.protocol_for(2), 0, 1, 9999, 9999, 60).encode()

            async def flood() -> None:
                while True:
                    gw.inject(stray, client_end)
                    await asyncio.sleep(0.05)

            flooding = asyncio.get_running_loop().create_task(flood())
            loop = asyncio.get_running_loop()
            began = loop.time()
            try:
                mapping = await asyncio.wait_for(
                    client.map(Protocol.TCP, 8080, via="natpmp", timeout=None), 30.0)
            finally:
                flooding.cancel()
            assert dropped
            assert mapping.external_port == 8080
            # The RFC's first timer (0.25 s, +10 ms), held at most a first timer more for
            # the one answer a try may still have: not the flood's length.
            assert loop.time() - began < 1.0
            assert client.channel.dropped > 5

    on_virtual_clock(scenario)
