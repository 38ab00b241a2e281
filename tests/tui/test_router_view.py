"""The router view (g), driven with Pilot: the real UPnP listing of the demo's simulated
gateway (its IGD on loopback shares the PCP/NAT-PMP table), and a test double where an edge
case needs one."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_address
from typing import Any

import pytest
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from engine.errors import NatDeckError
from engine.events import MappingKey, MappingState
from engine.protocols import Protocol
from engine.router_source import UpnpRouterListing
from engine.router_view import RouterMapping
from engine.simulator import Mapping
from engine.simulator.upnp import Neighbour
from tests.support.loopback import free_udp_port
from tui.app import NatDeckApp
from tui.backend import EngineParts
from tui.demo import DemoOptions, SimulatorControls, demo_engine
from tui.engine_link import AddMapping, RemoveMapping
from tui.map_request import MapRequest
from tui.router_presentation import router_cells
from tui.screens import HelpScreen
from tui.screens.confirm_delete import ConfirmDelete
from tui.screens.router import RouterScreen
from tui.widgets.router_table import row_key

from .conftest import HOST, DemoGateway, app_until, logged

TCP_8080 = MappingKey(Protocol.TCP, 8080)
PLEX = (6, 32400, "")


def demo(**changes: Any) -> NatDeckApp:
    options = DemoOptions(seed=7, timeout=5.0, probe_on_start=False, churn_every=None,
                          **changes)
    return NatDeckApp(engine=lambda: demo_engine(options), demo=True,
                      initial_maps=[MapRequest(Protocol.TCP, 8080)])


def parts(app: NatDeckApp) -> EngineParts:
    assert app.link.parts is not None
    return app.link.parts


def listing_of(app: NatDeckApp) -> SimulatorControls:
    """The demo's simulated LAN: its gateway, its IGD (which the view lists), other hosts."""
    controls = parts(app).demo
    assert isinstance(controls, SimulatorControls)
    assert controls.others is not None
    assert controls.igd is not None
    return controls


def listings(app: NatDeckApp) -> int:
    """How many listings the IGD answered (each reads TCP, then UDP)."""
    igd = listing_of(app).igd
    assert igd is not None
    return igd.actions["GetListOfPortMappings"] // 2


async def tcp_8080_mapped(pilot: Pilot[int], app: NatDeckApp) -> None:
    def active() -> bool:
        m = app.manager.mappings.get(TCP_8080) if app.manager is not None else None
        return m is not None and m.state is MappingState.ACTIVE

    await app_until(pilot, active, "natdeck's mapping")


async def open_router(pilot: Pilot[int], app: NatDeckApp) -> RouterScreen:
    """Start, wait for natdeck's mapping, press g, wait for the first listing."""
    await tcp_8080_mapped(pilot, app)
    await pilot.press("g")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, RouterScreen)
    await app_until(pilot, lambda: screen.listed and screen.table.row_count > 0, "the listing")
    return screen


def ports(screen: RouterScreen) -> list[tuple[str, int]]:
    return [(str(e.mapping.internal_client), e.mapping.external_port)
            for e in screen.table.shown]


async def test_g_lists_every_host_and_marks_ours() -> None:
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_router(pilot, app)
        assert str(screen.model.summary()) == "8 mappings, 6 hosts, 1 of ours"
        by_key = {e.key: e for e in screen.table.shown}
        ours = by_key[(6, 8080, "")]
        assert ours.ours == TCP_8080
        assert ours.mapping.made_by == "pcp"
        assert ours.mapping.description.startswith("PCP MAP ")
        assert by_key[(17, 41641, "")].who == "another host via PCP"
        assert by_key[(6, 22000, "")].mapping.description == "NAT-PMP 22000 tcp"
        assert by_key[(17, 3074, "")].mapping.lease_remaining is None  # permanent
        # Sorted by host: numerically, 127.0.0.1 first, .7 before .12.
        assert [c for c, _ in ports(screen)][:4] == ["127.0.0.1", "198.18.0.3", "198.18.0.3",
                                                     "198.18.0.7"]
        status = screen.status_line.render()
        assert "8 mappings, 6 hosts, 1 of ours" in str(status)
        # The first listing is the baseline: nothing is logged as opened.
        assert not logged(app, "opened")


