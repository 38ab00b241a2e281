"""MappingManager against the simulated gateway, on the virtual clock (ISSUE 3).

Every test runs the manager and a :class:`SimulatedGateway` on one
:class:`~tests.support.virtual_time.VirtualTimeLoop`: real loopback sockets, a
clock that jumps to the next timer, so hours of renewals take a moment. What a
test checks is what reached the gateway (a tap on its arrivals), what it holds
(``gw.mappings``) and what the manager said (its events and views).
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from engine.codes import PcpResult
from engine.errors import GatewayTimeout, ResultCodeError
from engine.events import (
    ExternalAddressChanged,
    GatewayReachable,
    GatewayRestarted,
    GatewayUnreachable,
    MappingAdded,
    MappingFailed,
    MappingKey,
    MappingLost,
    MappingRecovered,
    MappingRemoved,
    MappingRenewalFailed,
    MappingRenewed,
    MappingState,
)
from engine.protocols import Protocol
from engine.wire import pcp
from tests.support.manager_rig import Rig, open_fds, other_tasks, rig, run_fast_virtual
from tests.support.virtual_time import now

TCP = Protocol.TCP
NEW_ADDRESS = "198.51.100.9"




async def add_many(r: Rig, count: int, *, first_port: int = 20000,
                   external_base: int | None = 40000, **options: object) -> list[MappingKey]:
    """Add ``count`` TCP mappings at once; external ports differ from internal ones so that
    keeping "the same external port" is a real check."""
    views = await asyncio.gather(*(
        r.manager.add(TCP, first_port + i,
                      external_port=None if external_base is None else external_base + i,
                      **options)  # type: ignore[arg-type]
        for i in range(count)))
    return [view.key for view in views]


def gateway_ports(r: Rig) -> dict[int, int]:
    """internal port -> external port, as the gateway holds them now."""
    return {m.internal_port: m.external_port for m in r.gateway.mappings}


def manager_ports(r: Rig) -> dict[int, int | None]:
    return {key.internal_port: view.external_port for key, view in r.manager.mappings.items()}


def intervals(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# -- renewal timing ----------------------------------------------------------------------------


def test_pcp_renews_between_half_and_five_eighths_of_the_granted_lifetime() -> None:
    """RFC 6887 §11.2.1: a uniform random time in 1/2..5/8 of the lifetime the gateway
    granted (120 s here, although 7200 s were asked for), and the renewal asks for 7200 again."""

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=120), lifetime=7200) as r:
            keys = await add_many(r, 20)
            for key in keys:
                view = r.manager.mappings[key]
                assert (view.via, view.lifetime, view.requested_lifetime) == ("pcp", 120, 7200)
                assert view.next_renewal_at is not None
                assert view.granted_at is not None
                assert 60 <= view.next_renewal_at - view.granted_at <= 75
            await asyncio.sleep(3600)
            gaps: list[float] = []
            for key in keys:
                arrivals = r.tap.maps(key.internal_port)
                assert all(a.pcp_map is not None and a.pcp_map.lifetime == 7200
                           for a in arrivals)
                gaps += intervals([a.at for a in arrivals])
                assert r.manager.mappings[key].state is MappingState.ACTIVE
            assert len(gaps) >= 20 * 3600 // 75
            assert all(60 - 1e-6 <= gap <= 75 + 1e-6 for gap in gaps), (min(gaps), max(gaps))
            # Random over the whole window, not pinned to one end of it.
            assert min(gaps) < 61
            assert max(gaps) > 74
            assert len(r.log.of(MappingRenewed)) == len(gaps)
            assert not r.log.of(MappingLost)
            assert not r.log.of(MappingRenewalFailed)
            assert len(r.gateway.mappings) == 20

    run_fast_virtual(scenario)


def test_natpmp_renews_at_half_the_granted_lifetime_with_a_little_early_jitter() -> None:
    """RFC 6886 §3.3: halfway to expiry; pulled up to 5 % earlier, never later."""

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=120), lifetime=7200, via="natpmp") as r:
            keys = await add_many(r, 10)
            assert {r.manager.mappings[k].via for k in keys} == {"natpmp"}
            assert {r.manager.mappings[k].lifetime for k in keys} == {120}
            await asyncio.sleep(1800)
            gaps: list[float] = []
            for key in keys:
                arrivals = r.tap.maps(key.internal_port)
                assert all(a.natpmp_map is not None and a.natpmp_map.lifetime == 7200
                           for a in arrivals)
                gaps += intervals([a.at for a in arrivals])
            assert len(gaps) >= 10 * 1800 // 60
            assert all(57 - 1e-6 <= gap <= 60 + 1e-6 for gap in gaps), (min(gaps), max(gaps))
            assert min(gaps) < 57.5  # the jitter is really there
            assert not r.log.of(MappingLost)

    run_fast_virtual(scenario)


# -- gateway restart ---------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["pcp", "natpmp"])
def test_restart_noticed_from_the_epoch_of_the_next_answer(via: str) -> None:
    """No announcement reaches the manager: the next renewal's answer carries an epoch that
    went back (RFC 6887 §8.5, RFC 6886 §3.6), and every mapping comes back on its port."""

    async def scenario() -> None:
        # No announcement and no probe: only the answers' epochs can tell.
        async with rig(gateway=dict(max_lifetime=300), announce=False, lifetime=300,
                       via=via, idle_probe_interval=None) as r:
            await add_many(r, 10)
            before = gateway_ports(r)
            assert before == {20000 + i: 40000 + i for i in range(10)}
            await asyncio.sleep(100)
            restarted_at = now()
            r.gateway.restart()
            assert r.gateway.mappings == ()
            [restart] = await r.log.wait_for(GatewayRestarted, timeout=200)
            assert restart.protocol == via
            # Noticed at the first renewal after the reboot, within one renewal interval.
            assert restarted_at < restart.at <= restarted_at + 300 * 5 / 8
            await asyncio.sleep(10)
            assert gateway_ports(r) == before
            assert manager_ports(r) == before
            assert all(v.state is MappingState.ACTIVE for v in r.manager.mappings.values())
            assert len(r.log.of(GatewayRestarted)) == 1
            assert r.manager.status.restarts == 1
            assert all((v.granted_at or 0) >= restart.at for v in r.manager.mappings.values())
            recovered = r.log.of(MappingRecovered)
            assert all(e.same_port for e in recovered)
            # The mapping whose renewal noticed it was re-granted by that renewal itself.
            assert len(recovered) + 1 >= 10 - 1

    run_fast_virtual(scenario)


@pytest.mark.parametrize("mode", ["rfc", "miniupnpd"])
@pytest.mark.parametrize("via", ["pcp", "natpmp"])
def test_restart_noticed_from_the_announcement(mode: str, via: str) -> None:
    """The gateway announces its reboot (ten times in RFC mode, once like miniupnpd): the
    manager says GatewayRestarted at once and re-creates every mapping on its port after the
    RFC's random 0-5 s (RFC 6887 §14.1.3), one request each however many announcements."""

    async def scenario() -> None:
        async with rig(gateway=dict(announce_mode=mode), lifetime=7200, via=via) as r:
            await add_many(r, 10)
            before = gateway_ports(r)
            await asyncio.sleep(30)
            restarted_at = now()
            r.gateway.restart()
            [restart] = await r.log.wait_for(GatewayRestarted, timeout=1)
            assert restart.at - restarted_at < 0.01
            await r.log.wait_for(MappingRecovered, count=10, timeout=6)
            assert gateway_ports(r) == before
            assert manager_ports(r) == before
            recreated = [a.at - restarted_at for a in r.tap.maps(since=restarted_at)]
            assert all(0 <= t <= 6 for t in recreated), recreated
            await r.gateway.wait_announcements()
            await asyncio.sleep(60)
            # Ten repetitions over two minutes. Those of the first second cannot be told from
            # another restart (its epoch would be 0 too): a mapping asked for before one of
            # them is asked again. Later ones have epochs that say "no reset since": nothing.
            assert 0 <= len(r.tap.maps(since=restarted_at)) - 10 <= (
                10 if mode == "rfc" else 0)
            assert len(r.tap.maps(since=restarted_at + 7)) == 0
            assert len(r.log.of(GatewayRestarted)) == 1
            assert all(v.state is MappingState.ACTIVE for v in r.manager.mappings.values())

    run_fast_virtual(scenario)


