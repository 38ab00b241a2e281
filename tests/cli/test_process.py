"""natdeck as a real process (``python -m tui.cli``): signals, exit statuses, stdout/stderr."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.statefile import StateFile
from tests.support.loopback import REPO_ROOT, free_udp_port, python_env

from .conftest import Sim, run_process


async def _start(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tui.cli", *argv, cwd=REPO_ROOT, env=python_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _line(process: asyncio.subprocess.Process, timeout: float = 15) -> dict[str, Any]:
    assert process.stdout is not None
    raw = await asyncio.wait_for(process.stdout.readline(), timeout)
    assert raw, "the process closed stdout"
    result: dict[str, Any] = json.loads(raw)
    return result


async def test_probe_json_process(sim: Sim) -> None:
    result = await run_process("probe", "--json", *sim.target)
    assert result.code == 0, result.err
    assert result.err == ""
    [obj] = result.objects
    assert obj["pcp"] is True
    assert obj["natpmp"] is True


async def test_timeout_process_one_line(make_sim: Any) -> None:
    sim = await make_sim(silent=True)
    result = await run_process("map", "udp", "5000", "--timeout", "0.4", *sim.target)
    assert result.code == 3
    assert result.out == ""
    [line] = result.err_lines  # one line: no traceback, no log noise
    assert line.startswith("natdeck: map: no answer") or "no answer" in line


async def test_usage_error_process(sim: Sim) -> None:
    result = await run_process("map", "tcp", "123456", *sim.target)
    assert result.code == 2
    assert result.err_lines == ["natdeck map: error: argument PORT: port must be 0-65535, not "
                                "123456 (see 'natdeck map --help')"]
    assert sim.gateway.counters.received == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_hold_until_signal_then_delete(sim: Sim, run: Any, state_dir: Path,
                                             signum: signal.Signals) -> None:
    process = await _start("map", "udp", "7001", "--hold", "--no-listen", "--json",
                           *sim.target)
    try:
        mapped = await _line(process)
        assert mapped["event"] == "mapped"
        assert mapped["internal_port"] == 7001
        assert (17, 7001) in sim.mapped()
        record, _ = StateFile(state_dir).find("127.0.0.1", sim.port, 17, 7001)
        assert record is not None
        assert record.pid == process.pid
        assert record.nonce == sim.mapped()[(17, 7001)].nonce

        # While it is held, another natdeck must not map or delete it from under the holder.
        for argv in (("unmap", "udp", "7001"), ("map", "udp", "7001")):
            refused = await run(*argv, *sim.target)
            assert refused.code == 1
            assert f"held by natdeck process {process.pid}" in refused.err
        assert (17, 7001) in sim.mapped()

        process.send_signal(signum)
        deleted = await _line(process)
        assert deleted["event"] == "deleted"
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert sim.mapped() == {}
    assert StateFile(state_dir).load().records == []


async def test_a_signal_delivered_twice_at_once_still_deletes(make_sim: Any) -> None:
    # GNU timeout (and a terminal, to its process group) delivers one interrupt twice: the
    # copy must not count as a second Ctrl-C that abandons the delete (found in the lab: the
    # rule stayed when `timeout -s INT` stopped `map --hold` on a loaded machine). The
    # gateway takes 0.3 s a request, so the delete is still out when the copy arrives.
    sim = await make_sim(delay=0.3)
    process = await _start("map", "udp", "7002", "--hold", "--no-listen", "--json",
                           *sim.target)
    try:
        assert (await _line(process))["event"] == "mapped"
        process.send_signal(signal.SIGINT)
        await asyncio.sleep(0.05)  # the copy arrives after the first was handled
        process.send_signal(signal.SIGINT)
        assert (await _line(process))["event"] == "deleted"
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert sim.mapped() == {}


async def test_a_second_signal_later_abandons_the_delete(make_sim: Any) -> None:
    # A user's second Ctrl-C, after the first, still leaves at once (exit 130) while the
    # delete waits on a gateway that does not answer.
    sim = await make_sim()
    process = await _start("map", "udp", "7003", "--hold", "--no-listen", "--json",
                           *sim.target)
    try:
        assert (await _line(process))["event"] == "mapped"
        sim.gateway.configure(silent=True)
        process.send_signal(signal.SIGINT)
        await asyncio.sleep(1.0)
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 15) == 130
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_hold_record_of_a_dead_holder_is_used(sim: Sim, run: Any, state_dir: Path
                                                    ) -> None:
    # A holder killed with SIGKILL cannot delete; its record (and nonce) lets unmap do it.
    process = await _start("map", "tcp", "7002", "--hold", "--no-listen", "--json",
                           *sim.target)
    await _line(process)
    process.kill()
    await process.wait()
    assert (6, 7002) in sim.mapped()
    result = await run("unmap", "tcp", "7002", "--json", *sim.target)
    assert result.code == 0, result.err
    assert result.objects[0]["stored_nonce"] is True
    assert sim.mapped() == {}


async def test_watch_process_until_sigint(make_sim: Any) -> None:
    port = free_udp_port()
    sim: Sim = await make_sim(announce_targets=(("127.0.0.1", port),), announce_count=1)
    process = await _start("watch", "--json", "--listen-host", "127.0.0.1", "--listen-port",
                           str(port), *sim.target)
    try:
        await asyncio.sleep(1.0)  # interpreter start-up and bind
        sim.gateway.change_external_address("198.51.100.77")
        first = await _line(process)
        assert first["external_address"] == "198.51.100.77"
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_subcommands_do_not_import_textual(sim: Sim) -> None:
    code = ("import sys\n"
            "from tui.cli import main\n"
            f"status = main(['probe', '--gateway', '127.0.0.1', '--gateway-port', '{sim.port}'])\n"
            "assert 'textual' not in sys.modules, 'the CLI imported textual'\n"
            "sys.exit(status)\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=REPO_ROOT, env=python_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert b"would use" in out
