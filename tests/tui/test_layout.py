"""How the screens fit small terminals (80x24, 60x20), driven with Pilot on a simulated
gateway on loopback: the table's columns, the detail line, the footer, the map dialog."""

from __future__ import annotations

import io
import itertools
import socket

import pytest
from rich.console import Console
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Button, Static
from textual.widgets._footer import FooterKey
from textual.widgets.data_table import ColumnKey

from engine.codes import PcpResult
from engine.events import MappingKey, MappingState
from engine.protocols import Protocol
from engine.simulator.upnp import SimulatedIgd
from tui.app import NatDeckApp
from tui.engine_link import AddMapping
from tui.map_request import MapRequest
from tui.screens import MapDialog
from tui.screens.map_dialog import VIA_NOTES
from tui.screenshots import demo_app, error_scene

from .conftest import HOST, DemoGateway, app_until, logged, mapped, started

SMALL = [(80, 24), (60, 20)]
TCP_8080 = MappingKey(Protocol.TCP, 8080)
TWO_MAPS = [MapRequest(Protocol.TCP, 8080), MapRequest(Protocol.UDP, 5000)]

#: The countdowns repaint on the app's tick (a second by default): a tenth here, so that a test
#: waiting for a repaint waits a tenth of a second, not a whole one.
TICK = 0.1
AFTER_A_TICK = 1.5 * TICK


def on_screen(widget: Widget, size: tuple[int, int]) -> bool:
    """Whether all of ``widget`` is drawn inside a terminal of ``size``."""
    region = widget.region
    return bool(region.area) and Region(0, 0, *size).contains_region(region)


async def open_dialog(pilot: object, app: NatDeckApp) -> MapDialog:
    await pilot.press("m")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    assert isinstance(app.screen, MapDialog)
    return app.screen


@pytest.mark.parametrize("size", SMALL)
async def test_every_column_shows_its_whole_content(
        demo_gateway: DemoGateway, size: tuple[int, int]) -> None:
    app = demo_gateway.app(initial_maps=TWO_MAPS, tick=TICK)
    async with app.run_test(size=size) as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, shown=True)
        await pilot.pause(AFTER_A_TICK)
        table = app.main.table
        for column in table.columns.values():
            widest = max(len(str(table.get_cell(row, column.key))) for row in table.rows)
            assert column.get_render_width(table) - 2 >= widest, column.label
        # The countdowns are never cut ("1:11:5").
        renews = str(table.get_row(str(TCP_8080))[5])
        assert renews.count(":") >= 1
        assert len(renews) >= 4
        if size == (80, 24):
            # A row of an active mapping fits 80 columns, its state included.
            assert table.virtual_size.width <= table.scrollable_content_region.width


@pytest.mark.parametrize("size", SMALL)
async def test_the_selected_row_shows_its_details(
        demo_gateway: DemoGateway, size: tuple[int, int]) -> None:
    app = demo_gateway.app(initial_maps=TWO_MAPS)
    async with app.run_test(size=size) as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, MappingKey(Protocol.UDP, 5000), shown=True)
        app.main.table.focus()
        await pilot.press("home")
        await pilot.pause()
        assert "tcp 8080 → 203.0.113.7:8080 via PCP" in app.main.detail.plain
        assert "Epoch 100000" in app.main.detail.plain
        assert "Nonce " in app.main.detail.plain
        await pilot.press("down")
        await pilot.pause()
        assert app.main.detail.plain.startswith("udp 5000")
        assert on_screen(app.main.detail, size)
        assert app.main.table.size.height >= 4, "the table keeps room for rows"


@pytest.mark.parametrize("size", SMALL)
async def test_home_and_end_move_to_the_first_and_last_row(demo_gateway: DemoGateway,
                                                         size: tuple[int, int]) -> None:
    maps = [MapRequest(Protocol.TCP, 7000 + i) for i in range(12)]
    app = demo_gateway.app(initial_maps=maps)
    async with app.run_test(size=size) as pilot:
        await started(pilot)
        keys = [MappingKey(Protocol.TCP, 7000 + i) for i in range(12)]
        await mapped(pilot, app, *keys, shown=True)
        table = app.main.table
        table.focus()
        await pilot.press("end")
        await pilot.pause()
        assert table.cursor_row == 11
        assert table.selected_key() == MappingKey(Protocol.TCP, 7011)
        assert app.main.detail.plain.startswith("tcp 7011")
        await pilot.press("home")
        await pilot.pause()
        assert table.cursor_row == 0
        assert table.scroll_y == 0