# -- external address change -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["rfc", "miniupnpd"])
def test_address_change_announced_updates_every_mapping(mode: str) -> None:
    """The NAT-PMP announcement carries the new address: status and every mapping show it
    within a second. The PCP ANNOUNCE (epoch reset, RFC 6887 §8.5) brings one renewal per
    mapping, each after its own random 0-5 s, not one per announcement."""

    async def scenario() -> None:
        async with rig(gateway=dict(announce_mode=mode), lifetime=7200) as r:
            keys = await add_many(r, 20)
            before = gateway_ports(r)
            await asyncio.sleep(30)
            changed_at = now()
            r.gateway.change_external_address(NEW_ADDRESS)
            await asyncio.sleep(1)
            [change] = [e for e in r.log.of(ExternalAddressChanged) if e.at >= changed_at]
            assert (str(change.old), str(change.new), change.source) == (
                "203.0.113.7", NEW_ADDRESS, "announce")
            assert str(r.manager.status.external_address) == NEW_ADDRESS
            assert {str(r.manager.mappings[k].external_address) for k in keys} == {NEW_ADDRESS}
            await r.gateway.wait_announcements()
            await asyncio.sleep(60)
            renewals = [a.at - changed_at for a in r.tap.maps(since=changed_at)]
            # One round, however many announcements (but see the restart test: a repetition
            # in the first second may be another reset, and re-asks what was asked before it).
            assert 20 <= len(renewals) <= (40 if mode == "rfc" else 20), renewals
            assert all(0 <= t <= 6 for t in renewals)
            assert {a.internal_port for a in r.tap.maps(since=changed_at)} == set(before)
            assert len({round(t, 6) for t in renewals}) > 10  # spread out, not a herd
            assert gateway_ports(r) == before
            assert {str(v.external_address) for v in r.manager.mappings.values()} == {
                NEW_ADDRESS}
            assert all(v.state is MappingState.ACTIVE for v in r.manager.mappings.values())

    run_fast_virtual(scenario)


