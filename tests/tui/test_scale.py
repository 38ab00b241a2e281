"""The mappings table with 1,000 rows: a tick stays cheap and never rebuilds the table."""

from __future__ import annotations

import time
from ipaddress import IPv4Address

from textual.app import App, ComposeResult
from textual.coordinate import Coordinate
from textual.pilot import Pilot

from engine.events import ManagedMapping, MappingKey, MappingState
from engine.protocols import Protocol
from tui.map_request import MapRequest
from tui.presentation import mapping_cells
from tui.widgets import MappingsTable
from tui.widgets.keyed_table import MARGIN

from .conftest import DemoGateway, app_until, started

ROWS = 1000
#: A tick with 1,000 rows must leave most of the second to the user (measured: ~6 ms).
TICK_BUDGET = 0.25


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield MappingsTable(id="mappings")


def thousand_mappings() -> dict[MappingKey, ManagedMapping]:
    mappings = {}
    for i in range(ROWS):
        key = MappingKey(Protocol.UDP if i % 2 else Protocol.TCP, 20000 + i)
        mappings[key] = ManagedMapping(
            key=key, protocol=Protocol(key.protocol), internal_port=key.internal_port,
            state=MappingState.ACTIVE, requested_lifetime=7200, via="pcp",
            external_port=key.internal_port, external_address=IPv4Address("203.0.113.7"),
            lifetime=7200, granted_at=0.0, expires_at=7200.0 + i, next_renewal_at=3600.0 + i)
    return mappings


async def synced(app: TableApp, pilot: Pilot[None],
                 mappings: dict[MappingKey, ManagedMapping]) -> MappingsTable:
    """The app's table, showing ``mappings`` at time 0, painted."""
    table = app.query_one(MappingsTable)
    with app.batch_update():
        table.sync(mappings, 0.0)
    await pilot.pause()
    return table


def shown_cells(table: MappingsTable, key: MappingKey) -> tuple[str, ...]:
    return tuple(str(cell) for cell in table.get_row(str(key)))


async def test_a_tick_with_a_thousand_rows_updates_in_place() -> None:
    app = TableApp()
    mappings = thousand_mappings()
    async with app.run_test(size=(120, 40)) as pilot:
        table = await synced(app, pilot, mappings)
        assert table.row_count == ROWS
        table.focus()
        table.cursor_coordinate = Coordinate(500, 0)
        await pilot.pause()
        selected = table.selected_key()
        scroll = table.scroll_y
        row_keys = [row.key for row in table.ordered_rows]
        added, removed, updates = table.rows_added, table.rows_removed, table.cell_updates

        started_at = time.perf_counter()
        with app.batch_update():
            table.sync(mappings, 1.0)
        took = time.perf_counter() - started_at
        await pilot.pause()

        assert took < TICK_BUDGET, f"a tick with {ROWS} rows took {took * 1000:.0f} ms"
        # Nothing was rebuilt: same rows, same order, same cursor, same scroll position.
        assert (table.rows_added, table.rows_removed) == (added, removed)
        assert [row.key for row in table.ordered_rows] == row_keys
        assert table.cursor_row == 500
        assert table.selected_key() == selected
        assert table.scroll_y == scroll
        # Only the two countdown cells of the rows in view (and a margin) were touched.
        in_view = table.size.height - table.header_height + 2 * MARGIN
        assert 0 < table.cell_updates - updates <= 2 * in_view
        assert shown_cells(table, selected) == tuple(  # type: ignore[arg-type]
            text for text, _ in mapping_cells(mappings[selected], 1.0))  # type: ignore[index]


async def test_rows_scrolled_into_view_are_up_to_date() -> None:
    app = TableApp()
    mappings = thousand_mappings()
    async with app.run_test(size=(120, 30)) as pilot:
        table = await synced(app, pilot, mappings)
        with app.batch_update():
            table.sync(mappings, 30.0)
        last = list(mappings)[-1]
        # Off screen, the last row still shows what it showed at first...
        assert shown_cells(table, last)[4] == "2:16:39"
        table.scroll_end(animate=False)
        # ...and is brought up to date as it comes into view.
        await app_until(pilot, lambda: shown_cells(table, last)[4] == "2:16:09",
                        "the last row brought up to date", timeout=5)
        assert shown_cells(table, last) == tuple(
            text for text, _ in mapping_cells(mappings[last], 30.0))


async def test_an_event_updates_its_row_wherever_it_is() -> None:
    app = TableApp()
    mappings = thousand_mappings()
    async with app.run_test(size=(120, 30)) as pilot:
        table = await synced(app, pilot, mappings)
        last = list(mappings)[-1]
        mappings[last].state = MappingState.LOST
        mappings[last].reason = "the gateway lost its state"
        table.show_mapping(last, mappings[last], 0.0)
        assert shown_cells(table, last)[-1] == "lost: the gateway lost its state"
        del mappings[last]
        with app.batch_update():
            table.sync(mappings, 1.0)
        assert table.row_count == ROWS - 1
        assert last not in table.shown_keys


async def test_the_app_keeps_up_with_a_thousand_real_mappings(demo_gateway: DemoGateway) -> None:
    requests = [MapRequest(Protocol.TCP, 30000 + i) for i in range(ROWS)]
    app = demo_gateway.app(demo_gateway.manager(timeout=30.0, probe_on_start=False),
                           initial_maps=requests)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, probed=False)
        await app_until(pilot, lambda: app.manager is not None
                        and sum(m.state is MappingState.ACTIVE
                            for m in app.manager.mappings.values()) == ROWS,
                        "1,000 mappings", timeout=60)
        await pilot.pause(1.1)
        table = app.main.table
        assert table.row_count == ROWS
        row_keys = [row.key for row in table.ordered_rows]
        added = table.rows_added
        started_at = time.perf_counter()
        app.refresh_view()
        took = time.perf_counter() - started_at
        assert took < TICK_BUDGET, f"a tick with {ROWS} mappings took {took * 1000:.0f} ms"
        assert [row.key for row in table.ordered_rows] == row_keys
        assert table.rows_added == added
        assert len(demo_gateway.gateway.mappings) == ROWS


async def test_a_tick_repaints_only_the_cells_that_changed() -> None:
    app = TableApp()
    mappings = thousand_mappings()
    async with app.run_test(size=(120, 30)) as pilot:
        table = await synced(app, pilot, mappings)
        # Painted once with the columns measured (adding rows measures them after a frame).
        table.refresh()
        await pilot.pause()
        cache = table._cell_render_cache
        painted = {key: cache.get(key) for key in cache.keys()}  # noqa: SIM118 (not a dict)
        with app.batch_update():
            table.sync(mappings, 1.0)
        await pilot.pause()
        new = [key for key in cache.keys()  # noqa: SIM118 (an LRUCache, not a dict)
               if painted.get(key) is not cache.get(key)]
        # Both countdowns of every row in view changed, and nothing else: the other cells
        # of those rows are painted from the cache, the rows out of view not at all.
        rows_in_view = table.size.height - table.header_height
        assert {key[1].value for key in new} == {"expires", "renewal"}
        assert len({key[0] for key in new}) <= rows_in_view
        # What is painted is what was set.
        first = next(iter(mappings))
        line = table.render_line(table.header_height).text
        assert "1:59:59" in line
        assert mapping_cells(mappings[first], 1.0)[5][0] in line
