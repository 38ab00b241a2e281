"""engine.upnp's UpnpGateway against the simulated IGD on loopback: every quirk of issue 13.

SSDP is searched by unicast to the simulator's own port (never multicast on loopback).
"""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from ipaddress import ip_address
from typing import Any

import pytest

import engine
from engine.errors import GatewayTimeout, InvalidRequest, ResultCodeError
from engine.simulator import SimulatedGateway
from engine.simulator.state import Mapping
from engine.simulator.upnp import IgdConfig, SimulatedIgd, miniupnpd_nonce
from engine.upnp import (
    MAX_LEASE,
    UpnpGateway,
    UpnpReplyError,
    UpnpResultError,
    UpnpTimeout,
)

from .conftest import StartSim

HOST = "127.0.0.1"
OTHER = ip_address("127.0.0.2")   # "another host" in the simulated table
StartIgd = Callable[..., Awaitable[SimulatedIgd]]


@pytest.fixture
async def start_igd(start_sim: StartSim) -> AsyncIterator[StartIgd]:
    """Start simulated IGDs: ``await start_igd(config, shared=True)`` (shared: over a simulated
    NAT-PMP/PCP gateway's table; else UPnP only, nothing on 5351)."""
    async with AsyncExitStack() as stack:
        async def start(config: IgdConfig | None = None, *, shared: bool = True,
                        **extra: Any) -> SimulatedIgd:
            gateway: SimulatedGateway | None = await start_sim() if shared else None
            igd = SimulatedIgd(HOST, config=config, gateway=gateway, **extra)
            await stack.enter_async_context(igd)
            igd.pcp = gateway  # type: ignore[attr-defined]
            return igd
        yield start


def client(igd: SimulatedIgd, **extra: Any) -> UpnpGateway:
    return UpnpGateway(HOST, ssdp_port=igd.ssdp_port, **extra)


def other_hosts_mapping(igd: SimulatedIgd, port: int, protocol: int = 6) -> None:
    igd.state.put(Mapping(OTHER, protocol, port, port, 3600, math.inf, "upnp",
                          description="other host"))


async def test_map_renew_delete(start_igd: StartIgd) -> None:
    igd = await start_igd()
    async with client(igd) as upnp:
        mapping = await upnp.map(engine.Protocol.TCP, 8080, lifetime=3600)
        assert (mapping.external_port, mapping.internal_port) == (8080, 8080)
        assert mapping.internal_client == ip_address(HOST)
        assert mapping.lifetime == 3600
        assert not mapping.permanent
        assert mapping.external_address == ip_address("203.0.113.7")
        [held] = igd.mappings()
        assert (held.via, held.external_port, held.description) == ("upnp", 8080, "natdeck")
        renewed = await upnp.renew(mapping, 7200)
        assert renewed.external_port == 8080
        assert renewed.lifetime == 7200
        await upnp.delete(renewed)
        assert igd.mappings() == ()
        await upnp.delete(renewed)   # already gone: still fine


async def test_external_address_is_asked_before_every_add(start_igd: StartIgd) -> None:
    igd = await start_igd()
    async with client(igd) as upnp:
        await upnp.map(engine.Protocol.UDP, 5000)
    assert igd.action_log == ["GetExternalIPAddress", "AddAnyPortMapping",
                              "GetSpecificPortMappingEntry"]


async def test_a_failing_address_query_adds_nothing(start_igd: StartIgd) -> None:
    igd = await start_igd()
    original = igd.control.handle

    def broken(action: str, *args: Any) -> Any:
        if action == "GetExternalIPAddress":
            from engine.simulator.upnp import Fault
            return Fault(501, "Action Failed")
        return original(action, *args)

    igd.control.handle = broken  # type: ignore[method-assign]
    async with client(igd) as upnp:
        for _ in range(3):
            with pytest.raises(UpnpResultError):
                await upnp.map(engine.Protocol.TCP, 8080)
    assert igd.actions["AddAnyPortMapping"] == 0
    assert igd.mappings() == ()


