"""UPnP IGD through the client (``via="upnp"`` and ``"auto"``) against the simulated IGD: every
quirk of issue 13 as a user of ``engine.map_port`` / ``GatewayClient`` meets it.

The IGD's SSDP is searched by unicast on its own loopback port (``ssdp_port=``); a UPnP-only
simulated router has nothing on 5351 (the kernel answers ICMP port unreachable), as miniupnpd
with ``enable_natpmp=no``.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from ipaddress import ip_address
from typing import Any

import pytest

import engine
from engine.client import GatewayClient
from engine.errors import InvalidRequest, ResultCodeError
from engine.igd_scout import IgdScout
from engine.negotiation import SCOUT_AFTER, SILENT_BESIDE_IGD
from engine.simulator import GatewayConfig, SimulatedGateway
from engine.simulator.state import Mapping
from engine.simulator.upnp import IgdConfig, SimulatedIgd
from engine.statefile import MappingRecord
from engine.upnp import UpnpReplyError, UpnpResultError

from .conftest import StartSim

HOST = "127.0.0.1"
OTHER = ip_address("127.0.0.2")
TCP = engine.Protocol.TCP
StartIgd = Callable[..., Awaitable[SimulatedIgd]]


def closed_udp_port() -> int:
    """A UDP port on loopback with nothing bound: the gateway's 5351 on a UPnP-only router."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def start_igd(start_sim: StartSim) -> AsyncIterator[StartIgd]:
    """``await start_igd(config, shared=False)``: a simulated IGD (UPnP only unless
    ``shared``: then over a simulated PCP/NAT-PMP gateway's table, in ``igd.pcp``, configured
    by ``sim``)."""
    async with AsyncExitStack() as stack:
        async def start(config: IgdConfig | None = None, *, shared: bool = False,
                        sim: GatewayConfig | None = None) -> SimulatedIgd:
            gateway: SimulatedGateway | None = await start_sim(sim) if shared else None
            igd = SimulatedIgd(HOST, config=config, gateway=gateway)
            await stack.enter_async_context(igd)
            igd.pcp = gateway  # type: ignore[attr-defined]
            igd.gateway_port = (gateway.address[1] if gateway  # type: ignore[attr-defined]
                                else closed_udp_port())
            return igd
        yield start


def client_for(igd: SimulatedIgd) -> GatewayClient:
    return GatewayClient(HOST, igd.gateway_port,  # type: ignore[attr-defined]
                         local_address=HOST, ssdp_port=igd.ssdp_port)


def other_hosts_mapping(igd: SimulatedIgd, port: int) -> None:
    igd.state.put(Mapping(OTHER, 6, port, port, 3600, math.inf, "upnp",
                          description="other host"))


# --- auto: PCP, then NAT-PMP, then UPnP, each as fast as the gateway allows -------------------


async def test_auto_on_a_upnp_only_gateway_maps_with_upnp_at_once(start_igd: StartIgd) -> None:
    igd = await start_igd()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client_for(igd) as client:
        mapping = await client.map(TCP, 8080, lifetime=3600)
        elapsed = loop.time() - started
        assert mapping.via == "upnp"
        assert (mapping.external_port, mapping.lifetime) == (8080, 3600)
        assert mapping.external_address == ip_address("203.0.113.7")
        assert mapping.nonce is None
        assert not mapping.permanent
        assert client.speaks["upnp"] is True
        # ICMP port unreachable from 5351 skipped NAT-PMP: PCP refused once, then one search.
        assert elapsed < 1.0
        assert igd.searches == 3   # ssdp:all and the two IGD device types, unicast, once
        assert igd.action_log == ["GetExternalIPAddress", "AddAnyPortMapping",
                                  "GetSpecificPortMappingEntry"]
        # The next map reuses the IGD found: no second search.
        await client.map(TCP, 8081, lifetime=3600)
        assert igd.searches == 3
    assert {m.external_port for m in igd.mappings()} == {8080, 8081}


async def test_auto_on_a_gateway_that_speaks_all_three_picks_pcp_with_no_added_delay(
        start_igd: StartIgd) -> None:
    igd = await start_igd(shared=True)
    pcp: SimulatedGateway = igd.pcp  # type: ignore[attr-defined]
    async with client_for(igd) as client:
        mapping = await client.map(TCP, 8080)
    assert mapping.via == "pcp"
    assert pcp.counters.received == 1   # one PCP request, answered: nothing else was tried
    assert igd.searches == 0
    assert igd.action_log == []


