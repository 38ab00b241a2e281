"""No ``natdeck map`` leaves a mapping ``natdeck unmap`` cannot delete, and no ``unmap``
deletes another mapping than the one its record names (review of the CLI, round 2).

- an unanswered (late, or interrupted) one-shot map is taken back, as ``map --hold``'s
  manager does it: the same request with lifetime 0 and its nonce;
- a map whose record cannot be written is deleted again (exit 1);
- a record made from another local address is neither overwritten nor used;
- a miniupnpd-like gateway's NO_RESOURCES to the delete of a mapping it lost is "deleted".
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.codes import PcpResult
from engine.statefile import StateFile
from tests.support.loopback import REPO_ROOT, python_env, until
from tests.support.records import FullDisk

from .conftest import Sim

# -- defect 1: an unanswered map is taken back ------------------------------------------------


async def test_a_map_answered_too_late_is_taken_back(make_sim: Any, run: Any,
                                                     state_dir: Path) -> None:
    # The gateway makes the mapping after --timeout: before, it stayed (PCP: under a nonce
    # nobody kept, so 'unmap' got NOT_AUTHORIZED for its whole lifetime).
    sim = await make_sim(delay=0.6)
    result = await run("map", "tcp", "8080", "--via", "pcp", "--timeout", "0.3", *sim.target)
    assert result.code == 3
    [line] = result.err_lines  # still one line, with what became of the mapping
    assert "no answer" in line
    assert "natdeck asked to delete it (the same request with lifetime 0 and its nonce)" in line
    # The delete went out after the map, so the gateway (one request at a time) removes
    # the mapping once it gets to it, answered by then or not.
    await until(lambda: sim.gateway.counters.received >= 2 and sim.mapped() == {}, 5.0,
                what="the delete")
    assert StateFile(state_dir).load().records == []


async def test_a_silent_renewal_keeps_the_recorded_mapping(sim: Sim, run: Any,
                                                           state_dir: Path) -> None:
    # The record names the mapping (nonce, external port): a renewal nobody answered is not
    # taken back, lest it delete the mapping the user had.
    assert (await run("map", "tcp", "8080", "--via", "pcp", *sim.target)).code == 0
    sim.gateway.configure(silent=True)
    result = await run("map", "tcp", "8080", "--via", "pcp", "--timeout", "0.3", *sim.target)
    assert result.code == 3
    assert "asked to delete" not in result.err
    assert sim.gateway.counters.received == 2  # the map, the renewal; no delete
    assert (6, 8080) in sim.mapped()
    assert StateFile(state_dir).find("127.0.0.1", sim.port, 6, 8080)[0] is not None


async def test_a_cancelled_map_is_taken_back(make_sim: Any, run: Any,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    sim = await make_sim(delay=0.3)
    task = asyncio.ensure_future(run("map", "tcp", "8080", "--via", "pcp", *sim.target))
    await until(lambda: sim.gateway.counters.received >= 1, 5.0, what="the map")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sim.mapped() == {}  # the delete was answered before the command ended
    assert "interrupted before the gateway answered" in capsys.readouterr().err


async def test_ctrl_c_during_a_map_takes_it_back(make_sim: Any, state_dir: Path) -> None:
    sim = await make_sim(delay=1.0)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tui.cli", "map", "tcp", "8080", "--via", "pcp", *sim.target,
        cwd=REPO_ROOT, env=python_env(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        await until(lambda: sim.gateway.counters.received >= 1, 15.0, what="the map")
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130
    assert out == b""
    lines = err.decode().splitlines()
    assert lines[-1] == "natdeck: interrupted"
    assert "natdeck asked to delete it" in lines[0]
    assert ": done, nothing is left" in lines[0]
    assert sim.mapped() == {}
    assert StateFile(state_dir).load().records == []


# -- defect 3: miniupnpd's NO_RESOURCES to the delete of a mapping it lost ---------------------


async def test_unmap_after_a_restart_on_a_gateway_answering_no_resources(
        make_sim: Any, run: Any, state_dir: Path) -> None:
    sim = await make_sim(missing_delete_result=PcpResult.NO_RESOURCES)
    assert (await run("map", "tcp", "8080", "--via", "pcp", *sim.target)).code == 0
    sim.gateway.restart()  # the mapping is gone; the record is not
    result = await run("unmap", "tcp", "8080", *sim.target)
    assert result.code == 0, result.err
    assert result.lines == ["deleted tcp 8080 via PCP"]
    assert StateFile(state_dir).load().records == []


# -- defect 4: a record that cannot be written ------------------------------------------------


class _Full(FullDisk):
    full = True


async def test_a_full_state_disk_deletes_the_new_mapping_again(
        sim: Sim, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tui.cli.runtime.StateFile", _Full)
    result = await run("map", "tcp", "8080", "--via", "pcp", *sim.target)
    assert result.code == 1
    assert result.out == ""
    [line] = result.err_lines
    assert line.startswith("natdeck: could not write the state file ")
    assert "No space left on device" in line
    assert "tcp 8080 was deleted again" in line
    assert sim.mapped() == {}


async def test_a_full_state_disk_keeps_a_renewal_its_record_names(
        sim: Sim, run: Any, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (await run("map", "tcp", "8080", *sim.target)).code == 0
    monkeypatch.setattr("tui.cli.runtime.StateFile", _Full)
    result = await run("map", "tcp", "8080", *sim.target)
    assert result.code == 0, result.err
    [warning] = result.err_lines
    assert "its earlier record still names this mapping" in warning
    assert (6, 8080) in sim.mapped()
    monkeypatch.setattr("tui.cli.runtime.StateFile", StateFile)
    assert (await run("unmap", "tcp", "8080", *sim.target)).code == 0
    assert sim.mapped() == {}


# -- defect 5: one record per port, whatever the local address ---------------------------------


async def test_a_record_of_another_local_address_is_neither_overwritten_nor_used(
        sim: Sim, run: Any, state_dir: Path) -> None:
    assert (await run("map", "tcp", "8080", "--local", "127.0.0.1", *sim.target)).code == 0
    first = sim.mapped()[(6, 8080)]
    for command in ("map", "unmap"):
        refused = await run(command, "tcp", "8080", "--local", "127.0.0.2", *sim.target)
        assert refused.code == 1
        [line] = refused.err_lines
        assert "as mapped from 127.0.0.1, not from 127.0.0.2" in line
        assert "'natdeck unmap tcp 8080 --local 127.0.0.1'" in line
    assert [m.nonce for m in sim.gateway.mappings] == [first.nonce]
    [record] = StateFile(state_dir).load().records
    assert str(record.local_address) == "127.0.0.1"
    # Without --local the detected address is the record's: that unmap deletes it.
    assert (await run("unmap", "tcp", "8080", *sim.target)).code == 0
    assert sim.mapped() == {}
