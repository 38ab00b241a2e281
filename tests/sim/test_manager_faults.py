"""MappingManager under faults (ISSUE 8): loss, reboots mid-renewal, address changes mid-burst,
announcements from strangers and floods of them. Simulated gateway, virtual clock."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from ipaddress import IPv4Address

from engine.events import (
    ExternalAddressChanged,
    GatewayRestarted,
    LocalAddressChanged,
    MappingKey,
    MappingLost,
    MappingRecovered,
    MappingRenewalFailed,
    MappingState,
)
from engine.protocols import Protocol
from engine.wire import natpmp, pcp
from tests.support.manager_rig import LOOPBACK, Rig, open_fds, other_tasks, rig, run_fast_virtual
from tests.support.virtual_time import now

TCP = Protocol.TCP




async def add_many(r: Rig, count: int, **options: object) -> list[MappingKey]:
    views = await asyncio.gather(*(
        r.manager.add(TCP, 20000 + i, external_port=40000 + i, **options)  # type: ignore[arg-type]
        for i in range(count)))
    return [view.key for view in views]


def expected_ports(count: int) -> dict[int, int]:
    return {20000 + i: 40000 + i for i in range(count)}


def gateway_ports(r: Rig) -> dict[int, int]:
    return {m.internal_port: m.external_port for m in r.gateway.mappings}


def all_active(r: Rig) -> bool:
    return all(v.state is MappingState.ACTIVE for v in r.manager.mappings.values())


def none_lost(r: Rig) -> bool:
    """No mapping LOST or FAILED (one may be RENEWING: a renewal out, or its retry due)."""
    return all(v.state in (MappingState.ACTIVE, MappingState.RENEWING)
               for v in r.manager.mappings.values())


def never_lost_for_good(r: Rig) -> None:
    """Every MappingLost was followed by a MappingRecovered of the same mapping."""
    for lost in r.log.of(MappingLost):
        assert any(e.at >= lost.at for e in r.log.of(MappingRecovered, lost.key)), lost


# -- packet loss -----------------------------------------------------------------------------------


def test_thirty_percent_loss_for_hours_loses_nothing_for_good() -> None:
    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=600), lifetime=600) as r:
            await add_many(r, 50)
            r.gateway.configure(drop_rate=0.3, seed=8)
            await asyncio.sleep(3 * 3600)
            assert r.gateway.counters.dropped > 300  # the loss was real
            assert len(r.log.of(MappingRenewalFailed)) > 100
            # Renewals are being retried, but nothing is gone from the gateway.
            assert none_lost(r)
            assert gateway_ports(r) == expected_ports(50)
            never_lost_for_good(r)

    run_fast_virtual(scenario)


def test_an_hour_of_loss_with_a_thousand_mappings_leaks_nothing() -> None:
    """Issue 8: 30 % loss for an hour with 1,000 mappings: nothing lost at the end, no task,
    socket or memory left behind. Memory is compared between two quiet moments, each after
    an hour of loss (the first hour also warms up what is allocated once): what a request
    allocates must be freed again. (The tap and the log keep only what is checked.)"""

    async def lossy_hour(r: Rig, seed: int) -> None:
        r.gateway.configure(drop_rate=0.3, seed=seed)
        await asyncio.sleep(3600)
        r.gateway.configure(drop_rate=0.0)
        await asyncio.sleep(600)  # anything lost is recovered by now
        gc.collect()

    async def scenario() -> None:
        fds, tasks = open_fds(), other_tasks()
        async with rig(gateway=dict(max_lifetime=3600), lifetime=3600, record=False,
                       keep_events=(MappingLost, MappingRecovered)) as r:
            await add_many(r, 1000)
            settled_tasks = len(other_tasks())
            await lossy_hour(r, seed=3)
            assert r.gateway.counters.dropped > 300
            never_lost_for_good(r)
            assert none_lost(r)
            assert gateway_ports(r) == expected_ports(1000)
            blocks, requests = sys.getallocatedblocks(), r.tap.count
            await lossy_hour(r, seed=4)
            requests = r.tap.count - requests
            grown = sys.getallocatedblocks() - blocks
            assert requests > 2000
            # A leak of one object per request would be another 2,000+ blocks.
            assert grown < 3 * 1000, (grown, requests)
            assert len(other_tasks()) <= settled_tasks + 32  # at most the requests out
            never_lost_for_good(r)
            assert none_lost(r)
            assert gateway_ports(r) == expected_ports(1000)
        await asyncio.sleep(0)  # a closed transport lets go of its socket on the next turn
        assert other_tasks() == tasks
        assert open_fds() == fds

    run_fast_virtual(scenario)


# -- reboots while renewals are in flight ------------------------------------------------------


def test_restarts_while_renewals_are_in_flight() -> None:
    """The gateway reboots again and again, some reboots 3 s after the last, while the
    re-creations the last one caused wait in its queue (each request takes 50 ms; a queue
    dies with the table). Each reboot is reported once and every mapping ends up back, on
    its port, within seconds of the last."""

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=120, delay=0.05), lifetime=120) as r:
            await add_many(r, 100)
            queued = 0
            # Not closer than 3 s: two reboots within the epoch check's 2 s tolerance
            # (RFC 6887 §8.5, RFC 6886 §3.6) look like one, to any client.
            for pause in (40, 3, 44, 3, 4, 50, 3):
                await asyncio.sleep(pause)
                counters = r.gateway.counters
                queued += counters.received - counters.answered - counters.dropped
                r.gateway.restart()
            assert queued > 20  # the reboots did catch requests waiting to be answered
            await asyncio.sleep(15)
            assert len(r.log.of(GatewayRestarted)) == 7
            assert r.manager.status.restarts == 7
            assert gateway_ports(r) == expected_ports(100)
            assert all_active(r)
            never_lost_for_good(r)

    run_fast_virtual(scenario)


def test_every_mapping_is_back_soon_after_a_restart_that_caught_requests_in_flight() -> None:
    """A reboot while user-asked renewals wait in the gateway: those mappings too are back
    within seconds, not at their next renewal window."""

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=3600, delay=0.05), lifetime=3600) as r:
            keys = await add_many(r, 100)
            # Ask for every renewal at once: a queue 5 s long forms in the gateway.
            renewals = [asyncio.ensure_future(r.manager.renew(k)) for k in keys]
            await asyncio.sleep(1)
            r.gateway.restart()
            await asyncio.gather(*renewals, return_exceptions=True)
            await asyncio.sleep(15)
            assert gateway_ports(r) == expected_ports(100)
            assert all_active(r)

    run_fast_virtual(scenario)


# -- address changes during a burst --------------------------------------------------------------


def test_address_change_in_the_middle_of_a_burst_of_requests() -> None:
    async def scenario() -> None:
        async with rig(gateway=dict(delay=0.01), lifetime=3600) as r:
            burst = asyncio.ensure_future(add_many(r, 400))
            await asyncio.sleep(1.5)  # about a third of them granted
            assert 0 < len(r.gateway.mappings) < 400
            r.gateway.change_external_address("198.51.100.9")
            keys = await burst
            await asyncio.sleep(20)
            assert {str(r.manager.mappings[k].external_address) for k in keys} == {
                "198.51.100.9"}
            assert str(r.manager.status.external_address) == "198.51.100.9"
            assert gateway_ports(r) == expected_ports(400)
            assert all_active(r)
            assert len([e for e in r.log.of(ExternalAddressChanged)
                        if str(e.new) == "198.51.100.9"]) == 1
            # At most: the add, one confirmation after the change, a few lost to the queue,
            # and again those asked for before a repetition of the announcement in its first
            # second (it could be another reset: see test_manager's restart test).
            assert len(r.tap.maps()) <= 2 * 400 + 60

    run_fast_virtual(scenario)


# -- strangers and floods -----------------------------------------------------------------------


def forged_natpmp(address: str, epoch: int = 0) -> bytes:
    return natpmp.ExternalAddressResponse(0, epoch, IPv4Address(address)).encode()


def forged_announce(epoch: int = 0) -> bytes:
    return pcp.Response(pcp.Opcode.ANNOUNCE, 0, 0, epoch).encode()


def test_announcements_from_strangers_are_ignored() -> None:
    """RFC 6886 §3.2.1: an announcement not from the gateway's address and port 5351 (here the
    simulator's port) is discarded: another port on the gateway's address, another loopback
    address with the gateway's port number, or the right source with bytes that are not an
    announcement."""

    async def scenario() -> None:
        async with rig(lifetime=3600) as r:
            await add_many(r, 5)
            await asyncio.sleep(100)
            target = (LOOPBACK, r.announce_port)
            before = len(r.tap.maps())
            # From the gateway's host, another port.
            r.gateway.inject(forged_natpmp("192.0.2.66"), target, from_gateway_socket=False)
            r.gateway.inject(forged_announce(), target, from_gateway_socket=False)
            # From another loopback address, the gateway's port number.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                stranger.bind(("127.0.0.2", r.gateway.address[1]))
                stranger.sendto(forged_natpmp("192.0.2.67"), target)
                stranger.sendto(forged_announce(), target)
                # From the gateway itself, but not an announcement.
                r.gateway.inject(b"\x00\x80\x00", target)  # truncated
                r.gateway.inject(natpmp.MapResponse(6, 0, 100, 20000, 1, 60).encode(), target)
                r.gateway.inject(pcp.Response(pcp.Opcode.ANNOUNCE, 8, 0, 0).encode(), target)
                await asyncio.sleep(30)
            assert [str(e.new) for e in r.log.of(ExternalAddressChanged)] == ["203.0.113.7"]
            assert not r.log.of(GatewayRestarted)
            assert len(r.tap.maps()) == before  # not one request (only the idle probe)
            assert str(r.manager.status.external_address) == "203.0.113.7"
            # The control: the same forgery from the gateway's own socket is believed (until
            # the renewals it triggers hear the real address from the gateway).
            r.gateway.inject(forged_natpmp("192.0.2.66", r.gateway.epoch), target)
            await asyncio.sleep(10)
            assert [str(e.new) for e in r.log.of(ExternalAddressChanged)][1:] == [
                "192.0.2.66", "203.0.113.7"]

    run_fast_virtual(scenario)


def test_a_flood_of_announcements_causes_one_round_of_requests() -> None:
    async def scenario() -> None:
        async with rig(lifetime=3600) as r:
            await add_many(r, 50)
            await asyncio.sleep(100)
            target = (LOOPBACK, r.announce_port)
            restarted_at = now()
            r.gateway.restart()
            for i in range(500):  # the genuine source, the genuine epoch, 500 times
                r.gateway.inject(forged_announce(r.gateway.epoch), target)
                r.gateway.inject(forged_natpmp("203.0.113.7", r.gateway.epoch), target)
                if i % 50 == 0:
                    await asyncio.sleep(0.5)
            await r.gateway.wait_announcements()
            await asyncio.sleep(60)
            # One round, plus those asked before an announcement of the first second that
            # could be another reset; nothing for the later ones, whose epochs say "none".
            assert 50 <= len(r.tap.maps(since=restarted_at)) <= 100
            assert len(r.tap.maps(since=restarted_at + 7)) == 0
            assert len(r.log.of(GatewayRestarted)) == 1
            assert gateway_ports(r) == expected_ports(50)
            assert all_active(r)

    run_fast_virtual(scenario)


# -- the local interface address changing -------------------------------------------------------


def test_a_new_local_address_is_followed_and_every_mapping_recreated_for_it() -> None:
    # What the kernel would pick as the source towards the gateway; the test moves it to
    # 127.0.0.2 as a new DHCP lease would (nothing is sent to find it out).
    source = {"address": IPv4Address("127.0.0.1")}

    async def scenario() -> None:
        async with rig(lifetime=3600, local_address_probe=lambda: source["address"]) as r:
            keys = await add_many(r, 5)
            assert {m.client for m in r.gateway.mappings} == {"127.0.0.1"}
            source["address"] = IPv4Address("127.0.0.2")
            await asyncio.sleep(3600 * 0.7)  # the next renewals look at the route first
            changed = r.log.of(LocalAddressChanged)
            assert [(str(e.old), str(e.new)) for e in changed] == [("127.0.0.1", "127.0.0.2")]
            assert str(r.manager.status.local_address) == "127.0.0.2"
            assert all_active(r)
            ours = {m.internal_port: m for m in r.gateway.mappings if m.client == "127.0.0.2"}
            assert set(ours) == {k.internal_port for k in keys}
            for key in keys:
                view = r.manager.mappings[key]
                assert view.external_port == ours[key.internal_port].external_port
            assert len(r.log.of(MappingRecovered)) == 5

    run_fast_virtual(scenario)


def test_an_explicit_local_address_is_never_changed_behind_the_callers_back() -> None:
    async def scenario() -> None:
        async with rig(lifetime=3600, local_address="127.0.0.1",
                       local_address_probe=lambda: IPv4Address("127.0.0.2")) as r:
            await add_many(r, 2)
            await asyncio.sleep(3600 * 0.7)
            assert r.log.of(LocalAddressChanged) == []
            assert {m.client for m in r.gateway.mappings} == {"127.0.0.1"}

    run_fast_virtual(scenario)
