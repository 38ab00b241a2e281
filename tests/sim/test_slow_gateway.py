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


#: miniupnpd logging to the lab's slow console, one request at a time (the floor client of
#: ``python -m tests.bench.lab_throughput --console slow --trace``): the service time of each
#: of 50 maps then 50 deletes, in ms. They grow with the table, stall on the console, and
#: the first deletes take longer than any map before them (281 ms after ~120 ms, 404 ms).
LAB_SLOW_CONSOLE = {
    "ramp, first delete 281 ms": (
        7, 10, 12, 15, 18, 21, 24, 4, 4, 63, 39, 42, 24, 49, 61, 55, 60, 69, 65, 68, 76, 72, 79,
        87, 93, 89, 91, 95, 98, 101, 118, 110, 112, 114, 118, 121, 128, 153, 193, 157, 135, 118,
        114, 113, 114, 160, 117, 162, 118, 121, 281, 255, 177, 203, 185, 209, 205, 199, 196, 182,
        178, 165, 177, 164, 152, 165, 157, 148, 144, 137, 126, 138, 122, 121, 114, 111, 105,
        103, 100, 86, 101, 91, 77, 73, 74, 66, 64, 57, 56, 51, 45, 40, 39, 32, 28, 25, 20, 15,
        12, 7),
    "ramp, stall of 364-404 ms": (
        11, 7, 12, 16, 19, 31, 26, 26, 36, 40, 1, 73, 44, 43, 9, 18, 59, 59, 53, 57, 58, 59, 60,
        105, 59, 60, 105, 60, 104, 63, 109, 65, 110, 109, 109, 67, 118, 113, 128, 115, 112, 116,
        158, 114, 114, 116, 161, 119, 164, 119, 286, 239, 176, 209, 212, 243, 183, 192, 180,
        184, 364, 404, 339, 142, 159, 145, 149, 153, 138, 138, 129, 129, 144, 112, 150, 130,
        124, 112, 114, 85, 123, 101, 99, 86, 70, 84, 95, 60, 29, 54, 68, 38, 24, 32, 22, 24,
        20, 17, 14, 4),
}


async def maps_then_deletes(config: GatewayConfig, via: engine.Via) -> tuple[int, int, float,
                                                                              float]:
    """``CALLERS`` concurrent maps, then their deletes at once, on a one-at-a-time gateway:
    (requests the gateway received beyond one per operation -- NAT-PMP's one address request
    included --, mappings granted and deleted, virtual seconds taken, seconds the gateway
    spent serving)."""
    async with SimulatedGateway(LOOPBACK, 0, "203.0.113.7", config) as gateway:
        async with engine.GatewayClient(LOOPBACK, gateway.address[1],
                                        local_address=LOOPBACK) as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            mappings = await asyncio.gather(
                *(client.map(Protocol.TCP, FIRST_PORT + i, lifetime=3600, via=via)
                  for i in range(CALLERS)))
            await asyncio.gather(*(mapping.delete() for mapping in mappings))
            took = loop.time() - start
        counters = gateway.counters
        assert gateway.internal_errors == []
        assert gateway.mappings == ()
    design = 2 * CALLERS + (1 if via == "natpmp" else 0)
    return counters.received - design, len(mappings), took, counters.busy


@pytest.mark.parametrize("via", ["natpmp", "pcp"])
@pytest.mark.parametrize("seed", range(4))
def test_an_erratic_gateway_is_sent_nothing_twice(seed: int, via: engine.Via) -> None:
    """Issue 15: 60-250 ms a request, drawn anew for each (seeded): no request sent twice,
    and no slower than the gateway's own service times (the floor of one at a time)."""
    config = GatewayConfig(delay=0.060, delay_max=0.250, seed=seed)
    duplicates, done, took, busy = run_fast_virtual(lambda: maps_then_deletes(config, via))
    assert (duplicates, done) == (0, CALLERS)
    assert took <= 1.05 * busy


@pytest.mark.parametrize("via", ["natpmp", "pcp"])
@pytest.mark.parametrize("profile", sorted(LAB_SLOW_CONSOLE))
def test_the_labs_slow_console_is_sent_nothing_twice(profile: str, via: engine.Via) -> None:
    """The lab's slow miniupnpd, replayed: each request at most two service times slower
    than the smoothed ones before it. NAT-PMP's timer fitted to the round trips alone (RFC
    6298's SRTT + 4 RTTVAR, and the slowest recent one) was passed by the first deletes
    (two or three duplicates a run in the lab and here)."""
    config = GatewayConfig(service_times=tuple(ms / 1e3 for ms in LAB_SLOW_CONSOLE[profile]))
    duplicates, done, took, busy = run_fast_virtual(lambda: maps_then_deletes(config, via))
    assert (duplicates, done) == (0, CALLERS)
    assert took <= 1.05 * busy


@pytest.mark.parametrize("seed", range(8))
def test_a_gateway_slower_than_the_first_timer_from_the_start_costs_two_duplicates_at_most(
        seed: int) -> None:
    """100-400 ms a request from the first: NAT-PMP's first try may outlast its 250 ms timer
    before anything is measured, and is sent twice; so may the request sent behind that
    duplicate, before the duplicate's answer shows it. No more: the duplicate's answer backs
    the first timer off until a round trip is measured, and the requests queued behind a
    duplicate wait on while the gateway answers it. Each request was sent twice before (up to
    101 duplicates for 101 requests: no answer to a request sent once ever came to measure)."""
    config = GatewayConfig(delay=0.100, delay_max=0.400, seed=seed)
    duplicates, done, _, _ = run_fast_virtual(lambda: maps_then_deletes(config, "natpmp"))
    assert done == CALLERS
    assert duplicates <= 2


@pytest.mark.parametrize("via", ["natpmp", "pcp"])
def test_a_fast_gateway_never_waits_for_the_client(via: engine.Via) -> None:
    """Issue 15's fast gateway (1-3 ms a request, as miniupnpd logging nowhere): concurrent
    callers keep its queue full, so the whole run takes its own service times and no more (on
    the virtual clock the client's CPU costs nothing: this is the pacing alone)."""
    config = GatewayConfig(delay=0.001, delay_max=0.003, seed=1)
    duplicates, done, took, busy = run_fast_virtual(lambda: maps_then_deletes(config, via))
    assert (duplicates, done) == (0, CALLERS)
    assert took <= busy + 0.001