async def test_the_demo_lan_is_alive() -> None:
    # Other hosts open and close mappings on their own; the open view shows and logs it.
    options = DemoOptions(seed=3, timeout=5.0, probe_on_start=False, churn_every=0.05)
    app = NatDeckApp(engine=lambda: demo_engine(options), demo=True,
                     initial_maps=[MapRequest(Protocol.TCP, 8080)])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_router(pilot, app)
        screen.poller.interval = 0.05
        screen.poller.wake()
        await app_until(pilot, lambda: logged(app, " opened ") and logged(app, " closed "),
                        "hosts coming and going")


async def test_new_and_vanished_entries_are_highlighted_and_logged() -> None:
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_router(pilot, app)
        listing = listing_of(app)
        newcomer = Neighbour("198.18.0.44", 17, 9987, 9987, 90, "upnp", "TeamSpeak")
        assert listing.others is not None
        assert listing.others.open(newcomer, asyncio.get_running_loop().time())
        await pilot.press("r")
        key = (17, 9987, "")
        await app_until(pilot, lambda: key in {e.key for e in screen.table.shown}, "the new row")
        row = screen.table.get_row(row_key(key))
        assert "bold green" in str(row[0].style)
        await app_until(pilot, lambda: logged(app, "198.18.0.44 opened udp 9987 via UPnP"),
                        "the log line")
        # The highlight fades.
        app.clock = lambda: asyncio.get_running_loop().time() + 10.0
        screen.repaint()
        assert "green" not in str(screen.table.get_row(row_key(key))[0].style)
        app.clock = None
        gateway = listing.gateway
        for m in gateway.core.state.select(lambda m: m.external_port == 9987):
            gateway.core.state.remove(m.key)
        await pilot.press("r")
        await app_until(pilot, lambda: logged(app, "198.18.0.44 closed udp 9987 (UPnP)"),
                        "the close")
        vanished = {e.key: e for e in screen.table.shown}[key]
        assert vanished.gone_at is not None
        assert "strike" in str(screen.table.get_row(row_key(key))[0].style)


async def test_help_lists_the_router_keys() -> None:
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_router(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        keys = {description: key for key, description, _ in help_screen._keys}
        assert keys["Back"] == "esc / g"
        assert keys["Delete"] == "d"
        assert keys["Filter"] == "/"
        # Only the view's own keys: not Screen's generic tab / shift+tab / ctrl+c.
        assert list(keys) == ["Back", "Sort", "Reverse", "Filter", "Delete", "Refresh", "Help",
                              "Quit"]
        # What the view shows, not the main screen's About and mapping states.
        shown = " ".join(str(w.render()) for w in help_screen.query(Static))
        assert "every mapping the gateway holds, whoever made it" in shown
        assert "Reading the table" in shown
        assert "Mapping states" not in shown
        assert "renewals at 1/2-5/8" not in shown
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RouterScreen)