async def test_auto_on_a_gateway_silent_on_5351_with_an_igd_maps_with_upnp_in_a_second(
        start_igd: StartIgd) -> None:
    # A router whose firewall drops what reaches 5351 (or whose ICMP refusal the kernel's
    # rate limit swallowed): PCP's silence budget (9.5 s) and NAT-PMP's share are not waited
    # out once its IGD answers a search.
    igd = await start_igd(shared=True, sim=GatewayConfig(drop_rate=1.0))
    pcp: SimulatedGateway = igd.pcp  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    async with client_for(igd) as client:
        started = loop.time()
        mapping = await client.map(TCP, 8080, lifetime=3600)
        elapsed = loop.time() - started
        assert mapping.via == "upnp"
        assert SILENT_BESIDE_IGD <= elapsed < SILENT_BESIDE_IGD + 0.5
        assert pcp.counters.received == 1      # one PCP try, unanswered; no NAT-PMP
        assert igd.searches == 3               # the scout's search, read by the discovery
        assert (client.speaks["pcp"], client.speaks["natpmp"]) == (False, False)
        # The next request goes straight to UPnP.
        started = loop.time()
        again = await client.map(TCP, 8081, lifetime=3600)
        assert again.via == "upnp"
        assert loop.time() - started < 0.5
        assert (pcp.counters.received, igd.searches) == (1, 3)


async def test_a_short_deadline_on_a_silent_gateway_with_an_igd_still_maps_with_upnp(
        start_igd: StartIgd) -> None:
    # timeout=1: PCP's share (0.5 s) ends before the scout's patience; NAT-PMP is skipped and
    # UPnP has the other half.
    igd = await start_igd(shared=True, sim=GatewayConfig(drop_rate=1.0))
    pcp: SimulatedGateway = igd.pcp  # type: ignore[attr-defined]
    async with client_for(igd) as client:
        mapping = await client.map(TCP, 8080, lifetime=3600, timeout=1.0)
    assert mapping.via == "upnp"
    assert pcp.counters.received == 1


async def test_a_slow_pcp_answer_still_wins_over_the_igd_the_scout_found(
        start_igd: StartIgd) -> None:
    # Slower than the scout's start, well within its patience: PCP, as preferred. The
    # search went out (stateless: the IGD holds nothing from it).
    igd = await start_igd(shared=True, sim=GatewayConfig(delay=0.3))
    pcp: SimulatedGateway = igd.pcp  # type: ignore[attr-defined]
    async with client_for(igd) as client:
        mapping = await client.map(TCP, 8080)
    assert mapping.via == "pcp"
    assert pcp.counters.received == 1
    assert SCOUT_AFTER < 0.3
    assert igd.searches == 3
    assert igd.action_log == []
    assert [m.external_port for m in igd.mappings()] == [8080]


async def test_silence_without_an_igd_keeps_the_silence_budget(start_sim: StartSim) -> None:
    # Nothing answers the search either (nothing listens on the IGD's port): PCP keeps its
    # share of the deadline, then NAT-PMP, as before the scout.
    silent = await start_sim(GatewayConfig(drop_rate=1.0))
    loop = asyncio.get_running_loop()
    async with GatewayClient(HOST, silent.address[1], local_address=HOST,
                             ssdp_port=closed_udp_port()) as client:
        started = loop.time()
        with pytest.raises(engine.GatewayTimeout) as caught:
            await client.map(TCP, 8080, timeout=2.0)
        assert not isinstance(caught.value, engine.SilentBesideIgd)
        assert loop.time() - started >= 2.0
    assert silent.counters.received >= 2  # PCP, then NAT-PMP in its share


async def test_via_upnp_one_shot_map_renew_delete(start_igd: StartIgd) -> None:
    igd = await start_igd(shared=True)
    mapping = await engine.map_port(HOST, 9000, TCP, via="upnp", local_address=HOST,
                                    gateway_port=igd.gateway_port,  # type: ignore[attr-defined]
                                    ssdp_port=igd.ssdp_port, lifetime=600)
    assert mapping.via == "upnp"
    [held] = igd.mappings()
    assert (held.via, held.external_port, held.description) == ("upnp", 9000, "natdeck")
    await mapping.renew(1200)
    assert mapping.lifetime == 1200
    assert igd.action_log.count("AddPortMapping") == 1   # renew re-adds the port held
    await mapping.delete()
    assert igd.mappings() == ()
    assert mapping.deleted


