"""engine.delete_unrecorded against the simulated gateway: a mapping deleted with no record
of it, the protocol chosen from the gateway's answers (PCP and NAT-PMP here; UPnP IGD in
test_upnp_client.py)."""

from __future__ import annotations

import pytest

import engine
from engine.codes import PcpResult
from engine.errors import InvalidRequest, ResultCodeError, UnsupportedVersion
from engine.simulator import GatewayConfig, SimulatedGateway

from .conftest import HOST4, StartSim

TCP = engine.Protocol.TCP


def _client(sim: SimulatedGateway) -> engine.GatewayClient:
    return engine.GatewayClient(HOST4, sim.address[1], local_address=HOST4)


def _held(sim: SimulatedGateway) -> set[tuple[int, int]]:
    return {(m.protocol, m.internal_port) for m in sim.mappings}


async def test_natpmp_only_gateway_deletes_with_natpmp(start_sim: StartSim) -> None:
    sim = await start_sim(GatewayConfig(speak_pcp=False))
    async with _client(sim) as client:
        await client.map(TCP, 7000, lifetime=600, via="natpmp")
        assert (6, 7000) in _held(sim)
        mapping = await engine.delete_unrecorded(client, TCP, 7000)
    # PCP answered UNSUPP_VERSION: NAT-PMP deleted it, and the mapping says so.
    assert (mapping.via, mapping.nonce, mapping.deleted) == ("natpmp", None, True)
    assert (6, 7000) not in _held(sim)


async def test_pcp_deletes_with_a_fresh_nonce_what_it_holds_under_none(
        sim: SimulatedGateway) -> None:
    # Nothing held: PCP's delete with a fresh nonce is answered SUCCESS, nothing else is tried.
    async with _client(sim) as client:
        mapping = await engine.delete_unrecorded(client, TCP, 7001)
    assert mapping.via == "pcp"
    assert mapping.nonce is not None
    assert len(mapping.nonce) == 12
    assert mapping.deleted


async def test_another_nonces_pcp_mapping_is_refused_not_authorized(
        sim: SimulatedGateway) -> None:
    async with _client(sim) as maker:
        await maker.map(TCP, 7002, lifetime=600, via="pcp")
    async with _client(sim) as stranger:
        with pytest.raises(ResultCodeError) as refused:
            await engine.delete_unrecorded(stranger, TCP, 7002)
    assert (refused.value.protocol, refused.value.code) == ("pcp", PcpResult.NOT_AUTHORIZED)
    assert (6, 7002) in _held(sim)  # the gateway keeps it: it will expire on its own


async def test_a_named_protocol_does_not_fall_back(start_sim: StartSim) -> None:
    sim = await start_sim(GatewayConfig(speak_pcp=False))
    async with _client(sim) as client:
        await client.map(TCP, 7003, lifetime=600, via="natpmp")
        with pytest.raises(UnsupportedVersion):
            await engine.delete_unrecorded(client, TCP, 7003, via="pcp")
    assert (6, 7003) in _held(sim)


async def test_the_request_is_validated_before_anything_is_sent(
        sim: SimulatedGateway) -> None:
    async with _client(sim) as client:
        with pytest.raises(InvalidRequest, match="no ports"):
            await engine.delete_unrecorded(client, 47, 5)  # GRE has no ports
        with pytest.raises(InvalidRequest, match="NAT-PMP"):
            await engine.delete_unrecorded(client, 47, 0, via="natpmp")
    assert sim.counters.received == 0


async def test_what_nat_pmp_cannot_carry_does_not_fall_back_to_it(start_sim: StartSim) -> None:
    # GRE has no ports and NAT-PMP maps only TCP and UDP: PCP's refusal is the answer.
    sim = await start_sim(GatewayConfig(speak_pcp=False))
    async with _client(sim) as client:
        with pytest.raises(UnsupportedVersion):
            await engine.delete_unrecorded(client, 47, 0)
    assert sim.counters.requests[("natpmp", 1)] + sim.counters.requests[("natpmp", 2)] == 0