async def test_lease_cap_of_the_gateway_is_what_the_mapping_says(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(max_lease=600))
    async with client(igd) as upnp:
        mapping = await upnp.map(engine.Protocol.TCP, 8080, lifetime=3600)
    assert mapping.lifetime == 600
    assert mapping.requested_lifetime == 3600


async def test_leases_above_a_week_are_capped_by_the_client(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(max_lease=10**6))
    async with client(igd) as upnp:
        mapping = await upnp.map(engine.Protocol.TCP, 8080, lifetime=10**6)
    assert mapping.requested_lifetime == MAX_LEASE == mapping.lifetime


async def test_lease_zero_on_igdv2_is_a_week_not_forever(start_igd: StartIgd) -> None:
    igd = await start_igd()
    async with client(igd) as upnp:
        mapping = await upnp.map(engine.Protocol.TCP, 8080, lifetime=0)
    assert mapping.lifetime == MAX_LEASE
    assert not mapping.permanent


@pytest.mark.parametrize("code", [725, 402])
async def test_permanent_only_gateway_gets_a_permanent_lease(start_igd: StartIgd,
                                                             code: int) -> None:
    igd = await start_igd(IgdConfig(igd_version=1, permanent_only=True,
                                    permanent_only_code=code))
    async with client(igd) as upnp:
        mapping = await upnp.map(engine.Protocol.TCP, 8080, lifetime=7200)
        assert mapping.permanent
        assert mapping.lifetime == 0
        assert mapping.expires_at is None
        assert igd.actions["AddPortMapping"] == 2
        await upnp.renew(mapping)    # stays permanent: asked as such at once
        assert igd.actions["AddPortMapping"] == 3
        await upnp.delete(mapping)
    assert igd.mappings() == ()


async def test_igdv1_only(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(igd_version=1))
    async with client(igd) as upnp:
        probe = await upnp.probe()
        assert probe.device.igd_version == 1
        assert probe.device.service_type == "urn:schemas-upnp-org:service:WANIPConnection:1"
        assert "AddAnyPortMapping" not in probe.device.actions
        assert not probe.device.pinholes
        await upnp.map(engine.Protocol.TCP, 8080)
        listing = await upnp.list_mappings()
    assert igd.actions["AddPortMapping"] == 1
    assert igd.actions["AddAnyPortMapping"] == 0
    assert listing.method == "GetGenericPortMappingEntry"
    assert [m.external_port for m in listing.mappings] == [8080]


async def test_718_for_another_hosts_port_on_igdv1_is_port_in_use(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(igd_version=1))
    other_hosts_mapping(igd, 8080)
    async with client(igd) as upnp:
        with pytest.raises(UpnpResultError) as caught:
            await upnp.map(engine.Protocol.TCP, 8080)
    error = caught.value
    assert isinstance(error, ResultCodeError)
    assert (error.code, error.name) == (718, "ConflictInMappingEntry")
    assert error.port_in_use
    assert error.pcp_equivalent is engine.PcpResult.CANNOT_PROVIDE_EXTERNAL


@pytest.mark.parametrize("igd_version", [1, 2])
async def test_a_renewal_of_a_port_another_host_took_moves_only_when_asked(
        start_igd: StartIgd, igd_version: int) -> None:
    igd = await start_igd(IgdConfig(igd_version=igd_version))
    async with client(igd) as upnp:
        mapping = await upnp.map(engine.Protocol.TCP, 8080, external_port=40080)
        [ours] = igd.mappings()
        igd.state.remove(ours.key)           # our lease ran out, and then...
        other_hosts_mapping(igd, 40080)      # ...another host mapped that port
        with pytest.raises(UpnpResultError) as caught:   # by default, as before: 718
            await upnp.renew(mapping)
        assert caught.value.port_in_use
        if igd_version == 1:   # no AddAnyPortMapping: the same 718 (no other port to ask)
            with pytest.raises(UpnpResultError, match="ConflictInMappingEntry"):
                await upnp.renew(mapping, move_if_taken=True)
            return
        moved = await upnp.renew(mapping, move_if_taken=True)
    assert moved.external_port not in (40080, 0)
    assert moved.internal_port == 8080
    held = {(str(m.internal_address), m.external_port) for m in igd.mappings()}
    assert held == {(str(OTHER), 40080), (HOST, moved.external_port)}


