"""The mappings table: one row per managed mapping, updated in place every second.

Rows are keyed by :class:`~engine.events.MappingKey` and never rebuilt: a tick
computes each row's cells (:func:`tui.presentation.mapping_cells`), compares
them with what is shown, and calls ``update_cell`` only for the cells that
changed, so the cursor and the scroll position stay where the user left them
(the recipe of Dolphie's process list).

The countdowns change every second in every row, so a tick refreshes only the
rows on screen (and a few around them); a row scrolled into view is brought
up to date before it is painted, and a row whose mapping had an event is
updated at once wherever it is. A tick therefore costs the same with 10 rows
as with 10,000. A changed cell is set with :meth:`KeyedTable.set_cell`, which
repaints its row and nothing else. Columns are sized to their content: they
widen only when a longer value arrives (and never shrink), which keeps
measuring cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.widgets.data_table import RowDoesNotExist

from engine.events import ManagedMapping, MappingKey

from ..mapping_detail import Asked
from ..presentation import MAPPING_COLUMNS, Cells, mapping_cells
from .keyed_table import KeyedTable

__all__ = ["MappingsTable"]

#: Rows refreshed above and below the visible ones, so a small scroll shows fresh values.
MARGIN = 5

_COLUMN_KEYS = tuple(key for key, _, _ in MAPPING_COLUMNS)


def _row_key(key: MappingKey) -> str:
    return str(key)


class MappingsTable(KeyedTable[Text]):
    """The managed mappings, one row each, keyed by mapping key.

    ``asked`` holds what this session knows of each mapping beyond the engine's view
    (the external port it suggested); the app fills it, the table reads it.
    """

    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, *, clock: Callable[[], float] | None = None,
                 asked: Mapping[MappingKey, Asked] | None = None,
                 id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self.asked: Mapping[MappingKey, Asked] = asked if asked is not None else {}
        self.clock = clock
        """The time rows scrolled into view are computed at (default: the last sync's)."""
        self.border_title = "Mappings"
        self._shown: dict[MappingKey, Cells] = {}
        self._keys: dict[str, MappingKey] = {}
        self._widths: dict[str, int] = {}
        self._source: Mapping[MappingKey, ManagedMapping] = {}
        self._now = 0.0
        self.cell_updates = 0
        """How many cells ``update_cell`` has changed (the tests check a tick's cost)."""
        self.rows_added = 0
        self.rows_removed = 0

    def on_mount(self) -> None:
        for key, label, width in MAPPING_COLUMNS:
            self.add_column(label, key=key, width=width)
            if width is None:
                self._widths[key] = cell_len(label)

    @property
    def shown_keys(self) -> list[MappingKey]:
        """The mapping keys of the rows, in display order."""
        return [self._keys[row.key.value] for row in self.ordered_rows
                if row.key.value is not None and row.key.value in self._keys]

    def selected_key(self) -> MappingKey | None:
        """The mapping under the cursor, or None when the table is empty."""
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # the cursor is past the last row while rows are removed
            return None
        return None if row_key.value is None else self._keys.get(row_key.value)

    def sync(self, mappings: Mapping[MappingKey, ManagedMapping], now: float) -> None:
        """Make the rows match ``mappings`` at loop time ``now``: add new ones, drop gone
        ones, update the changed cells of the rows in view. Call inside
        ``app.batch_update()``."""
        self._source = mappings
        self._now = now
        if len(self._shown) != len(mappings) or any(k not in mappings for k in self._shown):
            for key in [k for k in self._shown if k not in mappings]:
                self._remove(key)
            for key, mapping in mappings.items():
                if key not in self._shown:
                    self.show_mapping(key, mapping, now)
        self.refresh_visible(now)

    def visible_keys(self) -> list[MappingKey]:
        """The keys of the rows on screen, and :data:`MARGIN` rows either side."""
        rows = self.ordered_rows
        if not rows:
            return []
        first = max(int(self.scroll_y) - MARGIN, 0)
        height = max(self.size.height - self.header_height, 0)
        last = min(int(self.scroll_y) + height + MARGIN, len(rows))
        keys = (self._keys.get(row.key.value or "") for row in rows[first:last])
        return [key for key in keys if key is not None]

    def refresh_visible(self, now: float | None = None) -> None:
        """Bring the rows in view up to date with the mappings at ``now`` (default: the
        clock's time, or the last sync's)."""
        if now is None:
            now = self.clock() if self.clock is not None else self._now
        for key in self.visible_keys():
            mapping = self._source.get(key)
            if mapping is not None:
                self.show_mapping(key, mapping, now)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        # Rows coming into view may hold values from an earlier tick: refresh them
        # before they are painted.
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value):
            self.refresh_visible()

    def on_resize(self) -> None:
        self.refresh_visible()

    def show_mapping(self, key: MappingKey, mapping: ManagedMapping | None, now: float) -> None:
        """Show one mapping as it is now (add its row if new); ``None`` removes the row."""
        if mapping is None:
            self._remove(key)
            return
        asked = self.asked.get(key)
        cells = mapping_cells(mapping, now, suggested=None if asked is None else asked.suggested)
        shown = self._shown.get(key)
        if shown is None:
            self._add(key, cells)
            return
        if cells == shown:
            return
        row_key = _row_key(key)
        for column, new, old in zip(_COLUMN_KEYS, cells, shown, strict=True):
            if new != old:
                value = Text(new[0], style=new[1])
                if self._grows(column, new[0]):
                    self.update_cell(row_key, column, value, update_width=True)
                else:
                    self.set_cell(row_key, column, value)
                self.cell_updates += 1
        self._shown[key] = cells

    def _grows(self, column: str, text: str) -> bool:
        known = self._widths.get(column)
        if known is None:
            return False
        width = cell_len(text)
        if width <= known:
            return False
        self._widths[column] = width
        return True

    def _add(self, key: MappingKey, cells: Cells) -> None:
        for column, cell in zip(_COLUMN_KEYS, cells, strict=True):
            self._grows(column, cell[0])
        self.add_row(*(Text(text, style=style) for text, style in cells), key=_row_key(key))
        self._shown[key] = cells
        self._keys[_row_key(key)] = key
        self.rows_added += 1

    def _remove(self, key: MappingKey) -> None:
        if self._shown.pop(key, None) is None:
            return
        row_key = _row_key(key)
        self._keys.pop(row_key, None)
        try:
            self.remove_row(row_key)
        except RowDoesNotExist:
            return
        self.rows_removed += 1
