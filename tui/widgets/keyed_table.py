"""A DataTable of keyed rows that tick, whose cell updates repaint only the changed cells.

Dolphie's process list, once, for every table of the app: rows are keyed and
never rebuilt; a row's cells are (text, style) pairs computed by a pure
function, compared with what is shown, and only the cells that changed are
set. Values that change every second (countdowns) are refreshed only for the
rows on screen and :data:`MARGIN` rows around them; a row scrolled into view is
brought up to date before it is painted. Columns sized to their content widen
when a longer value arrives and shrink when asked (:meth:`KeyedTable.fit_column`),
or, with :attr:`KeyedTable.shrink_columns`, as soon as the widest value is gone:
a count of the cells of each width keeps measuring cheap. A subclass says
how to bring one row up to date (:meth:`KeyedTable.show_row`).

Textual's ``DataTable.update_cell`` bumps one counter that is part of the key
of every render cache the table has (cells, rows, lines, the row order, the
row offsets), so changing one cell makes the next repaint render every cell
in view again and rebuild two lists as long as the table. With 1,000 rows and
two countdowns a row changing every second, that was 62 ms to the end of the
repaint (issue 15). :meth:`KeyedTable.set_cell` changes the cell and drops
only the cache entries of its row, so the repaint renders the changed cells
and reuses the others.

This reaches into the caches of Textual 8.2.8's DataTable (``_cell_render_cache``
keyed by (row key, column key, …), ``_row_render_cache`` by (row key, …),
``_line_cache`` by (y, …), ``_row_renderable_cache`` by (update count, row
index)); ``tests/tui/test_scale.py`` and ``tests/tui/test_router_view.py`` check
that what is painted is what was set. Every row is one line high (the rows are
added with the default height).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist, RowKey

from ..presentation import Cells

__all__ = ["MARGIN", "Columns", "KeyedTable"]

#: Rows refreshed above and below the visible ones, so a small scroll shows fresh values.
MARGIN = 5

#: (column key, heading, width or None to size it to its content), in order.
Columns = Sequence[tuple[str, str, int | None]]
_K = TypeVar("_K", bound=tuple[Any, ...])
_V = TypeVar("_V")


class _IndexedCache(LRUCache[_K, _V], Generic[_K, _V]):
    """An LRU cache that can drop every entry whose key starts with a given prefix."""

    def __init__(self, maxsize: int, prefix: int) -> None:
        super().__init__(maxsize)
        self._prefix = prefix
        self._index: dict[Hashable, list[_K]] = {}

    def set(self, key: _K, value: _V) -> None:
        super().set(key, value)
        self._index.setdefault(key[: self._prefix], []).append(key)
        if len(self._index) > 4 * self.maxsize:
            # Entries the LRU evicted are still indexed: forget the ones that are gone.
            live = self.keys()
            self._index = {prefix: kept for prefix, keys in self._index.items()
                           if (kept := [k for k in keys if k in live])}

    __setitem__ = set

    def drop(self, *prefix: Hashable) -> None:
        """Forget every entry whose key starts with ``prefix``."""
        for key in self._index.pop(prefix, ()):
            self.discard(key)

    def clear(self) -> None:
        super().clear()
        self._index.clear()


class KeyedTable(DataTable[Text]):
    """Keyed rows of (text, style) cells, updated in place; see the module docstring.

    A subclass computes a row's cells and hands them to :meth:`show_cells` (which adds
    the row or sets only its changed cells), and says in :meth:`show_row` how to bring
    one row up to date at :attr:`now`, for the rows that scroll into view.
    """

    shrink_columns: ClassVar[bool] = False
    """Whether a content-sized column narrows once its widest value is gone (else only
    :meth:`fit_column` narrows it)."""

    def __init__(self, columns: Columns, *, clock: Callable[[], float] | None = None,
                 id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self._cell_render_cache = _IndexedCache(10000, 2)
        self._row_render_cache = _IndexedCache(1000, 1)
        self._line_cache = _IndexedCache(1000, 1)
        self._frame_style: Style | None = None
        self.columns_spec = tuple(columns)
        self.column_keys = tuple(key for key, _, _ in self.columns_spec)
        self.clock = clock
        """The time rows scrolled into view are computed at (default: the last given)."""
        self.now = 0.0
        self._widths: dict[str, int] = {}
        # How many shown cells of each width each content-sized column has: its width is
        # the widest one left, known without measuring every row again.
        self._counts: dict[str, Counter[int]] = {}
        self._cells: dict[str, Cells] = {}
        self.cell_updates = 0
        """How many cells were set (the tests check a tick's cost)."""
        self.rows_added = 0
        self.rows_removed = 0

    def on_mount(self) -> None:
        for key, label, width in self.columns_spec:
            self.add_column(label, key=key, width=width)
            if width is None:
                self._widths[key] = cell_len(label)
                self._counts[key] = Counter()

    # -- rows --------------------------------------------------------------------------------

    @property
    def shown_cells(self) -> Mapping[str, Cells]:
        """The cells each row shows now, by row key."""
        return self._cells

    def column_width(self, column: str) -> int:
        """The content width of ``column`` now: its fixed width, or what its label and cells
        need (known at once, where DataTable measures a new row's cells only when idle)."""
        fixed = self.columns_spec[self.column_keys.index(column)][2]
        return fixed if fixed is not None else self._widths.get(column, 0)

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
        """Bring row ``key`` up to date at :attr:`now` (a subclass computes its cells and
        calls :meth:`show_cells`)."""
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

    def show_cells(self, key: str, cells: Cells) -> None:
        """Show ``cells`` in row ``key``: add the row if it is new, else set only the cells
        that differ from what is shown (widening a content-sized column that needs it)."""
        shown = self._cells.get(key)
        if shown is None:
            for column, cell in zip(self.column_keys, cells, strict=True):
                self._count(column, cell[0], 1)
                self._grows(column, cell[0])
            self.add_row(*(self.make_cell(column, cell, key)
                           for column, cell in zip(self.column_keys, cells, strict=True)),
                         key=key)
            self._cells[key] = cells
            self.rows_added += 1
            return
        if cells == shown:
            return
        for column, new, old in zip(self.column_keys, cells, shown, strict=True):
            if new != old:
                self._count(column, old[0], -1)
                self._count(column, new[0], 1)
                value = self.make_cell(column, new, key)
                if self._grows(column, new[0]):
                    self.update_cell(key, column, value, update_width=True)
                else:
                    self.set_cell(key, column, value)
                self.cell_updates += 1
        self._cells[key] = cells
        self._shrink(shown)

    def remove_key(self, key: str) -> bool:
        """Remove row ``key``; False when there was none."""
        shown = self._cells.pop(key, None)
        if shown is None:
            return False
        for column, cell in zip(self.column_keys, shown, strict=True):
            self._count(column, cell[0], -1)
        try:
            self.remove_row(key)
        except RowDoesNotExist:
            return False
        self.rows_removed += 1
        self._shrink(shown)
        return True

    def fit_column(self, column: str) -> None:
        """Size a content-sized column to what its rows show now: unlike a growing one,
        it may narrow (every row's shown cells are measured: call it rarely)."""
        if column not in self._widths:
            return  # a column of fixed width
        index = self.column_keys.index(column)
        label = self.columns_spec[index][1]
        width = max(cell_len(label), max(self._counts[column], default=0))
        self._widths[column] = width
        spec = self.columns[ColumnKey(column)]
        if spec.content_width != width:
            spec.content_width = width
            # Every cache is keyed by the update count: the rows are rendered again at the
            # new width.
            self._update_count += 1
            self._require_update_dimensions = True
            self.refresh()

    def _count(self, column: str, text: str, change: int) -> None:
        counts = self._counts.get(column)
        if counts is None:
            return
        width = cell_len(text)
        counts[width] += change
        if counts[width] <= 0:
            del counts[width]

    def _shrink(self, gone: Cells) -> None:
        """With :attr:`shrink_columns`, narrow each content-sized column whose widest cell
        was among ``gone`` (replaced or removed) and is no longer shown anywhere."""
        if not self.shrink_columns:
            return
        for column, (text, _) in zip(self.column_keys, gone, strict=True):
            known = self._widths.get(column)
            if known is not None and cell_len(text) == known \
                    and not self._counts[column].get(known):
                self.fit_column(column)
                self.column_narrowed(column)

    def _grows(self, column: str, text: str) -> bool:
        known = self._widths.get(column)
        if known is None:
            return False
        width = cell_len(text)
        if width <= known:
            return False
        self._widths[column] = width
        self.column_widened(column)
        return True

    def column_widened(self, column: str) -> None:
        """A content-sized column widened for a longer value (a subclass may make room)."""

    def column_narrowed(self, column: str) -> None:
        """A content-sized column may have narrowed (:attr:`shrink_columns`): a subclass may
        give the room to another."""

    # -- cheap repaints ----------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        # DataTable.render_line asks for rich_style once per line, and each time it is
        # worked out again from the styles of every ancestor: once per frame is enough.
        self._frame_style = super().rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._frame_style = None

    @property
    def rich_style(self) -> Style:
        """The widget's style (computed once per frame while its lines are rendered)."""
        return self._frame_style if self._frame_style is not None else super().rich_style

    def set_cell(self, row_key: str, column_key: str, value: Text) -> None:
        """Show ``value`` in a cell of a row that exists; only that cell is rendered again.

        The column keeps its width (use ``update_cell(..., update_width=True)`` to widen it).
        """
        row, column = RowKey(row_key), ColumnKey(column_key)
        self._data[row][column] = value
        index = self._row_locations.get(row)
        if index is None:
            return
        self._cell_render_cache.drop(row, column)  # type: ignore[attr-defined]
        self._row_render_cache.drop(row)  # type: ignore[attr-defined]
        header = self.header_height if self.show_header else 0
        self._line_cache.drop(index + header)  # type: ignore[attr-defined]
        self._row_renderable_cache.discard((self._update_count, index))
        # The whole widget, not refresh_row(): finding a row's region sums the heights of
        # the rows above it, and the lines that did not change are painted from the cache.
        self.refresh()