@pytest.mark.parametrize("size", SMALL)
async def test_the_footer_is_not_cut(demo_gateway: DemoGateway, size: tuple[int, int]) -> None:
    app = demo_gateway.app(demo=True)
    async with app.run_test(size=size) as pilot:
        await started(pilot)
        await pilot.pause()
        keys = list(app.main.query(FooterKey))
        shown = {key.description for key in keys}
        assert {"Map", "Unmap", "Renew", "Probe", "Help", "Quit"} <= shown
        for key in keys:
            assert key.region.right <= size[0], f"{key.description} is cut"
            assert key.region.width >= len(key.description) + 1
        # The demo keys leave a narrow footer but still work.
        assert "Restart GW" not in shown
        assert app.main.check_action("app.demo_restart", ()) is not False


@pytest.mark.parametrize("size", [(100, 30), (111, 30), (112, 30), (120, 40)])
async def test_no_footer_key_hides_another_on_a_wide_screen(demo_gateway: DemoGateway,
                                                           size: tuple[int, int]) -> None:
    # From 100 columns the footer shows the command palette's key, docked at its right end:
    # the demo's two keys (R, A) must leave room for it, or it covers Help and Quit.
    app = demo_gateway.app(demo=True)
    async with app.run_test(size=size) as pilot:
        await started(pilot)
        await pilot.pause()
        keys = list(app.main.query(FooterKey))
        assert {"Help", "Quit", "palette"} <= {key.description for key in keys}
        for key in keys:
            assert key.region.right <= size[0], f"{key.description} is cut"
        spans = sorted((key.region.x, key.region.right, key.description) for key in keys)
        for (_, right, left_key), (x, _, right_key) in itertools.pairwise(spans):
            assert right <= x, f"{right_key} covers {left_key}"


@pytest.mark.parametrize("size", SMALL)
async def test_the_map_dialog_fits_with_its_buttons(
        demo_gateway: DemoGateway, size: tuple[int, int]) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=size) as pilot:
        await started(pilot)
        dialog = await open_dialog(pilot, app)
        for button in dialog.query(Button):
            assert on_screen(button, size), f"{button.label} is off-screen"
        # Worse with every field in error: the buttons stay in view.
        await pilot.press(*"x", "tab", *"y", "tab", *"z", "enter")
        await pilot.pause()
        assert set(dialog.errors) >= {"internal_port", "external_port", "lifetime"}
        for button in dialog.query(Button):
            assert on_screen(button, size), f"{button.label} is off-screen with errors"


@pytest.mark.parametrize("field", ["protocol", "internal_port", "external_port", "lifetime",
                                   "via"])
async def test_enter_maps_from_any_field(demo_gateway: DemoGateway, field: str) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        dialog = await open_dialog(pilot, app)
        await pilot.press(*"4242")
        dialog.query_one(f"#{field}").focus()
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, MapDialog)
        await mapped(pilot, app, MappingKey(Protocol.TCP, 4242), shown=True)


