"""Fallback as fast as the gateway allows (issue 12, issue 13, issue 14's 8-byte gap).

- ICMP port unreachable from the gateway's port (nothing listens: miniupnpd with
  NAT-PMP/PCP off) ends a request at once with PortUnreachable, instead of the whole timeout;
- UNSUPP_VERSION moves "auto" from PCP to NAT-PMP in one round trip;
- an 8-byte UNSUPPORTED_VERSION goes to the PCP request it answers when one is out, and
  otherwise to the NAT-PMP request (see tests/sim/test_client.py for the latter).
"""

from __future__ import annotations

import asyncio

import pytest

import engine
from engine import GatewayClient, GatewayTimeout, PortUnreachable, Protocol
from engine.simulator import GatewayConfig
from tests.support.loopback import free_udp_port

from .conftest import HOST4, StartSim

TIMEOUT = 10.0


@pytest.mark.parametrize("via", ["auto", "pcp", "natpmp"])
async def test_icmp_port_unreachable_ends_a_map_at_once(via: str) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(PortUnreachable) as caught:
        await engine.map_port(HOST4, 8080, gateway_port=free_udp_port(), via=via,  # type: ignore[arg-type]
                              timeout=TIMEOUT)
    assert loop.time() - start < 1.0  # not the 10 s timeout (nor PCP's 9.5 s of silence)
    assert isinstance(caught.value, GatewayTimeout)  # callers catching silence still do
    assert "ICMP port unreachable" in str(caught.value)
    if via == "auto":  # PCP refused, then UPnP IGD's SSDP port refused too (nothing on 1900)
        assert "UPnP" in str(caught.value)
    else:
        assert caught.value.tries == 1


async def test_icmp_port_unreachable_ends_an_address_request_at_once() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(PortUnreachable):
        await engine.external_address(HOST4, gateway_port=free_udp_port(), timeout=TIMEOUT)
    assert loop.time() - start < 1.0


async def test_a_probe_of_a_closed_port_is_quick_and_says_nothing_is_spoken() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    found = await engine.probe(HOST4, gateway_port=free_udp_port(), timeout=TIMEOUT)
    assert loop.time() - start < 1.0
    assert not found.reachable


async def test_unsupp_version_falls_back_in_one_round_trip(start_sim: StartSim) -> None:
    gw = await start_sim(GatewayConfig(speak_pcp=False))
    host, port = gw.address
    loop = asyncio.get_running_loop()
    start = loop.time()
    mapping = await engine.map_port(host, 8080, gateway_port=port, timeout=TIMEOUT)
    assert mapping.via == "natpmp"
    assert loop.time() - start < 0.5
    assert (gw.counters.count("pcp"), gw.counters.count("natpmp", 2)) == (1, 1)


async def test_the_8_byte_refusal_goes_to_the_pcp_request_when_both_are_out(
        start_sim: StartSim) -> None:
    # A NAT-PMP-only gateway answers the PCP ANNOUNCE with the same 8 bytes a gateway
    # refusing NAT-PMP's version would send: the probe's NAT-PMP request must not take it.
    gw = await start_sim(GatewayConfig(speak_pcp=False))
    host, port = gw.address
    async with GatewayClient(host, port) as client:
        found = await client.probe(timeout=2.0)
        assert (found.pcp, found.natpmp) == (False, True)
        assert client.speaks == {"pcp": False, "natpmp": True}
        mapping = await client.map(Protocol.UDP, 5000, timeout=TIMEOUT)
        assert mapping.via == "natpmp"
    assert gw.counters.count("pcp") == 1  # only the probe: the map went straight to NAT-PMP