async def test_sort_and_filter_keys() -> None:
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_router(pilot, app)
        await pilot.press("s")  # protocol
        assert screen.sort_by == "protocol"
        protocols = [e.mapping.protocol for e in screen.table.shown]
        assert protocols == sorted(protocols)
        await pilot.press("s")  # port
        assert [p for _, p in ports(screen)] == sorted(p for _, p in ports(screen))
        await pilot.press("S")
        assert [p for _, p in ports(screen)] == sorted((p for _, p in ports(screen)),
                                                       reverse=True)
        await pilot.press("slash", *"host:198.18.0.7", "enter")
        await pilot.pause()
        assert ports(screen) == [("198.18.0.7", 3074), ("198.18.0.7", 3074)]
        assert screen.table.has_focus
        assert "2 shown" in str(screen.status_line.render())
        await pilot.press("slash", "ctrl+u", *"tcp ours", "enter")
        await pilot.pause()
        assert ports(screen) == [("127.0.0.1", 8080)]
        await pilot.press("slash", "ctrl+u", *"by:nonsense")
        await pilot.pause()
        assert screen.filter_input.has_class("-invalid")
        await pilot.press("ctrl+u", "enter")
        await pilot.pause()
        assert not screen.filter_input.has_class("-invalid")
        assert len(ports(screen)) == 8


def select(screen: RouterScreen, key: tuple[int, int, str]) -> None:
    screen.table.move_cursor(row=screen.table.get_row_index(row_key(key)))


async def test_delete_asks_first_and_names_host_and_port() -> None:
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_router(pilot, app)
        gateway = listing_of(app).gateway

        def plex_at_gateway() -> bool:
            return any(m.external_port == 32400 for m in gateway.mappings)

        select(screen, PLEX)
        await pilot.press("d")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmDelete)
        assert dialog.question.startswith("Delete tcp 32400 of host 198.18.0.12 "
                                          "(to 198.18.0.12:32400")
        await pilot.press("enter")  # the focused button is "Keep it"
        await pilot.pause()
        assert app.screen is screen
        assert plex_at_gateway()
        assert listing_of(app).igd.actions["DeletePortMapping"] == 0  # type: ignore[union-attr]
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await app_until(pilot, lambda: not plex_at_gateway(), "the delete")
        await app_until(pilot, lambda: logged(app, "deleted tcp 32400 of 198.18.0.12: the gateway "
                                               "said OK"), "the answer in the log")
        assert "Gateway's answer: deleted tcp 32400" in str(screen.status_line.render())


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (120, 40)])
async def test_no_footer_key_hides_another(size: tuple[int, int]) -> None:
    # The command palette's key is docked at the footer's right end: at 80 columns it covered
    # Quit. As on the main screen, it is shown from 100 columns on.
    app = demo()
    async with app.run_test(size=size) as pilot:
        screen = await open_router(pilot, app)
        keys = list(screen.query(FooterKey))
        assert {"Back", "Delete", "Help", "Quit"} <= {key.description for key in keys}
        spans = sorted((key.region.x, key.region.right, key.description) for key in keys)
        for _, right, description in spans:
            assert right <= size[0], f"{description} is cut"
        for (_, right, left_key), (x, _, right_key) in itertools.pairwise(spans):
            assert right <= x, f"{right_key} covers {left_key}"


@pytest.mark.parametrize(("size", "whole"), [((80, 24), False), ((120, 30), True)],
                         ids=["80x24", "120x30"])
async def test_a_refused_delete_is_shown_and_nothing_breaks(size: tuple[int, int],
                                                            whole: bool) -> None:
    app = demo(secure_mode=True)
    async with app.run_test(size=size, notifications=True) as pilot:
        screen = await open_router(pilot, app)
        select(screen, PLEX)
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await app_until(pilot, lambda: logged(app, "could not delete tcp 32400 of 198.18.0.12"),
                        "the refusal in the log")
        assert "ActionNotAuthorized (606)" in str(screen.status_line.render())
        # The toast, as the main screen's: below 100 columns the code only (the sentence
        # covered the table), the line above the table and the log keep the sentence.
        [toast] = [n for n in app._notifications if n.title == "The gateway refused"]
        if whole:
            assert "ActionNotAuthorized (606)" in toast.message
            assert "refused DeletePortMapping" in toast.message
        else:
            assert toast.message == "ActionNotAuthorized"
        assert any(m.external_port == 32400 for m in listing_of(app).gateway.mappings)
        await pilot.press("r")
        await pilot.pause()
        assert app.is_running
        assert PLEX in screen.model.entries


