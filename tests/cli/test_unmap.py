"""``natdeck unmap``: with the nonce ``natdeck map`` stored, without one, and ``--all``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.statefile import StateFile

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
    # Nothing mapped and nothing stored: a PCP delete is idempotent (RFC 6887 §15).
    result = await run("unmap", "tcp", "4444", *sim.target)
    assert result.code == 0, result.err
    assert result.lines == ["deleted tcp 4444 via PCP (no stored nonce: a new one was used)"]


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
