"""Issue 15's slow start against a gateway that serves one request at a time.

On the virtual clock (tests/support/virtual_time.py) with real loopback sockets: the
simulator sleeps its service time per request, in order. The window sends one request
until a round trip is measured, then as many as the gateway answers in half the first
retransmission timer: no request is sent twice while the gateway answers everything.
"""

from __future__ import annotations

import asyncio

import pytest

from engine import GatewayClient, Protocol
from engine.simulator import GatewayConfig, SimulatedGateway
from tests.support.virtual_time import run_virtual


def retransmissions(service: float, protocol: str, count: int) -> tuple[int, int, float]:
    """(requests the gateway received, requests asked, virtual seconds) for ``count``
    concurrent maps from one client."""

    async def scenario() -> tuple[int, int, float]:
        async with SimulatedGateway("127.0.0.1", 0, external_address="203.0.113.7",
                                    config=GatewayConfig(delay=service)) as gw:
            host, port = gw.address
            loop = asyncio.get_running_loop()
            start = loop.time()
            async with GatewayClient(host, port) as client:
                await asyncio.gather(*(
                    client.map(Protocol.UDP, 20000 + n, via=protocol,  # type: ignore[arg-type]
                               timeout=600.0)
                    for n in range(count)))
            asked = gw.counters.count(protocol, 1)  # NAT-PMP's map UDP, PCP's MAP: opcode 1
            return gw.counters.received, asked, loop.time() - start

    return run_virtual(scenario)


@pytest.mark.parametrize("service", [0.002, 0.020, 0.100, 0.240])
def test_natpmp_sends_nothing_twice_whatever_the_service_time(service: float) -> None:
    received, asked, elapsed = retransmissions(service, "natpmp", 30)
    assert asked == 30  # every map sent once
    assert received == 31  # and one shared external address request
    assert elapsed < 31 * service + 0.5  # about the floor: the gateway was kept busy


@pytest.mark.parametrize("service", [0.010, 0.100, 0.250])
def test_pcp_sends_nothing_twice_whatever_the_service_time(service: float) -> None:
    received, asked, elapsed = retransmissions(service, "pcp", 40)
    assert (received, asked) == (40, 40)
    assert elapsed <= 40 * service * 1.05 + 0.05
