"""A slow gateway (issue 15): one request at a time, each taking a set service time.

miniupnpd serves one request at a time; logging to a slow console it takes 60-180 ms a request.
A client that puts several requests out before it has measured one round trip makes the last
of them wait past its first retransmission timer (NAT-PMP: 250 ms, RFC 6886 §3.1; PCP: 3 s,
RFC 6887 §8.1.1), and each duplicate costs the gateway one more service time. Slow start --
one request out until a round trip is measured, then grow -- sends none. The gateway counts
what arrives: exactly one request per mapping, however slow the gateway and however many
callers, and every mapping granted.

The simulator and the client share a virtual clock (:mod:`tests.support.virtual_time`), so
fifty requests at 250 ms each take a moment of real time.
"""

from __future__ import annotations

import asyncio

import pytest

import engine
from engine.protocols import Protocol
from engine.simulator import GatewayConfig, SimulatedGateway
from engine.wire import natpmp
from tests.support.manager_rig import LOOPBACK, run_fast_virtual

CALLERS = 50
FIRST_PORT = 30000
#: The map opcode of a NAT-PMP TCP request (RFC 6886 §3.3).
NATPMP_MAP_TCP = 2


async def map_concurrently(service_time: float, via: engine.Via) -> tuple[int, int, int, float]:
    """``CALLERS`` concurrent maps on a one-at-a-time gateway: (granted, map requests the
    gateway received, other requests it received, virtual seconds taken)."""
    config = GatewayConfig(delay=service_time)  # one request at a time (miniupnpd's loop)
    async with SimulatedGateway(LOOPBACK, 0, "203.0.113.7", config) as gateway:
        async with engine.GatewayClient(LOOPBACK, gateway.address[1],
                                        local_address=LOOPBACK) as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            results = await asyncio.gather(
                *(client.map(Protocol.TCP, FIRST_PORT + i, lifetime=3600, via=via)
                  for i in range(CALLERS)), return_exceptions=True)
            took = loop.time() - start
        counters = gateway.counters
        assert gateway.internal_errors == []
    granted = sum(1 for r in results if isinstance(r, engine.PortMapping))
    if via == "pcp":
        maps = counters.count("pcp")
        others = counters.received - maps
    else:
        maps = counters.count("natpmp", NATPMP_MAP_TCP)
        # One external-address request is part of NAT-PMP's design (the mapping answer does
        # not carry the address); more than one is a duplicate.
        others = counters.received - maps - min(1, counters.count("natpmp", 0))
    return granted, maps, others, took


@pytest.mark.parametrize(("service_time", "via"), [
    (0.020, "natpmp"), (0.020, "pcp"), (0.100, "natpmp"), (0.100, "pcp"),
    # At 250 ms a request NAT-PMP's own first timer (250 ms, RFC 6886 §3.1) would fire as
    # each answer arrives: the first timer follows the measured round trip instead.
    (0.250, "natpmp"), (0.250, "pcp"),
])
def test_concurrent_maps_on_a_slow_gateway_are_never_retransmitted(
        service_time: float, via: engine.Via) -> None:
    async def scenario() -> tuple[int, int, int, float]:
        return await map_concurrently(service_time, via)

    granted, maps, others, took = run_fast_virtual(scenario)
    assert granted == CALLERS
    assert (maps, others) == (CALLERS, 0), (
        f"{maps - CALLERS} map retransmissions and {others} other extra requests at "
        f"{service_time * 1e3:.0f} ms a request")
    # Nothing but the gateway's own queue: CALLERS service times (plus the one address lookup).
    assert took <= (CALLERS + 1) * service_time * 1.05


def test_the_simulated_gateway_serves_one_request_at_a_time() -> None:
    """What the test above relies on: ``delay`` queues a burst behind the first request."""
    async def scenario() -> list[float]:
        config = GatewayConfig(delay=0.1)
        async with SimulatedGateway(LOOPBACK, 0, "203.0.113.7", config) as gateway:
            loop = asyncio.get_running_loop()
            received: list[float] = []
            answered = loop.create_future()

            class Collect(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: object) -> None:
                    received.append(loop.time())
                    if len(received) == 3:
                        answered.set_result(None)

            transport, _ = await loop.create_datagram_endpoint(
                Collect, local_addr=(LOOPBACK, 0))
            start = loop.time()
            for _ in range(3):
                transport.sendto(natpmp.ExternalAddressRequest().encode(), gateway.address)
            await asyncio.wait_for(answered, 5)
            transport.close()
            return [round(t - start, 6) for t in received]

    assert run_fast_virtual(scenario) == [0.1, 0.2, 0.3]