async def test_requests_upnp_cannot_carry_are_refused_before_sending(
        start_igd: StartIgd) -> None:
    igd = await start_igd()
    async with client_for(igd) as client:
        asks: list[tuple[int, int, dict[str, Any]]] = [
            (47, 0, {}), (TCP, 80, {"prefer_failure": True}),
            (TCP, 80, {"external_address": "203.0.113.9"})]
        for protocol, port, extra in asks:
            with pytest.raises(InvalidRequest, match="UPnP IGD"):
                await client.map(protocol, port, via="upnp", **extra)
    assert igd.searches == 0


# --- the quirks -------------------------------------------------------------------------------


async def test_lease_cap_gives_what_the_gateway_holds(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(max_lease=3600))
    async with client_for(igd) as client:
        mapping = await client.map(TCP, 8080, lifetime=86400, via="upnp")
        assert mapping.lifetime == 3600            # the gateway's word, not ours
        assert mapping.requested_lifetime == 86400
        await client.renew(mapping)
        assert mapping.lifetime == 3600


async def test_a_port_another_host_holds_is_the_port_in_use_error_on_igdv1(
        start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(igd_version=1))
    other_hosts_mapping(igd, 8080)
    async with client_for(igd) as client:
        with pytest.raises(ResultCodeError) as caught:
            await client.map(TCP, 8080)
    error = caught.value
    assert isinstance(error, UpnpResultError)
    assert (error.protocol, error.code, error.port_in_use) == ("upnp", 718, True)
    assert "ConflictInMappingEntry (718)" in str(error)
    assert "try another port" in str(error)


async def test_a_port_another_host_holds_gets_another_port_on_igdv2(start_igd: StartIgd) -> None:
    igd = await start_igd()
    other_hosts_mapping(igd, 8080)
    async with client_for(igd) as client:
        mapping = await client.map(TCP, 8080)
        assert mapping.via == "upnp"
        assert mapping.external_port != 8080
        await client.delete(mapping)
    assert [m.internal_address for m in igd.mappings()] == [OTHER]


async def test_pcp_prefer_failure_says_port_in_use_the_same_way(start_sim: StartSim) -> None:
    gateway = await start_sim()
    await engine.map_port(HOST, 8080, TCP, gateway_port=gateway.address[1],
                          local_address="127.0.0.2")
    with pytest.raises(ResultCodeError) as caught:
        await engine.map_port(HOST, 8080, TCP, gateway_port=gateway.address[1],
                              local_address=HOST, prefer_failure=True)
    assert caught.value.port_in_use


@pytest.mark.parametrize("code", [725, 402])
async def test_permanent_only_leases(start_igd: StartIgd, code: int) -> None:
    # IGDv1 keeps a lease of 0 without end (IGDv2 gateways store it as 604800 s: below).
    igd = await start_igd(IgdConfig(igd_version=1, permanent_only=True, permanent_only_code=code))
    async with client_for(igd) as client:
        mapping = await client.map(TCP, 8080, lifetime=3600)
        assert mapping.via == "upnp"
        assert mapping.permanent
        assert mapping.lifetime == 0
        assert mapping.expires_at == math.inf
        assert mapping.remaining(0.0) == math.inf
        record = MappingRecord.from_mapping(mapping)
        assert record.permanent
        assert record.expires() == math.inf
        assert MappingRecord.from_json(record.to_json()).to_mapping().permanent
        adds = igd.action_log.count("AddPortMapping")
        assert adds == 2   # the finite lease refused, then the permanent one
        # Learnt: the next add asks for a permanent lease at once.
        second = await client.map(TCP, 8081, lifetime=3600)
        assert second.permanent
        assert igd.action_log.count("AddPortMapping") == adds + 1
        await client.delete(mapping)
        await client.delete(second)
    assert igd.mappings() == ()


async def test_permanent_only_on_igdv2_is_held_for_a_week(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(permanent_only=True))
    async with client_for(igd) as client:
        mapping = await client.map(TCP, 8080, lifetime=3600)
        assert not mapping.permanent
        assert mapping.lifetime == 604800
        await client.renew(mapping)
        await client.delete(mapping)
    # One refused add, then every add (the map's retry and the renewal) asked permanent.
    assert igd.action_log.count("AddAnyPortMapping") == 2
    assert igd.action_log.count("AddPortMapping") == 1
    assert igd.mappings() == ()