async def test_add_any_port_mapping_reads_the_granted_port(start_igd: StartIgd) -> None:
    igd = await start_igd()
    other_hosts_mapping(igd, 8080)
    async with client(igd) as upnp:
        mapping = await upnp.map(engine.Protocol.TCP, 8080)
        low = await upnp.map(engine.Protocol.TCP, 80)
    assert mapping.external_port == 8079      # as miniupnpd: the next free port below
    assert low.external_port == 1024          # outside the allowed range: the lowest allowed


async def test_the_same_host_overwrites_its_own_mapping(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(igd_version=1))
    async with client(igd) as upnp:
        await upnp.map(engine.Protocol.TCP, 8080, external_port=9000)
        moved = await upnp.map(engine.Protocol.TCP, 8081, external_port=9000)
    assert moved.internal_port == 8081
    assert [(m.external_port, m.internal_port) for m in igd.mappings()] == [(9000, 8081)]


async def test_renew_after_another_host_took_the_port(start_igd: StartIgd) -> None:
    igd = await start_igd()
    async with client(igd) as upnp:
        mapping = await upnp.map(engine.Protocol.TCP, 8080)
        igd.state.remove(igd.mappings()[0].key)
        other_hosts_mapping(igd, 8080)
        with pytest.raises(UpnpResultError) as caught:
            await upnp.renew(mapping)
    assert caught.value.port_in_use


async def test_empty_external_address_is_a_warning_and_adds_fail_501(
        start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(empty_external_address=True))
    async with client(igd) as upnp:
        external = await upnp.external_address()
        assert external.address is None
        assert not external.public
        assert external.warning is not None
        assert "NAT" in external.warning
        with pytest.raises(UpnpResultError) as caught:
            await upnp.map(engine.Protocol.TCP, 8080)
    assert (caught.value.code, caught.value.name) == (501, "ActionFailed")


async def test_a_lying_add_is_an_error_not_a_mapping(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(lying_add=True))
    async with client(igd) as upnp:
        with pytest.raises(UpnpReplyError, match="holds nothing"):
            await upnp.map(engine.Protocol.TCP, 8080)
    assert igd.mappings() == ()


async def test_upnp_only_gateway_has_nothing_on_5351(start_igd: StartIgd) -> None:
    igd = await start_igd(shared=False)
    async with client(igd) as upnp:
        mapping = await upnp.map(engine.Protocol.TCP, 8080)
    assert mapping.external_port == 8080
    # What a PCP/NAT-PMP client meets there: ICMP port unreachable, at once, which a
    # connected UDP socket reports as ConnectionRefusedError (the "not spoken here" signal).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        closed_port = probe.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as pcp:
        pcp.settimeout(1.0)
        pcp.connect((HOST, closed_port))
        pcp.send(b"\x02" + bytes(59))
        with pytest.raises(ConnectionRefusedError):
            pcp.recv(1100)


async def test_secure_mode_refuses_deleting_another_hosts_mapping(start_igd: StartIgd) -> None:
    igd = await start_igd()
    other_hosts_mapping(igd, 40000)
    async with client(igd) as upnp:
        with pytest.raises(UpnpResultError) as caught:
            await upnp.delete_mapping(engine.Protocol.TCP, 40000)
        assert (caught.value.code, caught.value.name) == (606, "ActionNotAuthorized")
        assert len(igd.mappings()) == 1
        igd.configure(secure_mode=False)
        await upnp.delete_mapping(engine.Protocol.TCP, 40000)
    assert igd.mappings() == ()