def test_natpmp_mappings_follow_an_address_change() -> None:
    async def scenario() -> None:
        async with rig(lifetime=7200, via="natpmp") as r:
            keys = await add_many(r, 5)
            before = gateway_ports(r)
            r.gateway.change_external_address(NEW_ADDRESS)
            await asyncio.sleep(1)
            assert {str(r.manager.mappings[k].external_address) for k in keys} == {NEW_ADDRESS}
            await r.gateway.wait_announcements()
            assert gateway_ports(r) == before
            assert all(v.state is MappingState.ACTIVE for v in r.manager.mappings.values())
            assert [str(e.new) for e in r.log.of(ExternalAddressChanged)] == [
                "203.0.113.7", NEW_ADDRESS]

    run_fast_virtual(scenario)


# -- a gateway that goes silent and comes back ----------------------------------------------------


def test_silent_gateway_renewals_retried_then_lost_then_recovered() -> None:
    """RFC 6887 §11.2.1: renewals at 1/2-5/8, then 3/4-3/4+1/16, 7/8-7/8+1/32 ... of the
    lifetime, never less than 4 s apart; at expiry the mapping is LOST. When the gateway
    answers again it is recovered on the same external port."""

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=120), lifetime=120) as r:
            [key] = await add_many(r, 1)
            granted = r.manager.mappings[key].granted_at
            assert granted is not None
            r.gateway.configure(silent=True)
            [lost] = await r.log.wait_for(MappingLost, timeout=200)
            assert lost.at == pytest.approx(granted + 120, abs=0.01)
            [unreachable] = r.log.of(GatewayUnreachable)
            assert unreachable.at < lost.at
            tries = [(a.at - granted) / 120
                     for a in r.tap.maps(key.internal_port, since=granted + 1, until=lost.at)
                     if a.at < lost.at]
            assert tries, "no renewal was tried"
            assert 1 / 2 <= tries[0] <= 5 / 8
            assert any(3 / 4 <= t <= 3 / 4 + 1 / 16 for t in tries), tries
            assert any(7 / 8 <= t <= 7 / 8 + 1 / 32 for t in tries), tries
            assert all(gap * 120 >= 4 - 1e-6 for gap in intervals(tries)), tries
            assert all(t < 1 for t in tries)
            assert len(r.log.of(MappingRenewalFailed)) >= 3
            # Lost, the manager keeps asking, with a backoff, while the gateway is silent.
            await asyncio.sleep(600)
            asked = [a.at for a in r.tap.maps(key.internal_port, since=lost.at)]
            # PCP retransmissions within each try (RFC 6887 §8.1.1), tries backing off to
            # a minute apart: a lost mapping costs a request every ten seconds or so, no more.
            assert 10 <= len(asked) <= 60
            assert max(intervals(asked)) >= 45
            assert r.manager.mappings[key].state is MappingState.LOST
            assert r.gateway.mappings == ()
            back_at = now()
            r.gateway.configure(silent=False)
            [recovered] = await r.log.wait_for(MappingRecovered, timeout=70)
            assert recovered.same_port
            assert recovered.at - back_at <= 61
            [reachable] = [e for e in r.log.of(GatewayReachable) if e.at >= back_at]
            assert reachable.at <= recovered.at
            assert gateway_ports(r) == {20000: 40000}
            assert r.manager.mappings[key].state is MappingState.ACTIVE
            assert r.manager.mappings[key].external_port == 40000
            # And it is renewed as usual again.
            await r.log.wait_for(MappingRenewed, lambda e: e.at > recovered.at, timeout=80)

    run_fast_virtual(scenario)