async def test_igdv1_only(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(igd_version=1))
    async with client_for(igd) as client:
        mapping = await client.map(TCP, 8080, lifetime=600)
        probed = await client.probe(timeout=2.0)
        await client.delete(mapping)
    assert mapping.via == "upnp"
    assert mapping.external_port == 8080
    assert "AddPortMapping" in igd.action_log
    assert "AddAnyPortMapping" not in igd.action_log
    assert probed.igd is not None
    assert probed.igd.igd_version == 1
    assert probed.igd.service_type.endswith("WANIPConnection:1")
    assert igd.mappings() == ()


async def test_empty_external_address_is_the_double_nat_warning_not_a_crash(
        start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(empty_external_address=True))
    async with client_for(igd) as client:
        probed = await client.probe(timeout=2.0)
        assert probed.upnp
        assert probed.via == "upnp"
        assert probed.external_address is None
        assert probed.warning is not None
        assert "another NAT above the gateway" in probed.warning
        with pytest.raises(UpnpReplyError, match="another NAT above the gateway"):
            await client.get_external_address(via="upnp")
        with pytest.raises(ResultCodeError) as caught:
            await client.map(TCP, 8080)
    assert caught.value.code == 501
    assert "ActionFailed" in str(caught.value)
    assert "second NAT" in str(caught.value)


async def test_a_lying_add_is_an_error_not_a_mapping(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(lying_add=True))
    async with client_for(igd) as client:
        with pytest.raises(UpnpReplyError, match="holds nothing"):
            await client.map(TCP, 8080)
    assert igd.mappings() == ()


async def test_delete_leaves_a_port_another_host_took_meanwhile(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(secure_mode=False))
    async with client_for(igd) as client:
        mapping = await client.map(TCP, 8080, lifetime=600)
        igd.state.remove(next(iter(igd.mappings())).key)   # ours expired...
        other_hosts_mapping(igd, 8080)                      # ...and another host took it
        await client.delete(mapping)
    assert [m.internal_address for m in igd.mappings()] == [OTHER]
    assert "DeletePortMapping" not in igd.action_log


async def test_probe_reports_all_three_with_the_igds_name(start_igd: StartIgd) -> None:
    igd = await start_igd(shared=True)
    probed = await engine.probe(HOST, gateway_port=igd.gateway_port,  # type: ignore[attr-defined]
                                local_address=HOST, ssdp_port=igd.ssdp_port, timeout=2.0)
    assert (probed.pcp, probed.natpmp, probed.upnp) == (True, True, True)
    assert probed.via == "pcp"
    assert probed.igd is not None
    assert (probed.igd.friendly_name, probed.igd.model_name, probed.igd.model_number,
            probed.igd.igd_version) == ("natdeck simulated router", "natdeck simulated IGD",
                                        "2.3.1", 2)
    assert probed.upnp_rtt is not None
    assert probed.upnp_rtt < 1.0


async def test_external_address_on_a_upnp_only_gateway(start_igd: StartIgd) -> None:
    igd = await start_igd()
    loop = asyncio.get_running_loop()
    started = loop.time()
    address = await engine.external_address(
        HOST, gateway_port=igd.gateway_port,  # type: ignore[attr-defined]
        local_address=HOST, ssdp_port=igd.ssdp_port, timeout=5.0)
    assert address == ip_address("203.0.113.7")
    assert loop.time() - started < 1.0


async def test_an_igd_that_moved_is_found_again(start_igd: StartIgd) -> None:
    igd = await start_igd()
    async with client_for(igd) as client:
        mapping = await client.map(TCP, 8080, lifetime=600)
        held = igd.mappings()
        await igd.close()
        # Rebooted: the same SSDP port, another HTTP port (miniupnpd picks one at random).
        async with SimulatedIgd(HOST, ssdp_port=igd.ssdp_port) as moved:
            for each in held:
                moved.state.put(each)
            await client.renew(mapping, 900)
        assert mapping.lifetime == 900
        assert moved.searches == 3
        assert moved.action_log[-1] == "GetSpecificPortMappingEntry"


