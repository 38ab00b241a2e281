"""The manager batches its state-file writes (engine.manager.records): a burst of adds costs a
few rewrites of the file, not one each; a grant is on disk within FLUSH_DELAY even if the
process then dies; close() and save_state() write what is pending. Simulated gateway on
loopback, virtual clock (and a forked process for the crash)."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import signal
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from engine.client import PortMapping
from engine.events import MappingRenewed, MappingState
from engine.manager.records import FLUSH_DELAY, RETRY_DELAY, Records
from engine.protocols import Protocol
from engine.statefile import StateFile
from tests.support.manager_rig import rig, run_fast_virtual
from tests.support.records import FullDisk, Unserialisable
from tests.support.virtual_time import now

TCP = Protocol.TCP


def ports(state: StateFile) -> set[int]:
    return {r.internal_port for r in state.load().records}


def test_a_burst_of_adds_costs_a_few_writes_and_each_add_returns_written(
        tmp_path: Path) -> None:
    state = StateFile(tmp_path)

    async def scenario() -> None:
        async with rig(gateway=dict(delay=0.005), lifetime=7200, record=False,
                       state_file=state) as r:
            start = now()
            for first in range(0, 300, 100):
                await asyncio.gather(*(r.manager.add(TCP, 20000 + i)
                                       for i in range(first, first + 100)))
                assert ports(state) == set(range(20000, 20000 + first + 100))
            took = now() - start
            # 300 grants, 5 ms apart at the gateway: one write per FLUSH_DELAY at most
            # (and one at once after a quiet spell), where each grant used to cost one.
            assert r.manager.records.writes <= took / FLUSH_DELAY + 4
            assert r.manager.records.writes < 30

    run_fast_virtual(scenario)


def test_a_renewal_is_on_disk_within_the_flush_delay_without_waiting_for_close(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateFile(tmp_path)
    monkeypatch.setattr("engine.manager.records.REFRESH_AFTER", -1.0)  # every grant writes

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=120), lifetime=7200, state_file=state) as r:
            view = await r.manager.add(TCP, 20000)
            [before] = state.load().records
            [renewed] = await r.log.wait_for(MappingRenewed)
            assert renewed.at == view.renewed_at
            await asyncio.sleep(FLUSH_DELAY)
            [after] = state.load().records  # no close, no save_state: the timer wrote it
            assert after.updated > before.updated
            assert r.manager.records.pending == 0

    run_fast_virtual(scenario)


def test_close_writes_what_is_pending(tmp_path: Path) -> None:
    state = StateFile(tmp_path)

    async def scenario() -> None:
        async with rig(lifetime=7200, state_file=state) as r:
            await asyncio.gather(*(r.manager.add(TCP, 20000 + i) for i in range(3)))
            assert ports(state) == {20000, 20001, 20002}
            r.manager.records.delay = 1e9  # the deletes' drops wait for close() alone
            await r.manager.close()
            assert ports(state) == set()

    run_fast_virtual(scenario)


def test_save_state_writes_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateFile(tmp_path)
    monkeypatch.setattr("engine.manager.records.REFRESH_AFTER", -1.0)

    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=120), lifetime=7200, state_file=state,
                       keep=True) as r:
            await r.manager.add(TCP, 20000)
            [before] = state.load().records
            r.manager.records.delay = 1e9
            await r.log.wait_for(MappingRenewed)
            assert r.manager.records.pending == 1
            assert state.load().records == [before]
            r.manager.save_state()
            assert r.manager.records.pending == 0
            [after] = state.load().records
            assert after.updated > before.updated

    run_fast_virtual(scenario)


def _mapping(port: int) -> PortMapping:
    return PortMapping(IPv4Address("192.0.2.1"), IPv4Address("192.0.2.10"), Protocol.TCP, port,
                       port, IPv4Address("203.0.113.7"), 3600, math.inf, "natpmp", 0)


def _record_then_die(directory: str, wait: float) -> None:
    async def main() -> None:
        records = Records(StateFile(directory))
        records.record(_mapping(1))
        await asyncio.sleep(0.01)  # after a quiet spell: written on the next loop turn
        records.record(_mapping(2))  # right after a write: waits for the delay
        if records.pending != 1:
            os._exit(3)
        await asyncio.sleep(wait)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush: dead

    asyncio.run(main())


@pytest.mark.skipif(sys.platform == "win32", reason="fork and SIGKILL")
def test_a_process_killed_after_a_grant_and_the_flush_delay_left_the_record(
        tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_record_then_die, args=(str(tmp_path), FLUSH_DELAY + 0.2))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL
    assert ports(StateFile(tmp_path)) == {1, 2}


def test_a_failed_write_is_reported_and_retried_and_add_returns_at_once_saying_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The disk is full while mappings are granted: the failure is logged, the records kept
    # and tried again every RETRY_DELAY without another change (a renewal writes only
    # hourly). add() returns as soon as the write failed, with the reason in
    # records.error for the front end to warn: waiting for a retry that may never
    # succeed held `natdeck map --hold` silent for its whole timeout.
    state = FullDisk(tmp_path)
    state.full = True

    async def scenario() -> None:
        async with rig(lifetime=7200, state_file=state, record=False) as r:
            start = now()
            await r.manager.add(TCP, 20000)
            assert now() - start < 2 * FLUSH_DELAY
            assert "No space left on device" in caplog.text
            assert r.manager.records.error == "No space left on device"
            assert r.manager.records.pending == 1
            writes = r.manager.records.writes
            await asyncio.sleep(2 * RETRY_DELAY + 0.5)
            assert r.manager.records.writes == writes + 2  # retried, with no other change
            start = now()  # another add while the disk is still full: tried, said at once
            await r.manager.add(TCP, 20001)
            assert now() - start < 2 * FLUSH_DELAY
            assert ports(state) == set()
            state.full = False
            await asyncio.sleep(RETRY_DELAY + FLUSH_DELAY)
            assert ports(state) == {20000, 20001}
            assert r.manager.records.pending == 0
            assert r.manager.records.error is None
            assert await r.manager.records.written()

    run_fast_virtual(scenario)


def test_a_state_file_that_cannot_be_written_does_not_hold_add_or_remove(
        tmp_path: Path) -> None:
    state = FullDisk(tmp_path)
    state.full = True  # for good (a read-only directory)

    async def scenario() -> None:
        async with rig(lifetime=7200, state_file=state, record=False, timeout=3.0) as r:
            start = now()
            await r.manager.add(TCP, 20000)
            assert now() - start < 2 * FLUSH_DELAY
            assert r.manager.records.pending == 1  # not on disk, still tried
            start = now()
            await r.manager.remove(next(iter(r.manager.mappings)))
            assert now() - start < 2 * FLUSH_DELAY
            assert r.manager.records.pending == 1  # the record's removal, now
            assert ports(state) == set()
            assert r.manager.records.error is not None

    run_fast_virtual(scenario)


def test_a_write_that_fails_with_other_than_oserror_does_not_fail_add_or_close(
        tmp_path: Path) -> None:
    # Records caught only OSError: anything else (a record json cannot write, a file the
    # reader failed on) escaped into add(), which raised while the manager and the gateway
    # both held the mapping, with records.error None; close() raised it too.
    state = Unserialisable(tmp_path)
    state.broken = True

    async def scenario() -> None:
        async with rig(lifetime=7200, state_file=state, record=False) as r:
            view = await r.manager.add(TCP, 20000)
            assert view.state is MappingState.ACTIVE
            assert r.manager.records.error is not None
            assert "not JSON serializable" in r.manager.records.error
            assert r.manager.records.pending == 1  # kept, and tried again
            assert list(r.manager.mappings) == [view.key]
            assert [m.internal_port for m in r.gateway.mappings] == [20000]
            r.manager.save_state()  # fails again: said, not raised
            assert r.manager.records.pending == 1
        # (closing the manager wrote once more, failed, and did not raise)

    run_fast_virtual(scenario)


def test_written_says_false_at_a_failed_write_and_true_once_a_retry_succeeds(
        tmp_path: Path) -> None:
    state = FullDisk(tmp_path)

    async def scenario() -> None:
        records = Records(state)
        assert await records.written()  # nothing pending: at once
        state.full = True
        records.record(_mapping(1))
        assert not await records.written()  # the first write failed: said so
        assert records.error == "No space left on device"
        failed = records.writes
        start = now()
        assert not await records.written()  # asked again: tried at once, failed again
        assert now() - start <= FLUSH_DELAY
        assert records.writes == failed + 1
        await asyncio.sleep(2 * RETRY_DELAY + 1)
        assert records.writes == failed + 3  # and retried on its own
        state.full = False
        await asyncio.sleep(RETRY_DELAY)
        assert ports(state) == {1}
        assert records.error is None
        assert await records.written()
        # A write that fails as the manager closes is not retried: its waiters are let go.
        state.full = True
        records.drop(_mapping(1))
        waiter = asyncio.ensure_future(records.written())
        await asyncio.sleep(0)
        before = records.writes
        records.close()
        assert records.writes == before + 1
        assert not await asyncio.wait_for(waiter, 0.01)  # let go, told it is not written
        assert records.pending == 1
        assert not await asyncio.wait_for(records.written(), 0.01)  # closed: never written
        await asyncio.sleep(2 * RETRY_DELAY)
        assert records.writes == before + 1  # and no retry was left behind

    run_fast_virtual(scenario)