# -- leaving -------------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["pcp", "natpmp"])
def test_leaving_deletes_every_mapping(via: str) -> None:
    async def scenario() -> None:
        async with rig(via=via) as r:
            await add_many(r, 8)
            assert len(r.gateway.mappings) == 8
            gateway, log = r.gateway, r.log
        # The rig's gateway is closed now; what it held is still readable from its core.
        await log.finished()
        assert gateway.core.mappings(now()) == ()
        removed = log.of(MappingRemoved)
        assert len(removed) == 8
        assert all(e.deleted_at_gateway for e in removed)

    run_fast_virtual(scenario)


def test_keep_leaves_the_mappings_at_the_gateway() -> None:
    async def scenario() -> None:
        async with rig(keep=True) as r:
            await add_many(r, 8)
            gateway = r.gateway
        assert len(gateway.core.mappings(now())) == 8

    run_fast_virtual(scenario)


def test_no_task_or_socket_left_after_1000_add_remove_cycles() -> None:
    async def scenario() -> None:
        fds, tasks = open_fds(), other_tasks()
        async with rig() as r:
            await r.manager.add(TCP, 9000)
            settled_tasks = len(other_tasks())
            settled_fds = open_fds()
            for i in range(1000):
                view = await r.manager.add(TCP, 10000 + i % 7, external_port=50000 + i % 13)
                if i % 100 == 0:
                    await asyncio.sleep(90)  # let the odd renewal happen in between
                await r.manager.remove(view.key)
            assert len(other_tasks()) <= settled_tasks
            # At most: the start's probe may still have had its UPnP SSDP socket open then.
            assert open_fds() <= settled_fds
            assert list(r.manager.mappings) == [MappingKey(TCP, 9000)]
            assert gateway_ports(r) == {9000: 9000}
        await asyncio.sleep(0)
        assert other_tasks() == tasks
        assert open_fds() == fds

    run_fast_virtual(scenario)


# -- errors --------------------------------------------------------------------------------------