async def test_answers_the_scout_heard_before_the_igd_moved_are_searched_again(
        start_igd: StartIgd) -> None:
    # The scout heard the IGD while PCP was slow, PCP answered; later the IGD restarted on
    # another HTTP port: the kept answers fail once, and a new search finds it.
    igd = await start_igd()
    async with client_for(igd) as client:
        upnp = client.mappers["upnp"]
        assert isinstance(upnp, IgdScout)
        assert await upnp.scout()
        await igd.close()
        async with SimulatedIgd(HOST, ssdp_port=igd.ssdp_port) as moved:
            mapping = await client.map(TCP, 8080, lifetime=600, via="upnp")
        assert mapping.via == "upnp"
        assert moved.searches == 3
        assert [m.external_port for m in moved.mappings()] == [8080]


async def test_an_ipv6_gateway_is_refused_for_upnp_before_sending() -> None:
    client = GatewayClient("::1", 5351, local_address="::1", ssdp_port=1)
    with pytest.raises(InvalidRequest, match="IPv4 hosts"):
        await client.map(TCP, 8080, via="upnp")   # nothing is opened, nothing sent


async def test_auto_on_an_ipv6_gateway_does_not_go_on_to_upnp() -> None:
    from engine.errors import PortUnreachable

    from .conftest import HOST6, ipv6_loopback_available

    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback on this machine")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST6, 0))
        closed = int(sock.getsockname()[1])
    with pytest.raises(PortUnreachable) as caught:   # not "UPnP IGD maps ports for IPv4 hosts"
        await engine.map_port(HOST6, 8080, TCP, gateway_port=closed, local_address=HOST6,
                              timeout=5.0)
    assert "UPnP" not in str(caught.value)


async def test_an_address_heard_while_upnp_is_still_probed_is_not_overwritten(
        start_sim: StartSim) -> None:
    # The probe waits for UPnP (here an SSDP port that never answers); an announcement of a
    # new address arriving meanwhile must win over the NAT-PMP/PCP answers heard before it.
    gateway = await start_sim()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent_ssdp:
        silent_ssdp.bind((HOST, 0))
        client = GatewayClient(HOST, gateway.address[1], local_address=HOST,
                               ssdp_port=int(silent_ssdp.getsockname()[1]))
        async with client:
            probing = asyncio.ensure_future(client.probe(timeout=0.6))
            await asyncio.sleep(0.2)   # PCP and NAT-PMP have answered; UPnP has not
            assert client.external_address == ip_address("203.0.113.7")
            gateway.change_external_address("198.51.100.23")
            client.external_address = ip_address("198.51.100.23")   # as the manager does
            result = await probing
    assert (result.pcp, result.natpmp, result.upnp) == (True, True, False)
    assert result.external_address == ip_address("198.51.100.23")


async def test_holds_tells_a_lost_upnp_mapping(start_igd: StartIgd) -> None:
    # UPnP has no epoch: GetSpecificPortMappingEntry is how a manager sees a mapping is gone.
    from engine.client import request_for
    from engine.upnp import UpnpMapper

    igd = await start_igd()
    async with client_for(igd) as client:
        mapper = client.mappers["upnp"]
        assert isinstance(mapper, UpnpMapper)
        mapping = await client.map(TCP, 8080, lifetime=600)
        request = request_for(mapping, mapping.requested_lifetime)
        assert await mapper.holds(request, timeout=2.0)
        igd.state.remove(next(iter(igd.mappings())).key)      # the router forgot it
        assert not await mapper.holds(request, timeout=2.0)
        other_hosts_mapping(igd, 8080)                          # and another host took it
        assert not await mapper.holds(request, timeout=2.0)


# --- a delete without a record: PCP refused by ICMP, then UPnP ---------------------------------


async def test_a_delete_without_record_on_a_upnp_only_gateway_uses_upnp(
        start_igd: StartIgd) -> None:
    igd = await start_igd()
    async with client_for(igd) as client:
        await client.map(TCP, 8090, lifetime=3600)
        other_hosts_mapping(igd, 8091)
        mapping = await engine.delete_unrecorded(client, TCP, 8090)
        assert (mapping.via, mapping.nonce, mapping.deleted) == ("upnp", None, True)
        # Another host's entry on the external port named is left alone.
        await engine.delete_unrecorded(client, TCP, 8091)
    assert [(m.external_port, m.internal_address) for m in igd.mappings()] == [(8091, OTHER)]