async def test_listing_shows_pcp_and_natpmp_mappings_and_upnp_deletes_them(
        start_igd: StartIgd) -> None:
    igd = await start_igd()
    pcp_gateway: SimulatedGateway = igd.pcp  # type: ignore[attr-defined]
    port = pcp_gateway.address[1]
    pcp = await engine.map_port(HOST, 41000, engine.Protocol.TCP, via="pcp", gateway_port=port,
                                local_address=HOST)
    await engine.map_port(HOST, 41001, engine.Protocol.UDP, via="natpmp", gateway_port=port,
                          local_address=HOST)
    other_hosts_mapping(igd, 41002)
    async with client(igd) as upnp:
        await upnp.map(engine.Protocol.TCP, 41003)
        listing = await upnp.list_mappings()
        by_port = {m.external_port: m for m in listing.mappings}
        assert listing.method == "GetListOfPortMappings"
        assert by_port[41000].made_by == "pcp"
        assert by_port[41000].description == f"PCP MAP {miniupnpd_nonce(pcp.nonce)}"  # type: ignore[union-attr]
        assert by_port[41001].made_by == "natpmp"
        assert by_port[41001].protocol == 17
        assert by_port[41002].internal_client == OTHER
        assert by_port[41003].made_by == "upnp"
        assert all(by_port[port].lease_remaining for port in (41000, 41001, 41003))
        assert by_port[41002].lease_remaining is None    # permanent
        await upnp.delete_mapping(engine.Protocol.TCP, 41000)
    assert 41000 not in {m.external_port for m in pcp_gateway.mappings}


async def test_a_generic_walk_copes_with_adds_and_deletes_mid_walk(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(igd_version=1))
    for port in (42000, 42001, 42002, 42003):
        other_hosts_mapping(igd, port)
    original = igd.control.handle
    reads = 0

    def changing(action: str, arguments: Any, *rest: Any) -> Any:
        nonlocal reads
        if action == "GetGenericPortMappingEntry":
            reads += 1
            if reads == 2:      # a newcomer shifts every index: one entry is read twice
                other_hosts_mapping(igd, 42004)
            if reads == 4:      # one leaves: an entry shifts down past the walk
                igd.state.remove(next(m.key for m in igd.mappings() if m.external_port == 42000))
        return original(action, arguments, *rest)

    igd.control.handle = changing  # type: ignore[method-assign]
    async with client(igd) as upnp:
        listing = await upnp.list_mappings()
    ports = [m.external_port for m in listing.mappings]
    assert sorted(ports) == [42001, 42002, 42003, 42004]    # each once, the table as it is now
    assert len(ports) == len(set(ports))


async def test_a_location_on_another_host_is_ignored(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(advertised_host="127.0.0.2"))
    async with client(igd, timeout=0.5) as upnp:
        with pytest.raises(UpnpTimeout, match="ignored"):
            await upnp.probe()
    assert igd.actions.total() == 0


async def test_control_urls_on_another_host_are_refused(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(control_host="127.0.0.2:1"))
    async with client(igd) as upnp:
        with pytest.raises(UpnpReplyError, match="WANIPConnection"):
            await upnp.map(engine.Protocol.TCP, 8080)


async def test_no_igd_is_a_gateway_timeout(start_igd: StartIgd) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((HOST, 0))
        async with UpnpGateway(HOST, ssdp_port=silent.getsockname()[1], timeout=0.3) as upnp:
            with pytest.raises(GatewayTimeout, match="no IGD answer"):
                await upnp.external_address()


async def test_a_hung_igd_times_out_per_request(start_igd: StartIgd) -> None:
    igd = await start_igd()
    async with client(igd, timeout=0.5) as upnp:
        await upnp.probe()
        igd.configure(http_delay=5.0)
        with pytest.raises(UpnpTimeout, match="no HTTP answer"):
            await upnp.external_address()


