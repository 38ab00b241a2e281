"""``natdeck list`` and ``--watch`` over the real UPnP listing of the demo's simulated gateway
(its IGD shares the PCP/NAT-PMP table, loopback only), and the layering of the router modules."""

from __future__ import annotations

import asyncio
import io
import json
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.router_source import UpnpRouterListing
from engine.simulator import SimulatedGateway
from engine.simulator.upnp import DEMO_LAN, IgdConfig, Neighbour, Neighbours, SimulatedIgd
from engine.upnp import UpnpResultError
from tests.support.loopback import free_udp_port
from tui.router_list import list_once, watch

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Lan:
    """The simulated gateway, its IGD, the other hosts, and natdeck's UPnP listing of it."""

    gateway: SimulatedGateway
    igd: SimulatedIgd
    others: Neighbours

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()
    source: UpnpRouterListing


@pytest.fixture
async def lan() -> AsyncIterator[Lan]:
    async with (SimulatedGateway("127.0.0.1", 0, "203.0.113.7") as gateway,
                SimulatedIgd(gateway=gateway, config=IgdConfig(secure_mode=False)) as igd):
        others = Neighbours(gateway.core.state)
        others.populate(asyncio.get_running_loop().time())
        source = UpnpRouterListing.on("127.0.0.1", ssdp_port=igd.ssdp_port,
                                      local_address="127.0.0.1")
        yield Lan(gateway, igd, others, source)
        await source.close()


async def test_list_prints_every_host(lan: Lan) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await list_once(lan.source, out, err) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + len(DEMO_LAN) + 1
    assert lines[-1] == "7 mappings, 5 hosts, 0 of ours"
    assert any("198.18.0.30:22000" in line and "NAT-PMP 22000 tcp" in line for line in lines)
    assert err.getvalue() == ""


async def test_list_json(lan: Lan) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await list_once(lan.source, out, err, as_json=True) == 0
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {(o["internal_client"], o["protocol"], o["external_port"]) for o in objects} == {
        (h.client, "tcp" if h.protocol == 6 else "udp", h.external_port) for h in DEMO_LAN}
    pcp = next(o for o in objects if o["made_by"] == "pcp")
    assert pcp["description"].startswith("PCP MAP ")
    assert 7190 <= pcp["lease"] <= 7200


async def test_list_without_a_listing_fails_with_a_sentence() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await list_once(None, out, err) == 1
    assert out.getvalue() == ""
    assert "does not list its mappings" in err.getvalue()


async def test_watch_prints_the_table_then_changes(lan: Lan) -> None:
    out, err = io.StringIO(), io.StringIO()
    newcomer = Neighbour("198.18.0.44", 17, 9987, 9987, 90, "upnp", "TeamSpeak")

    async def printed(lines: int) -> None:
        while len(out.getvalue().splitlines()) < lines:
            await asyncio.sleep(0.005)

    async def meanwhile() -> None:
        # Each change after the listing before it has been printed, not on a timer: under
        # load the first listing outran a fixed 80 ms and showed the newcomer in the table.
        await printed(len(DEMO_LAN) + 2)  # the header, the rows, the summary
        lan.others.open(newcomer, lan.now())
        await printed(len(DEMO_LAN) + 3)  # its "opened" line
        await lan.source.delete_mapping(next(r for r in await lan.source.list_mappings()
                                             if r.external_port == 32400))

    task = asyncio.create_task(meanwhile())
    assert await watch(lan.source, out, err, interval=0.05, listings=8,
                       stamp=lambda _: "12:00:00") == 0
    await task
    text = out.getvalue().splitlines()
    assert text[len(DEMO_LAN) + 1] == "7 mappings, 5 hosts, 0 of ours"
    changes = text[len(DEMO_LAN) + 2:]
    assert changes == [
        "12:00:00 198.18.0.44 opened udp 9987 via UPnP (to port 9987, lease 90 s)",
        "12:00:00 198.18.0.12 closed tcp 32400 (UPnP)",
    ]


async def test_watch_json_changes_carry_an_event(lan: Lan) -> None:
    out, err = io.StringIO(), io.StringIO()
    loop = asyncio.get_running_loop()

    async def open_after_the_first_listing() -> None:
        # Not on a timer: under load the first listing can take longer than any fixed delay,
        # and a mapping that is already there when it is read is no change.
        while len(out.getvalue().splitlines()) < len(DEMO_LAN):
            await asyncio.sleep(0.005)
        lan.others.open(Neighbour("198.18.0.44", 17, 9987, 9987, 90, "upnp", "TeamSpeak"),
                        loop.time())

    opener = asyncio.create_task(open_after_the_first_listing())
    await watch(lan.source, out, err, as_json=True, interval=0.05, listings=4)
    await opener
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(objects) == len(DEMO_LAN) + 1
    assert objects[-1]["event"] == "opened"
    assert objects[-1]["internal_client"] == "198.18.0.44"


async def test_watch_says_a_failure_once() -> None:
    out, err = io.StringIO(), io.StringIO()
    await watch(None, out, err, interval=0.01, listings=3)
    assert err.getvalue().count("does not list its mappings") == 1


async def test_secure_mode_refuses_another_hosts_delete(
        lan: Lan) -> None:
    lan.igd.configure(secure_mode=True)
    rows = await lan.source.list_mappings()
    plex = next(r for r in rows if r.external_port == 32400)
    with pytest.raises(UpnpResultError, match=r"ActionNotAuthorized \(606\)") as refused:
        await lan.source.delete_mapping(plex)
    assert refused.value.code == 606
    assert len(await lan.source.list_mappings()) == len(rows)


async def test_other_hosts_come_and_go(lan: Lan) -> None:
    lan.others.rng = random.Random(1)
    happened = [lan.others.tick(lan.now()) for _ in range(12)]
    assert any(h and " opened " in h for h in happened)
    assert any(h and " closed " in h for h in happened)
    # The starting LAN stays; at most three churning hosts at a time.
    clients = [str(r.internal_client) for r in await lan.source.list_mappings()]
    assert {h.client for h in DEMO_LAN} <= set(clients)
    assert len(clients) <= len(DEMO_LAN) + 3


async def test_after_a_restart_the_lan_maps_its_ports_again(
        lan: Lan) -> None:
    lan.gateway.restart()
    assert await lan.source.list_mappings() == []
    happened = [lan.others.tick(lan.now()) for _ in range(len(DEMO_LAN))]
    assert all(h is not None and " reopened " in h for h in happened)
    assert len(await lan.source.list_mappings()) == len(DEMO_LAN)


def test_the_router_modules_do_not_import_textual() -> None:
    check = ("import sys, engine.router_view, engine.router_source, tui.router_list\n"
             "print(','.join(m for m in sys.modules if m.startswith('textual')))")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                            text=True, check=True, timeout=60)
    assert result.stdout.strip() == ""


async def test_a_gateway_without_upnp_says_so_in_one_line() -> None:
    # A PCP-only gateway: nothing answers SSDP on its port (the free port below is closed).
    silent = UpnpRouterListing.on("127.0.0.1", ssdp_port=free_udp_port(),
                                  local_address="127.0.0.1", timeout=0.3)
    out, err = io.StringIO(), io.StringIO()
    assert await list_once(silent, out, err) == 3  # no answer: EXIT_TIMEOUT
    await silent.close()
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("natdeck: the gateway does not list its mappings: ")
    assert "only UPnP IGD can" in lines[0]