async def test_ours_cannot_be_deleted_here_and_enter_shows_it_in_the_main_table() -> None:
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        await app_until(pilot, lambda: app.engine_started, "the engine")
        app.send(AddMapping(MapRequest(Protocol.UDP, 5000)))
        screen = await open_router(pilot, app)
        await app_until(pilot, lambda: screen.model.summary().ours == 2, "both of ours")
        select(screen, (6, 8080, ""))
        await pilot.press("d")
        await pilot.pause()
        assert app.screen is screen  # no confirmation: natdeck's own are unmapped with d there
        assert any(m.external_port == 8080 for m in listing_of(app).gateway.mappings)
        select(screen, (17, 5000, ""))
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.id == "main"
        assert app.main.table.selected_key() == MappingKey(Protocol.UDP, 5000)


async def test_natdecks_own_comings_and_goings_are_not_logged_twice() -> None:
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_router(pilot, app)
        app.send(RemoveMapping(TCP_8080))
        await app_until(pilot, lambda: logged(app, "removed tcp/8080"), "the unmap")
        await pilot.press("r")
        await app_until(pilot, lambda: (6, 8080, "") not in screen.model.entries, "the listing")
        await pilot.pause(0.2)
        assert not logged(app, "127.0.0.1 closed")
        app.send(AddMapping(MapRequest(Protocol.TCP, 8080)))
        await tcp_8080_mapped(pilot, app)
        await pilot.press("r")
        await app_until(pilot, lambda: (6, 8080, "") in screen.model.entries, "the listing")
        await pilot.pause(0.2)
        assert not logged(app, "127.0.0.1 opened")


async def test_leaving_the_view_stops_the_listing() -> None:
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_router(pilot, app)
        screen.poller.interval = 0.05
        screen.poller.wake()  # start the short interval now, not after the default one
        before = listings(app)
        await app_until(pilot, lambda: listings(app) >= before + 2, "more listings")
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.screen is app.main
        stopped = listings(app)
        await pilot.pause(0.3)
        assert listings(app) == stopped


def app_with_router(demo_gateway: DemoGateway, upnp: bool) -> NatDeckApp:
    """The app on the simulated PCP/NAT-PMP gateway, without a listing (``upnp`` False) or
    with the real UPnP source, to which no IGD answers there."""
    source = UpnpRouterListing.on(HOST, ssdp_port=free_udp_port(), local_address=HOST,
                                  timeout=0.2) if upnp else None

    @asynccontextmanager
    async def engine() -> AsyncIterator[EngineParts]:
        yield EngineParts(demo_gateway.manager(), router=source)
        if source is not None:
            await source.close()

    return NatDeckApp(engine=engine, initial_maps=[MapRequest(Protocol.TCP, 8080)])


@pytest.mark.parametrize("upnp", [False, True], ids=["no-source", "no-igd-answers"])
async def test_without_a_listing_it_says_so_and_shows_ours(
        demo_gateway: DemoGateway, upnp: bool) -> None:
    app = app_with_router(demo_gateway, upnp)
    async with app.run_test(size=(80, 24)) as pilot:
        await tcp_8080_mapped(pilot, app)
        await pilot.press("g")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RouterScreen)
        await app_until(pilot, lambda: screen.unavailable is not None, "the verdict")
        await pilot.pause()
        status = str(screen.status_line.render())
        assert "does not list its mappings" in status
        assert "Showing natdeck's own mappings" in status
        assert ports(screen) == [("127.0.0.1", 8080)]
        assert screen.table.shown[0].ours == TCP_8080
        await pilot.press("d")
        await pilot.pause()
        assert app.screen is screen