async def test_bodies_over_the_limit_are_refused(start_igd: StartIgd) -> None:
    igd = await start_igd()
    async with client(igd, max_body=500) as upnp:
        with pytest.raises(UpnpReplyError, match="bytes"):
            await upnp.probe()


async def test_requests_upnp_cannot_carry_are_refused_before_sending(
        start_igd: StartIgd) -> None:
    igd = await start_igd()
    async with client(igd) as upnp:
        for call in (upnp.map(47, 0), upnp.map(6, 0), upnp.map(6, 80, lifetime=-1)):
            with pytest.raises(InvalidRequest):
                await call
    assert igd.actions.total() == 0


async def test_pinholes_on_ipv6(start_sim: StartSim) -> None:
    from .conftest import ipv6_loopback_available
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback on this machine")
    async with SimulatedIgd("::1") as igd, UpnpGateway("::1", ssdp_port=igd.ssdp_port) as upnp:
        unique_id = await upnp.add_pinhole(engine.Protocol.TCP, 8080, lifetime=600)
        assert set(igd.control.pinholes(0)) == {unique_id}
        await upnp.update_pinhole(unique_id, 1200)
        await upnp.delete_pinhole(unique_id)
        assert igd.control.pinholes(0) == {}
        with pytest.raises(UpnpResultError) as caught:
            await upnp.delete_pinhole(unique_id)
        assert caught.value.code == 704
        with pytest.raises(InvalidRequest):
            await upnp.add_pinhole(engine.Protocol.TCP, 8080, internal_client="192.0.2.1")


async def test_of_several_igds_the_connected_one_with_an_address_is_used(
        start_igd: StartIgd) -> None:
    broken = await start_igd(IgdConfig(empty_external_address=True), shared=False)
    good = await start_igd(IgdConfig(friendly_name="the good one"), shared=False)
    answers = iter([broken.ssdp_answer, good.ssdp_answer, good.ssdp_answer])

    def both(data: bytes) -> bytes | None:
        # One SSDP port answering with both descriptions (two IGDs on the gateway's address).
        return next(answers, good.ssdp_answer)(data)

    broken.ssdp_answer = both  # type: ignore[method-assign]
    async with client(broken) as upnp:
        probe = await upnp.probe()
    assert probe.device.location == good.location
    assert probe.device.friendly_name == "the good one"
    assert broken.actions["GetExternalIPAddress"] == 1      # asked once, to rank it


async def test_redirects_are_not_followed_and_off_gateway_locations_refused() -> None:
    from aiohttp import web

    fetched: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        fetched.append(request.path)
        raise web.HTTPFound("http://127.0.0.2:1/rootDesc.xml")

    app = web.Application()
    app.router.add_get("/rootDesc.xml", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with UpnpGateway(HOST, location=f"http://{HOST}:{port}/rootDesc.xml") as upnp:
            with pytest.raises(UpnpReplyError, match="unusable"):
                await upnp.probe()
        assert fetched == ["/rootDesc.xml"]          # asked once, the redirect not followed
        async with UpnpGateway(HOST, location="http://127.0.0.2:1/rootDesc.xml") as upnp:
            with pytest.raises(UpnpReplyError, match=r"not on 127\.0\.0\.1"):
                await upnp.probe()
    finally:
        await runner.cleanup()


async def test_pinholes_where_the_igd_offers_none(start_igd: StartIgd) -> None:
    igd = await start_igd(IgdConfig(igd_version=1))
    async with client(igd) as upnp:
        with pytest.raises(UpnpReplyError, match="WANIPv6FirewallControl"):
            await upnp.add_pinhole(engine.Protocol.TCP, 8080, internal_client="::1")


def test_the_simulated_igd_serves_only_loopback() -> None:
    with pytest.raises(ValueError, match="only loopback"):
        SimulatedIgd("192.0.2.1")
    with pytest.raises(ValueError, match="igd_version"):
        IgdConfig(igd_version=3)
