"""``natdeck map``: PCP, NAT-PMP, auto; the stored nonce; ``--hold`` until stopped."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import pytest

from engine.codes import PcpResult
from engine.simulator import GatewayConfig, SimulatedGateway
from engine.statefile import StateFile
from tests.support.loopback import free_udp_port, until
from tests.support.virtual_time import run_virtual

from .conftest import Sim

CONTRACT_FIELDS = {"protocol", "internal_port", "external_address", "external_port", "lifetime",
                   "via", "gateway", "local_address", "epoch"}


async def test_map_pcp_text(sim: Sim, run: Any, state_dir: Any) -> None:
    result = await run("map", "tcp", "8080", *sim.target)
    assert result.code == 0, result.err
    assert result.err == ""
    [line] = result.lines
    assert re.fullmatch(rf"mapped tcp 8080 -> 203\.0\.113\.7:8080 for 7200 s via PCP "
                        rf"\(gateway 127\.0\.0\.1:{sim.port}, epoch \d+\)", line), line
    at_gateway = sim.mapped()[(6, 8080)]
    assert at_gateway.via == "pcp"
    assert at_gateway.external_port == 8080
    # The nonce the gateway holds is the one stored for 'natdeck unmap'.
    record, warnings = StateFile(state_dir).find("127.0.0.1", sim.port, 6, 8080)
    assert warnings == []
    assert record is not None
    assert record.via == "pcp"
    assert record.nonce == at_gateway.nonce
    assert record.pid is None


async def test_map_json_fields(sim: Sim, run: Any) -> None:
    result = await run("map", "udp", "5000", "--external-port", "6000", "--lifetime", "600",
                       "--json", *sim.target)
    assert result.code == 0, result.err
    [obj] = result.objects
    assert obj.keys() >= CONTRACT_FIELDS
    assert obj["protocol"] == "udp"
    assert obj["protocol_number"] == 17
    assert obj["internal_port"] == 5000
    assert obj["external_port"] == 6000
    assert obj["external_address"] == "203.0.113.7"
    assert obj["lifetime"] == 600
    assert obj["via"] == "pcp"
    assert obj["gateway"] == "127.0.0.1"
    assert obj["gateway_port"] == sim.port
    assert obj["local_address"] == "127.0.0.1"
    assert obj["epoch"] == sim.gateway.epoch or obj["epoch"] == sim.gateway.epoch - 1
    assert obj["event"] == "mapped"
    at_gateway = sim.mapped()[(17, 5000)]
    assert (at_gateway.external_port, at_gateway.lifetime) == (6000, 600)


async def test_map_natpmp(sim: Sim, run: Any, state_dir: Any) -> None:
    result = await run("map", "tcp", "9000", "--via", "natpmp", "--json", *sim.target)
    assert result.code == 0, result.err
    [obj] = result.objects
    assert obj["via"] == "natpmp"
    assert obj["external_address"] == "203.0.113.7"  # learnt with NAT-PMP opcode 0
    assert sim.mapped()[(6, 9000)].via == "natpmp"
    assert sim.gateway.counters.count("pcp") == 0  # --via natpmp: no PCP at all
    record, _ = StateFile(state_dir).find("127.0.0.1", sim.port, 6, 9000)
    assert record is not None
    assert record.via == "natpmp"
    assert record.nonce is None


async def test_map_auto_falls_back_to_natpmp(make_sim: Any, run: Any) -> None:
    sim = await make_sim(speak_pcp=False)
    result = await run("map", "udp", "4500", "--json", *sim.target)
    assert result.code == 0, result.err
    assert result.objects[0]["via"] == "natpmp"
    assert sim.mapped()[(17, 4500)].via == "natpmp"


async def test_map_auto_prefers_pcp(sim: Sim, run: Any) -> None:
    result = await run("map", "udp", "4500", "--json", *sim.target)
    assert result.objects[0]["via"] == "pcp"
    assert sim.gateway.counters.count("natpmp") == 0


async def test_map_again_renews_with_the_stored_nonce(sim: Sim, run: Any, state_dir: Any,
                                                      tmp_path: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert (await run("map", "tcp", "8080", "--external-port", "18080", *sim.target)).code == 0
    nonce = sim.mapped()[(6, 8080)].nonce
    # Run again (a cron job renewing): the stored nonce and external port are reused, and
    # the strict gateway accepts it as a renewal of the same mapping.
    again = await run("map", "tcp", "8080", "--json", *sim.target)
    assert again.code == 0, again.err
    assert again.objects[0]["external_port"] == 18080
    assert sim.mapped()[(6, 8080)].nonce == nonce
    assert len(sim.mapped()) == 1
    # Without the state file a new nonce is made, and the strict gateway refuses it: this is
    # what the state file is for (RFC 6887 §11.3).
    monkeypatch.setenv("NATDECK_STATE_DIR", str(tmp_path / "elsewhere"))
    refused = await run("map", "tcp", "8080", *sim.target)
    assert refused.code == 1
    assert len(refused.err_lines) == 1
    assert "NOT_AUTHORIZED" in refused.err
    assert refused.out == ""


async def test_map_refused_is_exit_1_one_line(make_sim: Any, run: Any, state_dir: Any) -> None:
    sim = await make_sim(force_pcp_result=int(PcpResult.NO_RESOURCES))
    result = await run("map", "tcp", "8080", "--via", "pcp", *sim.target)
    assert result.code == 1
    assert result.out == ""
    [line] = result.err_lines
    assert line.startswith("natdeck: ")
    assert "NO_RESOURCES" in line
    assert StateFile(state_dir).load().records == []


async def test_map_protocol_by_name_pcp(sim: Sim, run: Any) -> None:
    # PCP maps any IP protocol (RFC 6887 §11.1); 'sctp' from the protocol table.
    result = await run("map", "sctp", "3868", "--json", *sim.target)
    assert result.code == 0, result.err
    assert result.objects[0]["protocol"] == "sctp"
    assert (132, 3868) in sim.mapped()


# -- --hold ----------------------------------------------------------------------------------


async def test_hold_renews_then_deletes_when_stopped(make_sim: Any, run: Any,
                                                     state_dir: Any) -> None:
    sim = await make_sim(min_lifetime=2)
    stop = asyncio.Event()
    task = asyncio.ensure_future(run("map", "udp", "7000", "--hold", "--lifetime", "2",
                                     "--no-listen", "--json", *sim.target, stop=stop))
    await until(lambda: (17, 7000) in sim.mapped(), 10.0, 0.02)
    nonce = sim.mapped()[(17, 7000)].nonce
    state = StateFile(state_dir)
    await until(lambda: state.find("127.0.0.1", sim.port, 17, 7000)[0] is not None, 10.0, 0.02)
    record = state.find("127.0.0.1", sim.port, 17, 7000)[0]
    assert record is not None
    assert record.nonce == nonce
    # The manager writes the record (the CLI does not write it again), naming this process
    # as its holder, so that another natdeck will not map or delete it meanwhile.
    assert record.pid == os.getpid()
    # PCP renews at 1/2 to 5/8 of the lifetime (RFC 6887 §11.2.1): within ~1.3 s of 2 s.
    await asyncio.sleep(2.5)
    kept = state.find("127.0.0.1", sim.port, 17, 7000)[0]
    assert kept is not None
    assert (kept.nonce, kept.pid) == (nonce, os.getpid())
    stop.set()
    result = await task
    assert result.code == 0, result.err
    events = [obj["event"] for obj in result.objects]
    assert events[0] == "mapped"
    assert "renewed" in events
    assert events[-1] == "deleted"
    assert sim.mapped() == {}
    assert state.load().records == []


async def test_hold_with_a_state_file_it_cannot_write_maps_at_once_and_warns(
        sim: Sim, run: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A state directory that cannot be made (a file where a directory should be): the mapping
    # is fine and is said at once, with the warning the one-shot map gives. Before, --hold
    # waited silently for a retry of the write for its whole timeout (30 s by default).
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("NATDECK_STATE_DIR", str(blocker / "state"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    start = loop.time()
    task = asyncio.ensure_future(run("map", "tcp", "2323", "--hold", "--no-listen",
                                     "--timeout", "20", *sim.target, stop=stop))
    await until(lambda: (6, 2323) in sim.mapped(), 10.0, 0.02)
    await asyncio.sleep(0.5)
    stop.set()
    result = await task
    assert loop.time() - start < 5.0
    assert result.code == 0, result.err
    assert result.lines[0].startswith("mapped tcp 2323 -> ")
    assert "could not write the state file" in result.err
    assert "'natdeck unmap' will not know this mapping" in result.err
    assert sim.mapped() == {}


async def test_hold_cancelled_in_process_still_deletes(sim: Sim, run: Any,
                                                       state_dir: Any) -> None:
    task = asyncio.ensure_future(run("map", "tcp", "2222", "--hold", "--no-listen",
                                     *sim.target))
    await until(lambda: (6, 2222) in sim.mapped(), 10.0, 0.02)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sim.mapped() == {}
    assert StateFile(state_dir).load().records == []


async def test_hold_over_a_mapping_made_before_takes_it_over(sim: Sim, run: Any) -> None:
    assert (await run("map", "tcp", "8080", "--external-port", "18080", *sim.target)).code == 0
    stop = asyncio.Event()
    task = asyncio.ensure_future(run("map", "tcp", "8080", "--hold", "--no-listen", "--json",
                                     *sim.target, stop=stop))
    nonce = sim.mapped()[(6, 8080)].nonce
    # map, then the holder's renewal under the stored nonce: no delete, no gap.
    await until(lambda: sim.gateway.counters.count("pcp", 1) >= 2, 10.0, 0.02)
    assert sim.mapped()[(6, 8080)].nonce == nonce
    stop.set()
    result = await task
    assert result.code == 0, result.err
    assert result.objects[0]["external_port"] == 18080  # the port it had
    assert sim.gateway.counters.count("pcp", 1) == 3  # map, hold's renewal, delete on exit
    assert sim.mapped() == {}


async def test_hold_refused_gives_exit_1(make_sim: Any, run: Any) -> None:
    sim = await make_sim(force_pcp_result=int(PcpResult.NOT_AUTHORIZED))
    result = await run("map", "tcp", "80", "--hold", "--via", "pcp", "--no-listen",
                       *sim.target)
    assert result.code == 1
    assert "NOT_AUTHORIZED" in result.err
    assert len(result.err_lines) == 1


def test_hold_recovers_after_a_gateway_restart(run: Any, state_dir: Any) -> None:
    # On the virtual clock: after the announcement the holder waits RFC 6887 §14.1.3's random
    # 0-5 s before asking again, which costs no real time there.
    async def scenario() -> None:
        listen_port = free_udp_port()
        # An epoch well above 0, so that the restart (back to 0) shows lost state
        # (RFC 6887 §8.5).
        config = GatewayConfig(announce_targets=(("127.0.0.1", listen_port),), announce_count=1,
                               initial_epoch=5000)
        async with SimulatedGateway("127.0.0.1", 0, config=config) as gateway:
            sim = Sim(gateway)
            stop = asyncio.Event()
            task = asyncio.ensure_future(run("map", "tcp", "6000", "--hold", "--json",
                                             "--listen-host", "127.0.0.1", "--listen-port",
                                             str(listen_port), *sim.target, stop=stop))
            await until(lambda: (6, 6000) in sim.mapped(), 10.0, 0.02)
            nonce = sim.mapped()[(6, 6000)].nonce
            sim.gateway.restart()  # mappings gone; the gateway announces its new epoch
            assert sim.mapped() == {}
            # The holder hears the announcement (RFC 6887 §14.1.3) and maps it again, same nonce.
            await until(lambda: (6, 6000) in sim.mapped(), 10, 0.02)
            assert sim.mapped()[(6, 6000)].nonce == nonce
            await asyncio.sleep(0.05)
            stop.set()
            result = await task
            assert result.code == 0, result.err
            events = [obj["event"] for obj in result.objects]
            assert events[0] == "mapped"
            assert "gateway_restarted" in events
            assert "recovered" in events
            assert events[-1] == "deleted"
            assert sim.mapped() == {}
            assert gateway.internal_errors == []

    run_virtual(scenario)
