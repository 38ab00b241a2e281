"""Fixtures for the integration tests of the client against the simulated gateway.

Everything runs over real UDP on loopback: the gateway listens on 127.0.0.1 (or ::1) on a
port the kernel picks, and the client is pointed at it with ``gateway_port=``. Nothing is
ever sent anywhere else.

- ``sim``: a well-behaved gateway (both protocols) on 127.0.0.1.
- ``sim6``: the same on ::1 (skipped where the machine has no IPv6 loopback).
- ``start_sim``: a factory for gateways with a particular :class:`GatewayConfig`, host,
  external address or ``tamper`` hook; each is closed at the end of the test.
- :func:`on_virtual_clock`: the same factory for a test run on a virtual clock, for tests
  whose gateway is slow or silent on purpose (its waits then cost no real time).

Every gateway is checked at teardown for exceptions raised while answering (a bug in the
simulator or in a test's tamper hook would otherwise only be logged).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from engine.simulator import GatewayConfig, SimulatedGateway, Tamper
from tests.support.loopback import ipv6_loopback_available
from tests.support.virtual_time import run_virtual

HOST4 = "127.0.0.1"
HOST6 = "::1"


#: The ``start_sim`` fixture: ``await start_sim(config, host=..., external_address=...,
#: tamper=...)`` gives a running gateway.
StartSim = Callable[..., Awaitable[SimulatedGateway]]


@asynccontextmanager
async def gateways() -> AsyncIterator[StartSim]:
    """Start simulated gateways on loopback; all are closed (and checked) on leaving."""
    started: list[SimulatedGateway] = []
    async with AsyncExitStack() as stack:

        async def start(config: GatewayConfig | None = None, *, host: str = HOST4,
                        external_address: str | None = "203.0.113.7",
                        tamper: Tamper | None = None, **extra: Any) -> SimulatedGateway:
            if host == HOST6 and not ipv6_loopback_available():
                pytest.skip("no IPv6 loopback on this machine")
            gateway = SimulatedGateway(host, 0, external_address=external_address,
                                       config=config, tamper=tamper, **extra)
            await stack.enter_async_context(gateway)
            started.append(gateway)
            return gateway

        yield start
        for gateway in started:
            assert gateway.internal_errors == [], "the simulated gateway failed to answer"


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start simulated gateways on loopback; all are closed (and checked) after the test."""
    async with gateways() as start:
        yield start


def on_virtual_clock(scenario: Callable[[StartSim], Awaitable[None]]) -> None:
    """Run ``scenario(start_sim)`` on a virtual-time loop (tests/support/virtual_time.py):
    a gateway's ``delay`` and the client's timers take no real time, and what is measured on
    the loop's clock (a deadline, a retransmission schedule) is exact."""

    async def main() -> None:
        async with gateways() as start:
            await scenario(start)

    run_virtual(main, eager=True)


@pytest.fixture
async def sim(start_sim: StartSim) -> SimulatedGateway:
    """A well-behaved gateway speaking PCP and NAT-PMP on 127.0.0.1."""
    return await start_sim()


@pytest.fixture
async def sim6(start_sim: StartSim) -> SimulatedGateway:
    """A well-behaved gateway on ::1 with an IPv6 external address."""
    return await start_sim(host=HOST6, external_address="2001:db8::7")
