"""MappingManager on a UPnP-only simulated IGD (nothing on 5351), on the virtual clock.

UPnP has no epoch: the manager renews a UPnP mapping by adding it again before its
lease ends, looks each one up every ``upnp_check_interval`` seconds, and asks again
for one the gateway no longer holds (a reboot, a flush); a permanent lease is only
looked up, and deleted on exit. What a test checks is the simulated IGD's table and
its action log, and what the manager said.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from engine.events import (
    MappingFailed,
    MappingKey,
    MappingLost,
    MappingRecovered,
    MappingRenewalFailed,
    MappingRenewed,
    MappingState,
)
from engine.manager import MappingManager
from engine.protocols import Protocol
from engine.simulator.upnp import IgdConfig, SimulatedIgd
from engine.simulator.upnp.neighbours import Neighbour, Neighbours
from tests.support.manager_rig import EventLog
from tests.support.virtual_time import run_virtual

HOST = "127.0.0.1"
TCP = Protocol.TCP
CHECK = 30.0


def closed_udp_port() -> int:
    """A loopback UDP port with nothing bound: the gateway's 5351 on a UPnP-only router."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def upnp_rig(config: IgdConfig | None = None,
                   **options: Any) -> AsyncIterator[tuple[SimulatedIgd, MappingManager, EventLog]]:
    async with SimulatedIgd(HOST, config=config) as igd:
        options.setdefault("upnp_check_interval", CHECK)
        manager = MappingManager(HOST, gateway_port=closed_udp_port(), local_address=HOST,
                                 ssdp_port=igd.ssdp_port, listen=False, rng=random.Random(1),
                                 **options)
        async with manager:
            log = EventLog(manager)
            yield igd, manager, log
        await log.finished()