async def test_the_via_note_follows_the_choice(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        dialog = await open_dialog(pilot, app)
        note = dialog.query_one("#via-note")
        assert str(note.render()) == VIA_NOTES["auto"]
        await pilot.click("#via-natpmp")
        await pilot.pause()
        assert str(note.render()) == VIA_NOTES["natpmp"]
        await pilot.click("#via-pcp")
        await pilot.pause()
        assert str(note.render()) == VIA_NOTES["pcp"]


async def test_typing_a_lifetime_replaces_the_default(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        dialog = await open_dialog(pilot, app)
        lifetime = dialog.query_one("#lifetime")
        assert lifetime.value == ""  # type: ignore[attr-defined]
        assert "7200" in lifetime.placeholder  # type: ignore[attr-defined]
        await pilot.press(*"3000", "tab", "tab", *"600", "enter")
        await mapped(pilot, app, MappingKey(Protocol.TCP, 3000), shown=True)
        assert app.manager is not None
        assert app.manager.mappings[MappingKey(Protocol.TCP, 3000)].requested_lifetime == 600


async def test_another_external_port_than_suggested_is_said(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(initial_maps=[MapRequest(Protocol.TCP, 41461)])
    async with app.run_test(size=(120, 30)) as pilot:
        await started(pilot)
        await mapped(pilot, app, MappingKey(Protocol.TCP, 41461), shown=True)
        # 41461 is taken at the gateway by the first mapping: it grants another port.
        app.send(AddMapping(MapRequest(Protocol.TCP, 5000, external_port=41461)))
        key = MappingKey(Protocol.TCP, 5000)
        await mapped(pilot, app, key, shown=True)
        assert app.manager is not None
        granted = app.manager.mappings[key].external_port
        assert granted != 41461
        said = f"gave external port {granted}, not the 41461 suggested"
        await app_until(pilot, lambda: logged(app, said), "the log line")
        await app_until(pilot, lambda: str(app.main.table.get_row(str(key))[1]).endswith(
            "(asked 41461)"), "the row")
        app.main.table.focus()
        await pilot.press("end")
        await pilot.pause()
        assert said in app.main.detail.plain


def _words(widget: Static) -> str:
    """What ``widget`` shows, as one line of words (rendered wide: no wrapping)."""
    console = Console(width=400, file=io.StringIO())
    console.print(widget.content)
    return " ".join(console.file.getvalue().split())  # type: ignore[attr-defined]


async def test_help_says_what_natdeck_does_about_a_lost_mapping(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        text = _words(app.screen.query_one("#help-states", Static))
        assert "lost" in text
        assert "natdeck asks for it again on its own" in text
        assert "nothing to do. r asks now" in text
        assert "confirming" in text
        assert "d stops that and sends the gateway a delete" in text
        assert "expired or forgotten by the gateway;" not in text


@pytest.mark.parametrize("size", SMALL)
async def test_trouble_never_pushes_the_panels_off_screen(size: tuple[int, int]) -> None:
    # The demo's error scene: a long warning in the gateway panel, a refused renewal with
    # its sentence in the detail line.
    app = demo_app(snapshot=True)
    async with app.run_test(size=size) as pilot:
        await error_scene(pilot)
        await pilot.pause(0.2)
        screen = app.main
        assert screen.max_scroll_y == 0, "the screen scrolls"
        for widget in (screen.panel, screen.table, screen.detail, screen.events,
                       screen.footer):
            assert on_screen(widget, size), f"{widget.id} is off-screen"
        assert screen.table.size.height - screen.table.header_height >= 2
        await pilot.press("q")
        await pilot.pause()


async def test_a_lost_row_says_what_is_known(demo_gateway: DemoGateway) -> None:
    # The gateway reboots (it announces it) and then answers nothing: natdeck keeps
    # asking for the mapping again, and the row must not show its old countdown.
    app = demo_gateway.app(demo_gateway.manager(timeout=1.0),
                           initial_maps=[MapRequest(Protocol.TCP, 8080)], tick=TICK)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, shown=True)
        demo_gateway.gateway.configure(force_pcp_result=PcpResult.NO_RESOURCES,
                                       force_natpmp_result=4)
        demo_gateway.gateway.restart()
        assert app.manager is not None
        await app_until(pilot, lambda: app.manager is not None
                        and app.manager.mappings[TCP_8080].state is MappingState.LOST,
                        "the mapping to be lost")
        await pilot.pause(AFTER_A_TICK)
        row = [str(cell) for cell in app.main.table.get_row(str(TCP_8080))]
        assert row[4] == "unknown"
        assert row[5] == "re-requesting" or row[5].startswith("retry ")
        assert row[6].startswith("lost")
        app.main.table.focus()
        await pilot.press("home")
        await pilot.pause()
        assert "natdeck is asking the gateway for it again" in app.main.detail.plain
        demo_gateway.gateway.configure(force_pcp_result=None, force_natpmp_result=None)


async def test_announcements_off_fits_the_gateway_panel_at_60x20(
        demo_gateway: DemoGateway) -> None:
    # Another program holds the announcement port, the gateway speaks UPnP too (an IGD
    # line) and its external address is not public (a warning): every line of the panel
    # shows at 60x20, "off" among them; the sentences are in help (?).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as owner:
        owner.bind((HOST, 0))
        taken = owner.getsockname()[1]
        async with SimulatedIgd(HOST, gateway=demo_gateway.gateway) as igd:
            manager = demo_gateway.manager(announce_ports=(taken,), ssdp_port=igd.ssdp_port)
            app = demo_gateway.app(manager, initial_maps=TWO_MAPS)
            async with app.run_test(size=(60, 20)) as pilot:
                await started(pilot)
                await app_until(pilot, lambda: manager.status.igd is not None, "the IGD")
                await mapped(pilot, app, TCP_8080, shown=True)
                await pilot.pause(0.2)
                panel = app.main.panel
                assert manager.status.listen_error is not None
                assert manager.status.warning is not None
                assert "Announcements off (? says why)" in panel.plain
                assert "natdeck simulated router" in panel.plain
                rows = panel.get_content_height(panel.size, app.size, panel.size.width)
                assert rows <= panel.size.height, f"{rows} rows in a panel of {panel.size}"
                assert app.main.max_scroll_y == 0, "the screen scrolls"
                await pilot.press("question_mark")
                await pilot.pause()
                text = _words(app.screen.query_one("#help-notes", Static))
                assert text.startswith("Announcements off: cannot listen")
                assert f"cannot listen on {HOST} port {taken}: Address already in use" in text
                assert "Warning: external address 203.0.113.7 is not public:" in text
                await pilot.press("escape")
                await pilot.pause()


async def test_a_failing_row_fits_80_columns_and_its_reason_is_below() -> None:
    # The demo's error scene: a renewal refused with NOT_AUTHORIZED. At 80 columns the State
    # cell says "failed" whole (it was cut: "failed: NOT_AUTH"), the detail line says why;
    # with room (120 columns) the cell has the reason again.
    app = demo_app(snapshot=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await error_scene(pilot)
        await pilot.pause(0.2)
        table = app.main.table
        failing = str(MappingKey(Protocol.UDP, 51820))

        def state() -> str:
            return str(table.get_row(failing)[6])

        def fits() -> bool:
            column = table.columns[ColumnKey("state")]
            return (column.get_render_width(table) - 2 >= len(state())
                    and table.virtual_size.width <= table.scrollable_content_region.width)

        assert state() == "failed"
        assert fits()
        assert "NOT_AUTHORIZED" in app.main.detail.plain
        await pilot.resize_terminal(120, 40)
        await app_until(pilot, lambda: state() == "failed: NOT_AUTHORIZED for 30m00s",
                        "the reason in the row")
        await pilot.pause()
        assert fits()
        await pilot.resize_terminal(80, 24)
        await app_until(pilot, lambda: state() == "failed", "the state in a word")
        await pilot.pause()
        assert fits(), "the State column did not narrow again"
        await pilot.press("q")
        await pilot.pause()


async def test_an_address_change_never_makes_the_table_scroll_sideways_at_80x24(
        demo_gateway: DemoGateway) -> None:
    """Review defect 3: after A, "confirming…", "ask 0:03" and the longer new address
    widened columns that never narrowed again: the table scrolled sideways for good."""
    maps = [*TWO_MAPS, MapRequest(Protocol.TCP, 25565)]
    app = demo_gateway.app(demo=True, initial_maps=maps, tick=TICK)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, MappingKey(Protocol.TCP, 25565), shown=True)
        table = app.main.table
        external = table.column_keys.index("external")

        def fits() -> bool:
            return (not table.show_horizontal_scrollbar
                    and table.virtual_size.width <= table.scrollable_content_region.width)

        def confirming() -> bool:
            return any(cells[6][0] == "confirming…" for cells in table.shown_cells.values())

        def settled() -> bool:
            return (not confirming() and all(
                "198.51.100.23" in cells[external][0] for cells in table.shown_cells.values()))

        await pilot.press("A")
        await app_until(pilot, confirming, "a row confirming")
        await pilot.pause()
        assert fits(), {k: table.column_width(k) for k in table.column_keys}
        await app_until(pilot, settled, "every row confirmed on the new address", 15.0)
        await pilot.pause(AFTER_A_TICK)
        assert fits(), {k: table.column_width(k) for k in table.column_keys}
        # The columns narrowed again, and the new addresses are shown whole.
        assert not any(cells[external][0].endswith("…") for cells in table.shown_cells.values())
        assert table.column_width("state") == len("active")
        assert len(table.rows) == 3
        assert table.size.height - table.header_height >= 3, "a row is hidden"
        await pilot.press("q")
        await pilot.pause()
