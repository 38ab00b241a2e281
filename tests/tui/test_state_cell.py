"""The State cell of the mappings table is bounded at every width: from 100 columns on it
has the reason, cut to the room the other columns leave (with an ellipsis); the event log
keeps the whole sentence. Pilot, simulated gateway on loopback, and a snapshot at 100x30."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rich.cells import cell_len
from textual.pilot import Pilot
from textual.widgets.data_table import ColumnKey

from engine.events import MappingKey, MappingState
from engine.protocols import Protocol
from engine.upnp.errors import UpnpReplyError
from tui.app import NatDeckApp
from tui.demo import DEMO_MAPS
from tui.engine_link import AddMapping
from tui.map_request import MapRequest
from tui.screenshots import demo_app, main_scene

from .conftest import DemoGateway, app_until, logged, mapped, started
from .test_snapshots import frozen

TCP_8080 = MappingKey(Protocol.TCP, 8080)
TWO_MAPS = [MapRequest(Protocol.TCP, 8080), MapRequest(Protocol.UDP, 5000)]


def long_error(request: str) -> UpnpReplyError:
    """A gateway's error message of more than 200 characters, about ``request``."""
    return UpnpReplyError(
        f"{request}: the IGD at http://127.0.0.1:5000/ctl/IPConn answered something that is "
        "not a valid reply: its AddPortMapping response names a control URL on another host "
        "(http://198.51.100.23:49000/upnp/control/WANIPConn1), which natdeck does not follow")


@pytest.mark.parametrize("size", [(120, 40), (100, 30)])
async def test_a_long_reason_is_cut_to_the_state_column_and_said_whole_below(
        demo_gateway: DemoGateway, size: tuple[int, int]) -> None:
    error = long_error(f"renew {TCP_8080}")
    assert len(str(error)) > 200
    app = demo_gateway.app(initial_maps=TWO_MAPS, tick=0.1)
    async with app.run_test(size=size) as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, MappingKey(Protocol.UDP, 5000), shown=True)
        manager = app.manager
        assert manager is not None
        # The engine's own path for a renewal the gateway answered with nonsense.
        manager.table.failed(manager.table.entries[TCP_8080], error, renewal=True,
                             recovering=False)
        table = app.main.table

        def state() -> str:
            return str(table.get_row(str(TCP_8080))[6])

        def fits() -> bool:
            column = table.columns[ColumnKey("state")]
            return (cell_len(state()) <= column.get_render_width(table) - 2
                    and table.virtual_size.width <= table.scrollable_content_region.width)

        await app_until(pilot, lambda: state().startswith(
            ("renewing (1 failed): renew", "failed: renew")), "the reason in the row")
        await pilot.pause(0.2)
        assert manager.mappings[TCP_8080].state in (MappingState.RENEWING, MappingState.FAILED)
        assert state().endswith("…")
        assert fits()
        # Resized to the other width and back: cut again to the room there, never wider.
        other = (100, 30) if size == (120, 40) else (120, 40)
        shown = state()
        await pilot.resize_terminal(*other)
        await app_until(pilot, lambda: state() != shown, "the cell cut to the new room")
        await pilot.pause()
        assert fits()
        assert (len(state()) < len(shown)) == (other < size)
        await pilot.resize_terminal(*size)
        await app_until(pilot, lambda: state() == shown, "the cell as it was")
        await pilot.pause()
        assert fits()
        # The rest is where it was: the event log has the whole sentence, the detail line
        # what the request met in short and what natdeck does about it.
        assert logged(app, str(error))
        table.focus()
        await pilot.press("home")
        await pilot.pause()
        detail = app.main.detail.plain
        assert "Since then: renew tcp/8080: the IGD at" in detail
        assert "1 renewal(s) failed" in detail or "Failed" in detail


async def test_a_wider_column_leaves_the_state_less_room(demo_gateway: DemoGateway) -> None:
    # At 100 columns the failing row's State cell has what the other columns leave; a new
    # row with a wider External cell ("(asked 8080)") widens that column, and the cell is
    # cut again so that every row still fits.
    app = demo_gateway.app(initial_maps=[MapRequest(Protocol.TCP, 8080)], tick=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, shown=True)
        manager = app.manager
        assert manager is not None
        manager.table.failed(manager.table.entries[TCP_8080],
                             long_error(f"renew {TCP_8080}"), renewal=True, recovering=False)
        table = app.main.table

        def state() -> str:
            return str(table.get_row(str(TCP_8080))[6])

        await app_until(pilot, lambda: state().startswith("renewing (1 failed): renew"),
                        "the reason in the row")
        await pilot.pause(0.2)
        before = state()
        # 8080 is taken at the gateway by the first mapping: it grants another port.
        app.send(AddMapping(MapRequest(Protocol.TCP, 5000, external_port=8080)))
        key = MappingKey(Protocol.TCP, 5000)
        await mapped(pilot, app, key, shown=True)
        await app_until(pilot, lambda: str(table.get_row(str(key))[1]).endswith(
            "(asked 8080)"), "the wider External cell")
        await app_until(pilot, lambda: len(state()) < len(before), "the State cell cut again")
        await pilot.pause(0.2)
        assert state().endswith("…")
        assert table.virtual_size.width <= table.scrollable_content_region.width, \
            "the rows do not fit the table"


async def long_reason_scene(pilot: Pilot[int]) -> None:
    """The demo's three mappings; the selected one's renewal met a long gateway error."""
    await main_scene(pilot)
    app = pilot.app
    assert isinstance(app, NatDeckApp)
    assert app.manager is not None
    selected = DEMO_MAPS[1]
    key = MappingKey(selected.protocol, selected.internal_port)
    app.manager.table.failed(app.manager.table.entries[key],
                             long_error(f"renew {key}"), renewal=True, recovering=False)
    await pilot.pause()


def test_a_long_reason_at_100x30(snap_compare: Callable[..., bool]) -> None:
    # The row fits: its State cell ends in an ellipsis where the table ends.
    assert snap_compare(demo_app(snapshot=True), terminal_size=(100, 30),
                        run_before=frozen(long_reason_scene))