def virtual(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    run_virtual(scenario)


def now() -> float:
    return asyncio.get_running_loop().time()


def held(igd: SimulatedIgd) -> dict[int, int]:
    """internal port -> external port, as the IGD holds them now."""
    return {m.internal_port: m.external_port for m in igd.mappings()}


def test_a_upnp_mapping_is_renewed_past_its_lease() -> None:
    async def scenario() -> None:
        async with upnp_rig() as (igd, manager, log):
            view = await manager.add(TCP, 8080, lifetime=120)
            assert (view.via, view.state, view.permanent) == ("upnp", MappingState.ACTIVE, False)
            assert manager.status.speaks_upnp is True
            assert manager.status.via == "upnp"
            start = now()
            await asyncio.sleep(600)   # five leases
            assert held(igd) == {8080: 8080}
            renewed = log.of(MappingRenewed, view.key)
            assert len(renewed) >= 5
            # Renewed at about half the lease (RFC 6886 §3.3's rule, as for NAT-PMP).
            assert 50 <= renewed[0].at - start <= 70
            assert view.expires_at is not None
            assert view.expires_at > now()
            assert not log.of(MappingLost)
        assert igd.mappings() == ()   # deleted on exit

    virtual(scenario)


def test_a_mapping_the_igd_forgot_is_found_missing_and_recreated() -> None:
    async def scenario() -> None:
        async with upnp_rig() as (igd, manager, log):
            view = await manager.add(TCP, 8080, external_port=40080, lifetime=3600)
            assert held(igd) == {8080: 40080}
            igd.state.restart(now())   # a reboot: the table is flushed
            assert igd.mappings() == ()
            flushed = now()
            [lost] = await log.wait_for(MappingLost)
            assert lost.key == view.key
            assert "no longer holds" in lost.reason
            assert lost.at - flushed <= CHECK + 1   # noticed at the next look-up
            [recovered] = await log.wait_for(MappingRecovered)
            assert recovered.same_port
            assert held(igd) == {8080: 40080}   # the same external port again
            assert view.state is MappingState.ACTIVE
            # Long before the renewal (at ~1800 s): it was the look-up that noticed.
            assert recovered.at - flushed <= CHECK + 5
        assert igd.mappings() == ()

    virtual(scenario)


def test_a_permanent_lease_is_looked_up_not_renewed_and_deleted_on_exit() -> None:
    async def scenario() -> None:
        config = IgdConfig(igd_version=1, permanent_only=True)
        async with upnp_rig(config) as (igd, manager, log):
            view = await manager.add(TCP, 8080, lifetime=120)
            assert view.permanent
            assert view.expires_at is None
            assert view.next_renewal_at is None
            adds = igd.action_log.count("AddPortMapping")
            looked = igd.action_log.count("GetSpecificPortMappingEntry")
            await asyncio.sleep(10 * CHECK)
            # Never re-added (a permanent lease needs no renewal), but looked up each time.
            assert igd.action_log.count("AddPortMapping") == adds
            assert igd.action_log.count("GetSpecificPortMappingEntry") - looked >= 9
            assert not log.of(MappingRenewed)
            # Then the router forgets it: the look-up notices and it is asked for again.
            igd.state.restart(now())
            await log.wait_for(MappingRecovered)
            assert held(igd) == {8080: 8080}
            assert manager.mappings[MappingKey(int(TCP), 8080)].permanent
        assert igd.mappings() == ()   # a permanent lease must be deleted: it was
        assert "DeletePortMapping" in igd.action_log

    virtual(scenario)


def test_no_look_ups_when_turned_off() -> None:
    async def scenario() -> None:
        async with upnp_rig(upnp_check_interval=None) as (igd, manager, log):
            await manager.add(TCP, 8080, lifetime=3600)
            looked = igd.action_log.count("GetSpecificPortMappingEntry")
            igd.state.restart(now())
            await asyncio.sleep(10 * CHECK)
            assert igd.action_log.count("GetSpecificPortMappingEntry") == looked
            assert not log.of(MappingLost)

    virtual(scenario)


def test_the_status_names_the_igd_and_warns_of_a_double_nat() -> None:
    async def scenario() -> None:
        config = IgdConfig(empty_external_address=True, friendly_name="Box")
        async with upnp_rig(config) as (_, manager, _log):
            result = await manager.probe()
            assert result.upnp
            status = manager.status
            assert (status.speaks_pcp, status.speaks_natpmp, status.speaks_upnp) == (
                False, False, True)
            assert status.igd is not None
            assert (status.igd.friendly_name, status.igd.igd_version) == ("Box", 2)
            assert status.warning is not None
            assert status.warning == result.warning
            assert status.reachable is True   # (answered over HTTP, not on 5351)

    virtual(scenario)


OTHER_HOST = "198.18.0.50"


def taken_by_another_host(igd: SimulatedIgd, external_port: int) -> None:
    """Our mapping of ``external_port`` is gone (its lease ran out, the router lost it) and
    another LAN host has mapped that port since."""
    [ours] = [m for m in igd.mappings() if m.external_port == external_port]
    igd.state.remove(ours.key)
    other = Neighbour(OTHER_HOST, int(TCP), 9999, external_port, 3600, "upnp", "another host")
    assert Neighbours(igd.state, lan=(other,), churn=()).open(other, now())


def others(igd: SimulatedIgd) -> set[tuple[str, int]]:
    """(host, external port) of every mapping of another host."""
    return {(str(m.internal_address), m.external_port) for m in igd.mappings()
            if str(m.internal_address) != HOST}


def ours(igd: SimulatedIgd) -> dict[int, int]:
    """internal port -> external port of this host's mappings."""
    return {m.internal_port: m.external_port for m in igd.mappings()
            if str(m.internal_address) == HOST}


def test_a_renewal_refused_718_moves_the_mapping_to_another_port() -> None:
    """The re-add of the held port is refused 718 ConflictInMappingEntry (another host holds
    it): the mapper adds the mapping anew with AddAnyPortMapping, as the first add does, and
    the manager reports the port change; the user keeps a working mapping."""

    async def scenario() -> None:
        async with upnp_rig(upnp_check_interval=None) as (igd, manager, log):
            view = await manager.add(TCP, 8080, external_port=40080, lifetime=120)
            taken_by_another_host(igd, 40080)
            anys = igd.action_log.count("AddAnyPortMapping")
            [renewed] = await log.wait_for(MappingRenewed, timeout=70)
            assert renewed.port_changed
            assert not log.of(MappingRenewalFailed)
            assert igd.action_log.count("AddAnyPortMapping") == anys + 1
            moved = view.external_port
            assert moved is not None
            assert moved != 40080
            assert view.state is MappingState.ACTIVE
            assert ours(igd) == {8080: moved}           # ours, at the new port
            assert others(igd) == {(OTHER_HOST, 40080)}  # the other host's, untouched
            # And it stays: the next renewals re-add the new port.
            await asyncio.sleep(300)
            assert len(log.of(MappingRenewed)) >= 4
            assert view.external_port == moved
            assert view.state is MappingState.ACTIVE
            assert not log.of(MappingFailed)
        assert others(igd) == {(OTHER_HOST, 40080)}   # the exit deleted ours only
        assert ours(igd) == {}

    virtual(scenario)


def test_a_look_up_that_finds_the_port_taken_recovers_on_another_port() -> None:
    """The look-up finds another host at our port: asked for again, refused 718, moved."""

    async def scenario() -> None:
        async with upnp_rig() as (igd, manager, log):
            view = await manager.add(TCP, 8080, external_port=40080, lifetime=3600)
            taken_by_another_host(igd, 40080)
            [recovered] = await log.wait_for(MappingRecovered, timeout=CHECK + 5)
            assert not recovered.same_port
            assert view.state is MappingState.ACTIVE
            assert view.external_port not in (None, 40080)
            assert ours(igd) == {8080: view.external_port}
            assert others(igd) == {(OTHER_HOST, 40080)}
            assert not log.of(MappingFailed)

    virtual(scenario)


def test_an_igdv1_renewal_refused_718_still_fails() -> None:
    """IGDv1 has no AddAnyPortMapping: the first add would be refused that port too, so the
    718 is the answer (the mapping waits for a change), and nothing is sent in a loop."""

    async def scenario() -> None:
        async with upnp_rig(IgdConfig(igd_version=1), upnp_check_interval=None) as (
                igd, manager, log):
            view = await manager.add(TCP, 8080, external_port=40080, lifetime=120)
            taken_by_another_host(igd, 40080)
            [failed] = await log.wait_for(MappingRenewalFailed, timeout=70)
            assert getattr(failed.error, "code", None) == 718
            assert view.state is MappingState.FAILED
            adds = igd.action_log.count("AddPortMapping")
            await asyncio.sleep(600)
            assert igd.action_log.count("AddPortMapping") == adds
            assert others(igd) == {(OTHER_HOST, 40080)}

    virtual(scenario)
