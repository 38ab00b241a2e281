"""``natdeck list [--json] [--watch]`` against the simulated gateway and its UPnP IGD (one
shared table, as miniupnpd's), on loopback: the SSDP search goes to the IGD's own port."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from ipaddress import ip_address
from typing import Any

import pytest

from engine.simulator import Mapping
from engine.simulator.upnp import IgdConfig, SimulatedIgd
from tests.support.loopback import REPO_ROOT, free_udp_port, python_env
from tui import cli

from .conftest import Sim


@pytest.fixture
async def igd(sim: Sim) -> AsyncIterator[SimulatedIgd]:
    """The simulated gateway's IGD, with another host's UPnP mapping and a NAT-PMP one."""
    async with SimulatedIgd(gateway=sim.gateway, config=IgdConfig(secure_mode=False)) as igd:
        put(sim, "198.18.0.12", 6, 32400, 7200, "upnp", "Plex Media Server")
        put(sim, "198.18.0.30", 17, 22000, 3600, "natpmp")
        yield igd


def put(sim: Sim, client: str, protocol: int, port: int, lifetime: int, via: Any,
        description: str = "") -> None:
    now = asyncio.get_running_loop().time()
    address = ip_address(client)
    sim.gateway.core.state.put(Mapping(address, protocol, port, port, lifetime, now + lifetime,
                                       via, requested_by=address, description=description))


def target(sim: Sim, igd: SimulatedIgd) -> list[str]:
    return [*sim.target, "--ssdp-port", str(igd.ssdp_port)]


async def test_list_prints_the_table_with_ours_marked(sim: Sim, igd: SimulatedIgd,
                                                      run: Any) -> None:
    mapped = await run("map", "tcp", "8080", "--json", *sim.target)
    assert mapped.code == 0, mapped.err
    result = await run("list", *target(sim, igd))
    assert result.code == 0, result.err
    header, *rows, summary = result.lines
    assert header.split()[:3] == ["PROTO", "EXT.", "INTERNAL"]
    assert len(rows) == 3
    plex = next(row for row in rows if "198.18.0.12:32400" in row)
    assert "Plex Media Server" in plex
    # natdeck's own (the state file knows it), listed by the IGD under miniupnpd's PCP name.
    ours = next(row for row in rows if "127.0.0.1:8080" in row)
    assert "ours PCP" in ours
    assert "PCP MAP " in ours
    assert summary == "3 mappings, 3 hosts, 1 of ours"
    assert result.err == ""


async def test_list_json_one_object_per_mapping(sim: Sim, igd: SimulatedIgd, run: Any) -> None:
    result = await run("list", "--json", *target(sim, igd))
    assert result.code == 0, result.err
    objects = sorted(result.objects, key=lambda o: o["external_port"])
    assert [(o["internal_client"], o["protocol"], o["external_port"], o["made_by"])
            for o in objects] == [("198.18.0.30", "udp", 22000, "natpmp"),
                                  ("198.18.0.12", "tcp", 32400, "upnp")]
    natpmp, plex = objects
    assert natpmp["description"] == "NAT-PMP 22000 udp"
    assert 3590 <= natpmp["lease"] <= 3600
    assert 7190 <= plex["lease"] <= 7200
    assert plex["this_host"] is False
    assert plex["permanent"] is False


async def test_watch_prints_an_added_and_a_removed_entry(sim: Sim, igd: SimulatedIgd,
                                                         run: Any) -> None:
    stop = asyncio.Event()

    async def meanwhile() -> None:
        await asyncio.sleep(0.5)
        put(sim, "198.18.0.44", 17, 9987, 90, "upnp", "TeamSpeak")
        await asyncio.sleep(0.5)
        [plex] = sim.gateway.core.state.select(lambda m: m.external_port == 32400)
        sim.gateway.core.state.remove(plex.key)
        await asyncio.sleep(0.5)
        stop.set()

    task = asyncio.create_task(meanwhile())
    result = await run("list", "--watch", "--interval", "0.1", *target(sim, igd), stop=stop)
    await task
    assert result.code == 0, result.err
    changes = [line.split(" ", 1)[1] for line in result.lines[4:]]
    assert changes == ["198.18.0.44 opened udp 9987 via UPnP (to port 9987, lease 90 s)",
                       "198.18.0.12 closed tcp 32400 (UPnP)"]


async def test_watch_json_carries_events(sim: Sim, igd: SimulatedIgd, run: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.4, put, sim, "198.18.0.44", 17, 9987, 90, "upnp", "TeamSpeak")
    loop.call_later(1.0, stop.set)
    result = await run("list", "--watch", "--json", "--interval", "0.1", *target(sim, igd),
                       stop=stop)
    assert result.code == 0, result.err
    *table, added = result.objects
    assert len(table) == 2
    assert "event" not in table[0]
    assert (added["event"], added["internal_client"], added["external_port"]) == (
        "opened", "198.18.0.44", 9987)


async def test_a_gateway_without_upnp_is_exit_3_with_one_line(sim: Sim, run: Any) -> None:
    result = await run("list", "--timeout", "0.3", *sim.target, "--ssdp-port",
                       str(free_udp_port()))
    assert result.code == 3
    assert result.out == ""
    [line] = result.err_lines
    assert line.startswith("natdeck: the gateway does not list its mappings: ")


async def test_an_igd_v1_is_walked_by_index(sim: Sim, igd: SimulatedIgd, run: Any) -> None:
    igd.configure(igd_version=1)
    result = await run("list", "--json", *target(sim, igd))
    # IGDv1 has no GetListOfPortMappings: the generic walk reads the same table.
    assert result.code == 0, result.err
    assert len(result.objects) == 2
    assert igd.actions["GetListOfPortMappings"] == 0
    assert igd.actions["GetGenericPortMappingEntry"] >= 3


async def test_interval_goes_with_watch(sim: Sim, run: Any) -> None:
    result = await run("list", "--interval", "1", *sim.target)
    assert result.code == 2
    assert "--interval goes with --watch" in result.err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_watch_process_stops_on_a_signal_with_exit_0(sim: Sim, igd: SimulatedIgd,
                                                           signum: int) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tui.cli", "list", "--watch", "--json", "--interval", "0.2",
        *target(sim, igd), cwd=REPO_ROOT, env=python_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    first = json.loads(await asyncio.wait_for(process.stdout.readline(), 15))
    assert "event" not in first
    process.send_signal(signum)
    out, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, err.decode()
    assert err.decode() == ""
    assert len(out.decode().splitlines()) == 1  # the table's other row; no change meanwhile


@pytest.mark.parametrize("watching", [False, True], ids=["list", "list --watch"])
async def test_a_closed_stdout_ends_the_listing_quietly_with_exit_0(
        sim: Sim, igd: SimulatedIgd, watching: bool) -> None:
    # `natdeck list | head -1`: the reader is gone before the table is printed.
    reader, writer = os.pipe()
    os.close(reader)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tui.cli", "list", *(["--watch"] if watching else []),
            *target(sim, igd), cwd=REPO_ROOT, env=python_env(), stdout=writer,
            stderr=asyncio.subprocess.PIPE)
    finally:
        os.close(writer)
    # With --watch too: it stops watching on its own, no signal needed.
    _, err = await asyncio.wait_for(process.communicate(), 15)
    assert err.decode() == ""
    assert process.returncode == 0


async def test_watch_marks_as_ours_what_natdeck_mapped_after_it_started(
        sim: Sim, igd: SimulatedIgd, run: Any) -> None:
    stop = asyncio.Event()

    async def meanwhile() -> None:
        await asyncio.sleep(0.4)
        # Another natdeck maps (and records) it while the watch runs.
        assert await cli.main_async(["map", "tcp", "8080", *sim.target]) == 0
        await asyncio.sleep(0.5)
        [ours] = sim.gateway.core.state.select(lambda m: m.external_port == 8080)
        sim.gateway.core.state.remove(ours.key)
        await asyncio.sleep(0.5)
        stop.set()

    task = asyncio.create_task(meanwhile())
    result = await run("list", "--watch", "--json", "--interval", "0.1", *target(sim, igd),
                       stop=stop)
    await task
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.lines if line.startswith('{"event"')]
    # The closing is certain to come after the state file had the record, so the watch
    # must know it by then (it read the state file once, at the start).
    closed = next(e for e in events if e["event"] == "closed" and e["external_port"] == 8080)
    assert closed["ours"] is True


async def test_entries_the_gateway_listed_but_natdeck_could_not_read_are_counted(
        sim: Sim, igd: SimulatedIgd, run: Any) -> None:
    # Two entries no UPnP client can read (an internal port past 65535), among good ones.
    now = asyncio.get_running_loop().time()
    for client, protocol, port in (("198.18.0.40", 6, 40000), ("198.18.0.41", 17, 40001)):
        address = ip_address(client)
        sim.gateway.core.state.put(Mapping(address, protocol, 70000, port, 600, now + 600,
                                           "upnp", requested_by=address))
    text = await run("list", *target(sim, igd))
    assert text.code == 0, text.err
    assert text.lines[-1] == ("2 mappings, 2 hosts, 0 of ours; 2 entries the gateway listed "
                              "could not be read")
    as_json = await run("list", "--json", *target(sim, igd))
    assert as_json.code == 0, as_json.err
    assert len(as_json.objects) == 2
    assert {o["skipped"] for o in as_json.objects} == {2}
    assert as_json.err_lines == ["natdeck: warning: 2 entries the gateway listed could not "
                                 "be read"]