def test_short_lifetime_error_on_renewal_is_retried_after_the_error_lifetime() -> None:
    """RFC 6887 §7.4/§15: NO_RESOURCES is a short-lifetime error; its Lifetime field says when
    to try again (30 s here)."""

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=600, error_lifetime=30), lifetime=600) as r:
            [key] = await add_many(r, 1)
            view = r.manager.mappings[key]
            assert view.next_renewal_at is not None
            await asyncio.sleep(view.next_renewal_at - now() - 1)
            r.gateway.configure(force_pcp_result=PcpResult.NO_RESOURCES)
            [failed] = await r.log.wait_for(MappingRenewalFailed, timeout=5)
            assert isinstance(failed.error, ResultCodeError)
            assert failed.error.code == PcpResult.NO_RESOURCES
            assert failed.retry_at == pytest.approx(failed.at + 30)
            assert r.manager.mappings[key].state is MappingState.RENEWING
            await r.log.wait_for(MappingRenewalFailed, count=2, timeout=31)
            r.gateway.configure(force_pcp_result=None)
            renewed = await r.log.wait_for(MappingRenewed, timeout=31)
            tries = [a.at for a in r.tap.maps(key.internal_port, since=failed.at - 1)]
            assert intervals(tries) == pytest.approx([30, 30])
            assert renewed[0].at == pytest.approx(tries[-1])
            assert r.manager.mappings[key].state is MappingState.ACTIVE
            assert gateway_ports(r) == {20000: 40000}

    run_fast_virtual(scenario)


def test_no_resources_on_renewal_keeps_the_mapping_and_its_error_lifetime_past_expiry() -> None:
    """RFC 6887 §15: after a short-lifetime error the same request waits out the error's
    lifetime; a renewal refused NO_RESOURCES leaves the mapping as it was until its own
    lifetime ends. Here the error (100 s) outlasts the mapping (120 s, renewal at ~60-75 s):
    expiry says the mapping is lost, but the next request still waits for the error to
    end (it went out at expiry, 45-60 s early). Bounded: one request per error lifetime, on
    the virtual clock; and leaving, with the gateway still refusing everything, is at once."""

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=120, error_lifetime=100), lifetime=120) as r:
            [key] = await add_many(r, 1)
            view = r.manager.mappings[key]
            assert view.expires_at is not None
            expires = view.expires_at
            r.gateway.configure(force_pcp_result=PcpResult.NO_RESOURCES)
            [failed] = await r.log.wait_for(MappingRenewalFailed, timeout=120)
            assert failed.retry_at is not None
            assert failed.retry_at == pytest.approx(failed.at + 100)
            assert failed.retry_at > expires
            await asyncio.sleep(expires - now() - 0.5)
            # Kept as it was until its lifetime ends: renewing, not lost, still held.
            assert view.state is MappingState.RENEWING
            assert not r.log.of(MappingLost)
            assert gateway_ports(r) == {20000: 40000}
            [lost] = await r.log.wait_for(MappingLost, timeout=5)
            assert lost.at == pytest.approx(expires)
            assert r.manager.mappings[key].state is MappingState.LOST
            assert view.next_renewal_at == pytest.approx(failed.at + 100)
            await asyncio.sleep(1000)
            tries = [a.at for a in r.tap.maps(key.internal_port, since=failed.at - 1)]
            assert all(gap >= 100 - 1e-6 for gap in intervals(tries)), intervals(tries)
            assert len(tries) == 1 + int((now() - failed.at) // 100)   # one per error lifetime
            # Leaving: the delete is refused too (miniupnpd's answer to a missing mapping:
            # done), and nothing else is asked.
            before, left_at = r.tap.count, now()
            closed = await asyncio.wait_for(r.manager.close(), 10)
            assert now() - left_at < 1
            assert r.tap.count - before == 1
            assert closed.deleted == 1

    run_fast_virtual(scenario)


def test_long_lifetime_error_on_renewal_leaves_the_mapping_failed_until_a_restart() -> None:
    """NOT_AUTHORIZED is a long-lifetime error: not retried, not even when the mapping
    expires, until something changes; a gateway restart is such a change."""

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=600), lifetime=600) as r:
            [key] = await add_many(r, 1)
            view = r.manager.mappings[key]
            assert view.next_renewal_at is not None
            await asyncio.sleep(view.next_renewal_at - now() - 1)
            r.gateway.configure(force_pcp_result=PcpResult.NOT_AUTHORIZED)
            [failed] = await r.log.wait_for(MappingRenewalFailed, timeout=5)
            assert failed.retry_at is None
            assert view.state is MappingState.FAILED
            assert view.reason is not None
            assert "NOT_AUTHORIZED" in view.reason
            await asyncio.sleep(2 * 3600)  # well past the expiry
            assert len(r.tap.maps(key.internal_port, since=failed.at + 1)) == 0
            assert view.state is MappingState.FAILED
            r.gateway.configure(force_pcp_result=None)
            restarted_at = now()
            r.gateway.restart()
            [recovered] = await r.log.wait_for(MappingRecovered, timeout=6)
            assert recovered.at - restarted_at <= 5
            assert recovered.same_port
            assert r.manager.mappings[key].state is MappingState.ACTIVE
            assert gateway_ports(r) == {20000: 40000}

    run_fast_virtual(scenario)


