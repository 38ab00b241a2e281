"""A DataTable of keyed rows that tick: the recipe of Dolphie's process list, once.

Rows are keyed and never rebuilt; a row's cells are (text, style) pairs computed
by a pure function, compared with what is shown, and only the cells that changed
get ``update_cell``. Values that change every second (countdowns) are refreshed
only for the rows on screen and :data:`MARGIN` rows around them; a row scrolled
into view is brought up to date before it is painted. Columns sized to their
content widen when a longer value arrives and never shrink, which keeps
measuring cheap. A subclass says how to refresh one row (:meth:`show_row`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

from ..presentation import Cells

__all__ = ["MARGIN", "Columns", "KeyedRowsTable"]

#: Rows refreshed above and below the visible ones, so a small scroll shows fresh values.
MARGIN = 5

#: (column key, heading, width or None to size it to its content), in order.
Columns = Sequence[tuple[str, str, int | None]]


class KeyedRowsTable(DataTable[Text]):
    """Keyed rows whose cells are updated in place; see the module docstring."""

    def __init__(self, columns: Columns, *, clock: Callable[[], float] | None = None,
                 id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self.columns_spec = tuple(columns)
        self.column_keys = tuple(key for key, _, _ in self.columns_spec)
        self.clock = clock
        """The time rows scrolled into view are computed at (default: the last given)."""
        self.now = 0.0
        self._widths: dict[str, int] = {}
        self.cell_updates = 0
        """How many cells ``update_cell`` has changed (the tests check a tick's cost)."""

    def on_mount(self) -> None:
        for key, label, width in self.columns_spec:
            self.add_column(label, key=key, width=width)
            if width is None:
                self._widths[key] = cell_len(label)

    def selected_row_key(self) -> str | None:
        """The key of the row under the cursor, or None when the table is empty."""
        if not self.row_count:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # the cursor is past the last row while rows are removed
            return None
        return key.value

    def visible_row_keys(self) -> list[str]:
        """The keys of the rows on screen, and :data:`MARGIN` rows either side."""
        rows = self.ordered_rows
        if not rows:
            return []
        first = max(int(self.scroll_y) - MARGIN, 0)
        height = max(self.size.height - self.header_height, 0)
        last = min(int(self.scroll_y) + height + MARGIN, len(rows))
        return [row.key.value for row in rows[first:last] if row.key.value is not None]

    def refresh_visible(self, now: float | None = None) -> None:
        """Bring the rows in view up to date at ``now`` (default: the clock's time, or
        the last one given)."""
        if now is None:
            now = self.clock() if self.clock is not None else self.now
        self.now = now
        for key in self.visible_row_keys():
            self.show_row(key)

    def show_row(self, key: str) -> None:
        """Bring one row up to date at :attr:`now` (a subclass computes its cells and
        calls :meth:`update_cells`)."""
        raise NotImplementedError

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        # Rows coming into view may hold values from an earlier tick: refresh them
        # before they are painted.
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value):
            self.refresh_visible()

    def on_resize(self) -> None:
        self.refresh_visible()

    def make_cell(self, column: str, cell: tuple[str, str], key: str) -> Text:
        """The renderable of one cell (a subclass may tag it)."""
        text, style = cell
        return Text(text, style=style)

    def add_cells(self, key: str, cells: Cells) -> None:
        """Add a row with ``cells``, widening the content-sized columns they need."""
        for column, cell in zip(self.column_keys, cells, strict=True):
            self._grows(column, cell[0])
        self.add_row(*(self.make_cell(column, cell, key)
                       for column, cell in zip(self.column_keys, cells, strict=True)), key=key)

    def update_cells(self, key: str, cells: Cells, shown: Cells) -> None:
        """Update the cells of row ``key`` that differ between ``shown`` and ``cells``."""
        for column, new, old in zip(self.column_keys, cells, shown, strict=True):
            if new != old:
                self.update_cell(key, column, self.make_cell(column, new, key),
                                 update_width=self._grows(column, new[0]))
                self.cell_updates += 1

    def _grows(self, column: str, text: str) -> bool:
        known = self._widths.get(column)
        if known is None:
            return False
        width = cell_len(text)
        if width <= known:
            return False
        self._widths[column] = width
        return True
