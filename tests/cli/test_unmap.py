"""``natdeck unmap``: with the nonce ``natdeck map`` stored, without one, and ``--all``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.client import GatewayClient
from engine.statefile import MappingRecord, StateFile

from .conftest import Sim, run_process


async def test_unmap_from_another_process_uses_the_stored_nonce(
        sim: Sim, run: Any, state_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 'natdeck map' and 'natdeck unmap' are separate processes: only the state file links them.
    mapped = await run_process("map", "tcp", "8080", "--json", *sim.target)
    assert mapped.code == 0, mapped.err
    assert (6, 8080) in sim.mapped()
    record, _ = StateFile(state_dir).find("127.0.0.1", sim.port, 6, 8080)
    assert record is not None
    assert record.nonce == sim.mapped()[(6, 8080)].nonce

    # A delete with any other nonce is refused by the strict (miniupnpd-like) gateway...
    monkeypatch.setenv("NATDECK_STATE_DIR", str(tmp_path / "empty"))
    refused = await run_process("unmap", "tcp", "8080", *sim.target)
    assert refused.code == 1
    [line] = refused.err_lines
    assert "NOT_AUTHORIZED" in line
    assert "No nonce is stored" in line
    assert (6, 8080) in sim.mapped()

    # ... and the stored one deletes it.
    monkeypatch.setenv("NATDECK_STATE_DIR", str(state_dir))
    deleted = await run_process("unmap", "tcp", "8080", "--json", *sim.target)
    assert deleted.code == 0, deleted.err
    [obj] = deleted.objects
    assert obj["event"] == "deleted"
    assert obj["stored_nonce"] is True
    assert obj["via"] == "pcp"
    assert (obj["protocol"], obj["internal_port"]) == ("tcp", 8080)
    assert sim.mapped() == {}
    assert StateFile(state_dir).load().records == []


async def test_unmap_natpmp_record(sim: Sim, run: Any, state_dir: Path) -> None:
    assert (await run("map", "udp", "5353", "--via", "natpmp", *sim.target)).code == 0
    result = await run("unmap", "udp", "5353", *sim.target)
    assert result.code == 0, result.err
    assert result.lines == ["deleted udp 5353 via NAT-PMP"]
    assert sim.mapped() == {}
    assert sim.gateway.counters.count("pcp") == 0  # the record said NAT-PMP: no PCP try
    assert StateFile(state_dir).load().records == []


async def test_unmap_unknown_mapping_uses_a_fresh_nonce(sim: Sim, run: Any) -> None:
    # Nothing mapped and nothing stored: a PCP delete is idempotent (RFC 6887 §15), and a
    # strict gateway would have refused a new nonce for a mapping it holds (§11.3).
    result = await run("unmap", "tcp", "4444", *sim.target)
    assert result.code == 0, result.err
    assert result.lines == ["not held: tcp 4444 (no record of it; after a PCP delete with a "
                            "new nonce, as none was stored, the gateway holds no such mapping)"]
    [obj] = (await run("unmap", "tcp", "4444", "--json", *sim.target)).objects
    assert (obj["event"], obj["via"], obj["stored_nonce"]) == ("not_held", "pcp", False)


async def test_unmap_auto_without_record_on_natpmp_gateway(make_sim: Any, run: Any,
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    sim = await make_sim(speak_pcp=False)
    assert (await run("map", "tcp", "7000", *sim.target)).code == 0
    assert sim.mapped()[(6, 7000)].via == "natpmp"
    monkeypatch.setenv("NATDECK_STATE_DIR", str(tmp_path / "none"))
    result = await run("unmap", "tcp", "7000", "--json", *sim.target)
    assert result.code == 0, result.err
    assert result.objects[0]["via"] == "natpmp"
    assert result.objects[0]["event"] == "not_held"
    assert sim.mapped() == {}


async def test_unmap_all(sim: Sim, run: Any, state_dir: Path) -> None:
    for proto, port in (("tcp", 1001), ("tcp", 1002), ("udp", 1003)):
        assert (await run("map", proto, str(port), "--via", "natpmp", *sim.target)).code == 0
    assert (await run("map", "tcp", "1004", "--via", "pcp", *sim.target)).code == 0
    result = await run("unmap", "tcp", "--all", "--json", *sim.target)
    assert result.code == 0, result.err
    [obj] = result.objects
    assert obj["event"] == "deleted_all"
    assert obj["protocol"] == "tcp"
    assert obj["via"] == "natpmp"
    # NAT-PMP's delete-all (RFC 6886 §3.4) took this client's NAT-PMP TCP mappings only.
    assert set(sim.mapped()) == {(17, 1003), (6, 1004)}
    assert sorted(r.internal_port for r in StateFile(state_dir).load().records) == [1003, 1004]


async def test_unmap_refused_keeps_the_record(sim: Sim, run: Any, state_dir: Path) -> None:
    assert (await run("map", "tcp", "8080", *sim.target)).code == 0
    sim.gateway.configure(force_pcp_result=2)  # NOT_AUTHORIZED
    result = await run("unmap", "tcp", "8080", *sim.target)
    assert result.code == 1
    assert "NOT_AUTHORIZED" in result.err
    # "Try drop": the record stays so that the delete can be tried again.
    assert StateFile(state_dir).find("127.0.0.1", sim.port, 6, 8080)[0] is not None
    sim.gateway.configure(force_pcp_result=None)
    assert (await run("unmap", "tcp", "8080", *sim.target)).code == 0
    assert sim.mapped() == {}


# -- what unmap says is what the gateway holds (issue 14, finding 4) ------------------------


async def test_unmap_via_natpmp_uses_the_stored_pcp_record(make_sim: Any, run: Any,
                                                           state_dir: Path) -> None:
    # miniupnpd answers a NAT-PMP delete of a PCP mapping SUCCESS and keeps the mapping: the
    # old unmap printed "deleted", exit 0, and the port stayed open.
    sim = await make_sim(natpmp_delete_spares_pcp=True)
    assert (await run("map", "tcp", "41361", *sim.target)).code == 0
    assert sim.mapped()[(6, 41361)].via == "pcp"
    result = await run("unmap", "tcp", "41361", "--via", "natpmp", "--json", *sim.target)
    assert result.code == 0, result.err
    [obj] = result.objects
    assert (obj["event"], obj["via"], obj["stored_nonce"]) == ("deleted", "pcp", True)
    [warning] = result.err_lines
    assert warning.startswith("natdeck: warning: tcp 41361 was mapped with PCP")
    assert "a NAT-PMP delete cannot remove it" in warning
    assert sim.mapped() == {}
    assert StateFile(state_dir).load().records == []


async def test_unmap_via_natpmp_without_record_of_a_pcp_mapping_is_unconfirmed(
        make_sim: Any, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim = await make_sim(natpmp_delete_spares_pcp=True)
    assert (await run("map", "tcp", "41361", *sim.target)).code == 0
    monkeypatch.setenv("NATDECK_STATE_DIR", str(tmp_path / "elsewhere"))  # no record here
    result = await run("unmap", "tcp", "41361", "--via", "natpmp", "--json", *sim.target)
    assert result.code == 5, (result.out, result.err)
    [obj] = result.objects
    assert (obj["event"], obj["via"]) == ("unconfirmed", "natpmp")
    assert "NOT_AUTHORIZED" in obj["reason"]
    [line] = result.err_lines
    assert line.startswith("natdeck: the gateway accepted the NAT-PMP delete of tcp 41361, but ")
    assert (6, 41361) in sim.mapped()  # what natdeck says is what the gateway holds
    text = await run("unmap", "tcp", "41361", "--via", "natpmp", *sim.target)
    assert (text.code, text.lines) == (5, ["unconfirmed tcp 41361 via NAT-PMP"])


async def test_unmap_natpmp_when_another_host_holds_the_port_is_unconfirmed(
        sim: Sim, run: Any) -> None:
    # 127.0.0.2 stands for another host holding external port 7000: the re-map that checks
    # the delete is given another port, so natdeck cannot say the port is free.
    async with GatewayClient("127.0.0.1", sim.port, local_address="127.0.0.2") as other:
        await other.map(6, 7000, external_port=7000, via="natpmp", timeout=5)
    result = await run("unmap", "tcp", "7000", "--via", "natpmp", "--json", *sim.target)
    assert result.code == 5, (result.out, result.err)
    [obj] = result.objects
    assert obj["event"] == "unconfirmed"
    assert "external port 7000 is still mapped" in obj["reason"]
    # The check's own mapping was deleted again; the other host's is untouched.
    assert [(str(m.internal_address), m.external_port) for m in sim.gateway.mappings] == [
        ("127.0.0.2", 7000)]


async def test_unmap_natpmp_record_is_checked_and_leaves_nothing(sim: Sim, run: Any) -> None:
    assert (await run("map", "udp", "5353", "--via", "natpmp", *sim.target)).code == 0
    before = sim.gateway.counters.received
    result = await run("unmap", "udp", "5353", "--json", *sim.target)
    assert result.code == 0, result.err
    assert result.objects[0]["event"] == "deleted"
    # The delete, then the re-map that checks it, then its delete (and the address query
    # the re-map makes): nothing is left behind.
    assert sim.gateway.counters.received - before >= 3
    assert sim.mapped() == {}


# -- mappings recorded by the terminal UI's manager (issue 14, finding 3) --------------------


async def _record_like_the_manager(sim: Sim, state_dir: Path, port: int, pid: int | None
                                   ) -> bytes:
    """Map with the library and record it as MappingManager does, from another 'process'."""
    async with GatewayClient("127.0.0.1", sim.port) as client:
        mapping = await client.map(6, port, via="pcp", timeout=5)
    StateFile(state_dir).record(MappingRecord.from_mapping(mapping, pid=pid))
    assert mapping.nonce is not None
    return mapping.nonce


async def _gone_pid() -> int:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await process.wait()
    return process.pid


@pytest.mark.parametrize("holder", ["gone", "none", "another program"])
async def test_unmap_deletes_what_the_manager_recorded(sim: Sim, run: Any, state_dir: Path,
                                                       holder: str) -> None:
    # The strict gateway refuses any other nonce: only the recorded one can delete it.
    other = None
    if holder == "gone":
        pid: int | None = await _gone_pid()
    elif holder == "none":
        pid = None
    else:  # a live pid that names another program now (pid reuse)
        other = await asyncio.create_subprocess_exec("sleep", "30")
        pid = other.pid
    try:
        nonce = await _record_like_the_manager(sim, state_dir, 41361, pid)
        assert sim.mapped()[(6, 41361)].nonce == nonce
        result = await run_process("unmap", "tcp", "41361", "--json", *sim.target)
    finally:
        if other is not None:
            other.kill()
            await other.wait()
    assert result.code == 0, result.err
    [obj] = result.objects
    assert (obj["event"], obj["via"], obj["stored_nonce"]) == ("deleted", "pcp", True)
    assert sim.mapped() == {}
    assert StateFile(state_dir).load().records == []


async def test_unmap_refuses_while_a_live_natdeck_holds_the_record(sim: Sim, run: Any,
                                                                   state_dir: Path) -> None:
    # A running TUI (``python -m tui``) renews what it recorded: unmap must not race it.
    tui = await asyncio.create_subprocess_exec(sys.executable, "-c",
                                               "import time; time.sleep(30)", "-m", "tui")
    try:
        await _record_like_the_manager(sim, state_dir, 41362, tui.pid)
        result = await run("unmap", "tcp", "41362", *sim.target)
    finally:
        tui.kill()
        await tui.wait()
    assert result.code == 1
    assert f"held by natdeck process {tui.pid} ('map --hold' or the terminal UI)" in result.err
    assert (6, 41362) in sim.mapped()