def test_failed_add_raises_emits_mapping_failed_and_keeps_nothing() -> None:
    async def scenario() -> None:
        async with rig(gateway=dict(force_pcp_result=PcpResult.NOT_AUTHORIZED)) as r:
            with pytest.raises(ResultCodeError) as refused:
                await r.manager.add(TCP, 8080)
            assert refused.value.code == PcpResult.NOT_AUTHORIZED
            [failed] = await r.log.wait_for(MappingFailed, timeout=0.1)
            assert failed.key == MappingKey(TCP, 8080)
            assert failed.error is refused.value
            assert dict(r.manager.mappings) == {}
            r.gateway.configure(force_pcp_result=None, silent=True)
            with pytest.raises(GatewayTimeout):
                await r.manager.add(TCP, 8081, timeout=20)
            await r.log.wait_for(MappingFailed, count=2, timeout=0.1)
            assert dict(r.manager.mappings) == {}
            assert not r.log.of(MappingAdded)
            # The same key can be added once the gateway agrees.
            r.gateway.configure(silent=False)
            await r.manager.add(TCP, 8080)
            assert gateway_ports(r) == {8080: 8080}

    run_fast_virtual(scenario)


def test_failed_remove_raises_and_keeps_the_mapping_managed() -> None:
    """"Try drop": a delete that fails leaves the mapping managed (and renewed)."""

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=120), lifetime=120, timeout=10) as r:
            [key] = await add_many(r, 1)
            r.gateway.configure(silent=True)
            with pytest.raises(GatewayTimeout):
                await r.manager.remove(key)
            assert r.manager.mappings[key].state is MappingState.ACTIVE
            r.gateway.configure(silent=False, force_pcp_result=PcpResult.NOT_AUTHORIZED)
            with pytest.raises(ResultCodeError):
                await r.manager.remove(key)
            assert key in r.manager.mappings
            assert not r.log.of(MappingRemoved)
            r.gateway.configure(force_pcp_result=None)
            await r.log.wait_for(MappingRenewed, timeout=120)
            assert gateway_ports(r) == {20000: 40000}
            await r.manager.remove(key)
            assert key not in r.manager.mappings
            assert r.gateway.mappings == ()
            [removed] = await r.log.wait_for(MappingRemoved, timeout=0.1)
            assert removed.deleted_at_gateway

    run_fast_virtual(scenario)


def test_granted_request_is_read_back_through_the_manager_api() -> None:
    """renew() on demand and the public view agree with the gateway's table."""

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=120)) as r:
            [key] = await add_many(r, 1)
            first = r.manager.mappings[key].granted_at
            assert first is not None
            await asyncio.sleep(10)
            view = await r.manager.renew(key)
            assert view.granted_at == pytest.approx(first + 10)
            assert view.renewals == 1
            [held] = r.gateway.mappings
            assert held.expires_at == pytest.approx(view.expires_at)
            request = r.tap.maps(key.internal_port)[-1].pcp_map
            assert request is not None
            assert isinstance(request.data, pcp.MapData)
            assert request.data.external_port == 40000  # asks for the port it holds

    run_fast_virtual(scenario)
