"""MappingManager hands back what it may hold: a mapping moved to PCP keeps the nonce it was
granted with, a remove that ends without its delete answered leaves the mapping managed, an
add that went out unanswered is taken back at the gateway, a FAILED mapping's expiry is told
after a failed delete, and close() ends the event streams whatever the state file does.
Simulated gateway on loopback, virtual clock."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from engine.codes import PcpResult
from engine.errors import GatewayTimeout
from engine.events import MappingKey, MappingLost, MappingRenewalFailed, MappingState
from engine.manager import closing
from engine.mapping import PortMapping
from engine.protocols import Protocol
from engine.statefile import StateFile
from tests.support.manager_rig import Rig, other_tasks, rig, run_fast_virtual

TCP = Protocol.TCP


def held(r: Rig) -> list[int]:
    """The internal ports the gateway holds mappings for."""
    return [m.internal_port for m in r.gateway.mappings]


def drop_answers(request: bytes, responses: list[bytes]) -> list[bytes]:
    """A tamper hook: the gateway maps, but its answers are lost."""
    return []


# -- defect 1: a PCP mapping that replaced a NAT-PMP one ------------------------------------------


def test_a_mapping_moved_from_natpmp_to_pcp_is_renewed_recorded_and_deleted(
        tmp_path: Path) -> None:
    state = StateFile(tmp_path)

    async def scenario() -> None:
        async with rig(gateway=dict(speak_pcp=False, max_lifetime=600), lifetime=600,
                       state_file=state) as r:
            view = await r.manager.add(TCP, 20000, external_port=40000)
            assert (view.via, view.nonce) == ("natpmp", None)
            # The gateway now speaks only PCP, and restarts: the mapping is asked for again.
            r.gateway.configure(speak_pcp=True, speak_natpmp=False)
            r.gateway.restart()
            await asyncio.sleep(10)
            if view.state is MappingState.FAILED:  # (NAT-PMP refused: the user renews)
                await r.manager.renew(view.key)
            assert view.via == "pcp"
            assert view.state is MappingState.ACTIVE
            [at_gateway] = r.gateway.mappings
            mapping = r.manager.table.entries[view.key].mapping
            assert mapping is not None
            assert mapping.nonce == view.nonce == at_gateway.nonce is not None
            await asyncio.sleep(400)  # past the renewal: accepted (same nonce)
            assert view.state is MappingState.ACTIVE
            assert r.log.of(MappingRenewalFailed) == []
            # The record says PCP and its nonce: what `natdeck unmap` needs.
            await r.manager.records.written()
            [record] = state.load().records
            assert (record.via, record.nonce) == ("pcp", at_gateway.nonce)
            await r.manager.remove(view.key)
            assert held(r) == []

    run_fast_virtual(scenario)


# -- defect 2: an add that went out unanswered ----------------------------------------------------


def test_a_cancelled_add_is_taken_back_at_the_gateway() -> None:
    async def scenario() -> None:
        async with rig(gateway=dict(delay=0.5), lifetime=7200, probe_on_start=False) as r:
            with pytest.raises(TimeoutError):  # the caller gives up before the answer
                await asyncio.wait_for(r.manager.add(TCP, 20000), 0.3)
            assert dict(r.manager.mappings) == {}
            await asyncio.sleep(2)
            assert held(r) == []  # the same request, lifetime 0, took it back
            sent = [a for a in r.tap.maps(20000) if a.pcp_map is not None]
            first, again = (a.pcp_map for a in sent)  # the add, then its delete
            assert first is not None
            assert again is not None
            assert again.lifetime == 0
            assert again.data.nonce == first.data.nonce

    run_fast_virtual(scenario)


def test_close_waits_for_the_take_back_of_a_cancelled_add_and_leaves_no_task() -> None:
    async def scenario() -> None:
        async with rig(lifetime=7200, probe_on_start=False) as r:
            r.gateway.tamper = drop_answers  # the gateway maps; the caller gives up
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(r.manager.add(TCP, 20000), 0.3)
            r.gateway.tamper = None
            assert r.manager.table.taking_back.tasks  # its delete is out
            await r.manager.close()  # at once
            assert held(r) == []
            assert r.manager.table.taking_back.tasks == {}
            await asyncio.sleep(0)
            assert not any("take_back" in repr(t.get_coro()) for t in other_tasks())

    run_fast_virtual(scenario)


def test_an_add_whose_answers_are_lost_is_taken_back() -> None:
    async def scenario() -> None:
        async with rig(lifetime=7200, probe_on_start=False, via="pcp", timeout=5) as r:
            r.gateway.tamper = drop_answers
            with pytest.raises(GatewayTimeout):
                await r.manager.add(TCP, 20000)
            r.gateway.tamper = None
            assert dict(r.manager.mappings) == {}
        assert held(r) == []  # after close() at the latest

    run_fast_virtual(scenario)


def test_the_take_back_of_an_unanswered_natpmp_add_spares_the_next_add() -> None:
    """NAT-PMP names a mapping by its ports alone: the delete goes out before the next add
    of the key, not after it (it would delete the new mapping)."""
    async def scenario() -> None:
        async with rig(lifetime=7200, probe_on_start=False, via="natpmp", timeout=2) as r:
            r.gateway.tamper = drop_answers
            with pytest.raises(GatewayTimeout):
                await r.manager.add(TCP, 20000)
            r.gateway.tamper = None
            view = await r.manager.add(TCP, 20000)
            await asyncio.sleep(5)
            assert view.state is MappingState.ACTIVE
            assert held(r) == [20000]
        assert held(r) == []

    run_fast_virtual(scenario)


def test_an_add_refused_by_the_gateway_sends_no_delete() -> None:
    async def scenario() -> None:
        async with rig(gateway=dict(force_pcp_result=int(PcpResult.NOT_AUTHORIZED)),
                       probe_on_start=False, via="pcp") as r:
            with pytest.raises(Exception, match="NOT_AUTHORIZED"):
                await r.manager.add(TCP, 20000)
            await asyncio.sleep(2)
            assert len(r.tap.maps(20000)) == 1
            assert r.manager.table.taking_back.tasks == {}

    run_fast_virtual(scenario)


# -- defect 3: a remove that ends without its delete answered -------------------------------------


def test_a_cancelled_remove_hands_the_mapping_back() -> None:
    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=600), lifetime=600) as r:
            view = await r.manager.add(TCP, 20000, external_port=40000)
            r.gateway.configure(silent=True)
            removing = asyncio.create_task(r.manager.remove(view.key))
            await asyncio.sleep(1.0)
            assert view.state is MappingState.REMOVING
            removing.cancel()
            await asyncio.gather(removing, return_exceptions=True)
            r.gateway.configure(silent=False)
            assert view.state is MappingState.ACTIVE
            assert r.manager.table.due.at(r.manager.table.entries[view.key]) is not None
            await asyncio.sleep(1200)  # renewed meanwhile
            assert view.state is MappingState.ACTIVE
            assert held(r) == [20000]
            await r.manager.remove(view.key)
            assert held(r) == []
            assert view.key not in r.manager.mappings

    run_fast_virtual(scenario)


def test_a_remove_that_fails_with_a_bug_hands_the_mapping_back(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(*_: object) -> None:
        raise KeyError("NewInternalClient")  # as a gateway description parser once did

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=600), lifetime=600) as r:
            view = await r.manager.add(TCP, 20000)
            with monkeypatch.context() as patch:
                patch.setattr("engine.manager.manager.delete_mapping", broken)
                with pytest.raises(KeyError):
                    await r.manager.remove(view.key)
            assert view.state is MappingState.ACTIVE
            assert view.reason is not None
            assert "NewInternalClient" in view.reason
            await r.manager.remove(view.key)
            assert held(r) == []

    with caplog.at_level(logging.ERROR, logger="engine.manager"):
        run_fast_virtual(scenario)
    assert "internal error while deleting" in caplog.text


# -- defect 4: a FAILED mapping whose delete fails ------------------------------------------------


def test_a_failed_mapping_whose_delete_fails_still_reports_its_expiry() -> None:
    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=600), lifetime=600, timeout=3,
                       probe_on_start=False, idle_probe_interval=None) as r:
            view = await r.manager.add(TCP, 20000)
            r.gateway.configure(force_pcp_result=int(PcpResult.NOT_AUTHORIZED))
            await asyncio.sleep(400)  # the renewal is refused for long: FAILED
            assert view.state is MappingState.FAILED
            assert view.expires_at is not None
            r.gateway.configure(silent=True)
            with pytest.raises(GatewayTimeout):
                await r.manager.remove(view.key)
            r.gateway.configure(silent=False)
            assert view.state is MappingState.FAILED
            await asyncio.sleep(600)  # past its expiry
            assert len(r.log.of(MappingLost, view.key)) == 1
            assert view.expires_at is None

    run_fast_virtual(scenario)


# -- defect 5: close() when the state file cannot be written --------------------------------------


def test_close_ends_the_event_streams_when_the_state_file_fails(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def failing_close() -> None:
        raise OSError("disk full")

    async def scenario() -> None:
        # (The rig's exit waits for its event log's stream to end: it hangs without the fix.)
        async with rig(state_file=StateFile(tmp_path)) as r:
            await r.manager.add(TCP, 20000)
            r.manager.records.close = failing_close  # type: ignore[method-assign]
        assert r.manager._hub.closed
        assert held(r) == []

    with caplog.at_level(logging.ERROR, logger="engine.manager"):
        run_fast_virtual(scenario)
    assert "could not write the state file on close" in caplog.text


def test_take_back_logs_a_gateway_error_and_never_raises_it(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def silent(*_: object, **__: object) -> PortMapping:
        raise GatewayTimeout("127.0.0.1", "PCP delete tcp 20000", 3, 9.0, "pcp")

    async def scenario() -> None:
        async with rig(probe_on_start=False) as r:
            monkeypatch.setattr(closing, "delete_unrecorded", silent)
            await closing.take_back(r.manager.client, MappingKey(int(TCP), 20000),
                                    {"via": "pcp"}, 1.0)

    with caplog.at_level(logging.INFO, logger="engine.manager"):
        run_fast_virtual(scenario)
    assert "could not take back the unanswered add of tcp/20000" in caplog.text


def test_an_unanswered_add_whose_delete_goes_unanswered_too_is_reported_left() -> None:
    """A silent gateway: the add's take-back is not answered either, so the manager cannot
    say the mapping is gone: close() counts it among what is left (the TUI says so on exit)."""
    async def scenario() -> None:
        async with rig(lifetime=7200, probe_on_start=False, via="pcp", timeout=2) as r:
            r.gateway.tamper = drop_answers
            with pytest.raises(GatewayTimeout):
                await r.manager.add(TCP, 20000)
            closed = await r.manager.close(deadline=3.0)
            assert closed.left == (MappingKey(int(TCP), 20000),)
            assert closed.why is not None
            assert "unanswered" in closed.why

    run_fast_virtual(scenario)


def test_an_add_still_unanswered_at_the_close_deadline_is_taken_back_or_reported_left() -> None:
    """close() waits for the adds in flight until its deadline; one still unanswered then
    is cancelled, which takes it back; with no time left for that delete, it is counted
    among what is left rather than forgotten."""
    async def scenario() -> None:
        async with rig(gateway={"delay": 2.0}, lifetime=7200, probe_on_start=False,
                       via="pcp", timeout=30) as r:
            adding = asyncio.ensure_future(r.manager.add(TCP, 20000))
            await asyncio.sleep(0.1)  # the request is out, its answer 2 s away
            closed = await r.manager.close(deadline=1.0)
            assert closed.left == (MappingKey(int(TCP), 20000),)
            with pytest.raises(asyncio.CancelledError):
                await adding

    run_fast_virtual(scenario)
