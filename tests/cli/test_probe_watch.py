"""``natdeck probe`` and ``natdeck watch``."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.loopback import free_udp_port

from .conftest import Sim


async def test_probe_table(sim: Sim, run: Any) -> None:
    result = await run("probe", *sim.target)
    assert result.code == 0, result.err
    # Two columns: the names padded to the longest ("external address"), two spaces, values.
    rows = {line[:16].rstrip(): line[18:] for line in result.lines}
    assert rows["gateway"] == f"127.0.0.1:{sim.port}"
    assert rows["PCP"].startswith("yes (epoch ")
    assert rows["NAT-PMP"].startswith("yes (epoch ")
    assert rows["external address"] == "203.0.113.7"
    assert rows["local address"] == "127.0.0.1"
    assert rows["round trip"].endswith(" ms")
    assert rows["would use"] == "PCP"


async def test_probe_json(sim: Sim, run: Any) -> None:
    result = await run("probe", "--json", *sim.target)
    assert result.code == 0, result.err
    [obj] = result.objects
    assert obj["pcp"] is True
    assert obj["natpmp"] is True
    assert obj["reachable"] is True
    assert obj["via"] == "pcp"
    assert obj["external_address"] == "203.0.113.7"
    assert isinstance(obj["epoch"], int)
    assert obj["epoch"] == obj["pcp_epoch"]
    assert isinstance(obj["rtt"], float)
    assert 0 < obj["rtt"] < 1
    assert obj["gateway"] == "127.0.0.1"
    assert obj["gateway_port"] == sim.port


async def test_probe_natpmp_only(make_sim: Any, run: Any) -> None:
    sim = await make_sim(speak_pcp=False)
    [obj] = (await run("probe", "--json", *sim.target)).objects
    assert (obj["pcp"], obj["natpmp"], obj["via"]) == (False, True, "natpmp")


async def test_probe_silent_gateway(make_sim: Any, run: Any) -> None:
    sim = await make_sim(silent=True)
    result = await run("probe", "--json", "--timeout", "0.3", *sim.target)
    assert result.code == 3
    [obj] = result.objects
    assert obj["reachable"] is False
    assert obj["pcp"] is False
    assert obj["natpmp"] is False
    [line] = result.err_lines
    assert line.startswith("natdeck: no answer from gateway")


# -- watch -----------------------------------------------------------------------------------


async def _watch_sim(make_sim: Any, **config: Any) -> tuple[Sim, list[str]]:
    port = free_udp_port()
    sim: Sim = await make_sim(announce_targets=(("127.0.0.1", port),), announce_count=3,
                              announce_first_interval=0.05, **config)
    return sim, ["--listen-host", "127.0.0.1", "--listen-port", str(port)]


async def _started(sim: Sim) -> None:
    # Let the watcher bind before the gateway speaks (it binds at once; a loop turn or two).
    await asyncio.sleep(0.1)


async def test_watch_prints_an_address_change(make_sim: Any, run: Any) -> None:
    sim, listen = await _watch_sim(make_sim)
    task = asyncio.ensure_future(run("watch", *listen, "--count", "2", "--timeout", "10",
                                     *sim.target))
    await _started(sim)
    sim.gateway.change_external_address("198.51.100.9")
    result = await asyncio.wait_for(task, 15)
    assert result.code == 0, result.err
    assert len(result.lines) == 2
    assert "NAT-PMP address announcement: external 198.51.100.9, epoch " in result.lines[0]
    assert "PCP ANNOUNCE, epoch " in result.lines[1]
    assert sim.gateway.counters.received == 0  # watch sends nothing


async def test_watch_json_change_restart_and_repeats(make_sim: Any, run: Any) -> None:
    sim, listen = await _watch_sim(make_sim, reset_epoch_on_address_change=False,
                                   initial_epoch=5000)
    stop = asyncio.Event()
    task = asyncio.ensure_future(run("watch", *listen, "--json", "--via", "natpmp",
                                     *sim.target, stop=stop))
    await _started(sim)
    sim.gateway.change_external_address("198.51.100.9")
    await sim.gateway.wait_announcements()
    sim.gateway.change_external_address("198.51.100.10")
    await sim.gateway.wait_announcements()
    sim.gateway.restart()
    await sim.gateway.wait_announcements()
    await asyncio.sleep(0.05)
    stop.set()
    result = await asyncio.wait_for(task, 5)
    assert result.code == 0, result.err
    objs = result.objects
    assert {o["kind"] for o in objs} == {"natpmp_address"}  # --via natpmp
    # Each announcement is sent three times; repeats are not printed.
    assert [(o["external_address"], o["address_changed"], o["restarted"]) for o in objs] == [
        ("198.51.100.9", False, False),
        ("198.51.100.10", True, False),
        ("198.51.100.10", False, True),  # epoch back to 0: the gateway lost its state
    ]
    assert objs[1]["previous_address"] == "198.51.100.9"
    assert objs[0]["epoch"] >= 5000
    assert objs[2]["epoch"] < 5
    assert all(o["repeat"] is False and o["gateway_port"] == sim.port for o in objs)


async def test_watch_repeats_flag(make_sim: Any, run: Any) -> None:
    sim, listen = await _watch_sim(make_sim)
    stop = asyncio.Event()
    task = asyncio.ensure_future(run("watch", *listen, "--json", "--repeats", *sim.target,
                                     stop=stop))
    await _started(sim)
    sim.gateway.change_external_address("198.51.100.9")
    await sim.gateway.wait_announcements()
    await asyncio.sleep(0.05)
    stop.set()
    objs = (await asyncio.wait_for(task, 5)).objects
    kinds = [o["kind"] for o in objs]
    assert kinds.count("natpmp_address") == 3
    assert kinds.count("pcp_announce") == 3
    assert [o["repeat"] for o in objs if o["kind"] == "natpmp_address"] == [False, True, True]


async def test_watch_ignores_other_senders(make_sim: Any, run: Any) -> None:
    sim, listen = await _watch_sim(make_sim)
    other, _ = await _watch_sim(make_sim)
    # A second "gateway" (another port) sends to our listen port: not ours, not printed.
    other.gateway.configure(announce_targets=sim.gateway.config.announce_targets)
    task = asyncio.ensure_future(run("watch", *listen, "--timeout", "0.6", *sim.target))
    await _started(sim)
    other.gateway.change_external_address("192.0.2.99")
    result = await asyncio.wait_for(task, 5)
    assert result.code == 3
    assert result.out == ""
    assert result.err_lines == ["natdeck: no announcement from gateway 127.0.0.1 in 0.6 s"]