class ThousandRows:
    """A test double: a LAN of 1,000 mappings whose listing takes ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.listings = 0
        self.rows = [RouterMapping(6 if i % 2 else 17, 10000 + i,
                                   ip_address(f"198.18.{i // 250}.{i % 250}"),
                                   10000 + i, f"app {i}", 600 + i, True, "", "upnp")
                     for i in range(1000)]

    async def list_mappings(self) -> list[RouterMapping]:
        self.listings += 1
        if self.listings > 1:
            await asyncio.sleep(self.delay)
        return list(self.rows)

    async def delete_mapping(self, mapping: RouterMapping) -> None:
        raise NatDeckError("not here")


async def test_a_thousand_entries_stay_responsive(demo_gateway: DemoGateway) -> None:
    source = ThousandRows(delay=3.0)
    app = demo_gateway.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await app_until(pilot, lambda: app.engine_started, "the engine")
        screen = RouterScreen(source, manager=lambda: app.manager, clock=app.now,
                              log=app.log_line, interval=0.05)
        await app.push_screen(screen)
        await app_until(pilot, lambda: screen.table.row_count == 1000, "1,000 rows")
        # A tick (every countdown on screen) costs a few rows, not a thousand.
        started = time.perf_counter()
        updates = screen.table.cell_updates
        app.clock = lambda: asyncio.get_running_loop().time() + 5.0
        screen.repaint()
        took = time.perf_counter() - started
        assert took < 0.25, f"a tick over 1,000 entries took {took * 1000:.0f} ms"
        assert screen.table.cell_updates - updates < 60
        app.clock = None
        # The second listing hangs for 3 s: keys still work at once.
        await app_until(pilot, lambda: source.listings >= 2, "the second listing")
        started = time.perf_counter()
        await pilot.press("s", "s", "s")  # lease
        await pilot.pause()
        assert screen.sort_by == "lease"
        took = time.perf_counter() - started
        assert took < 2.0, f"three keys took {took:.2f} s while a listing hung"
        assert source.listings == 2, "the hanging listing was not waited out"
        leases = [e.mapping.lease_remaining for e in screen.table.shown[:5]]
        assert leases == [600, 601, 602, 603, 604]
        await pilot.press("escape")


async def test_what_is_painted_is_what_was_set_after_a_reorder() -> None:
    # The router table repaints only the cells it sets (KeyedTable.set_cell drops one row's
    # caches); after rows moved, a tick must still paint each row's own new lease.
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_router(pilot, app)
        await pilot.press("s")  # by protocol: the rows move
        await pilot.pause()
        table = screen.table
        assert table.sorts >= 1
        updates = table.cell_updates
        app.clock = lambda: asyncio.get_running_loop().time() + 30.0
        screen.repaint()
        await pilot.pause()
        assert table.cell_updates > updates
        painted = [strip.text for strip in table.render_lines(
            Region(0, 0, table.size.width, table.size.height))]
        now = app.now()
        checked = 0
        for entry in table.shown:
            cells = [text for text, _ in router_cells(entry, now)]
            lines = [line for line in painted
                     if f" {cells[0]} " in line and f" {cells[2]} " in line]
            assert len(lines) == 1, (cells, painted)
            assert f" {cells[3]} " in lines[0], (cells, lines[0])
            checked += 1
        assert checked == 8
        app.clock = None


async def test_entries_the_gateway_listed_but_could_not_be_read_are_counted() -> None:
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_router(pilot, app)
        assert "could not be read" not in str(screen.status_line.render())
        # An entry no UPnP client can read (internal port past 65535) joins the table.
        state = listing_of(app).gateway.core.state
        now = asyncio.get_running_loop().time()
        client = ip_address("198.18.0.40")
        state.put(Mapping(client, 6, 70000, 40000, 600, now + 600, "upnp",
                          requested_by=client))
        await pilot.press("r")
        await app_until(pilot, lambda: screen.skipped == 1, "the count")
        assert "1 entry the gateway listed could not be read" in str(
            screen.status_line.render())
        assert str(screen.model.summary()) == "8 mappings, 6 hosts, 1 of ours"
