"""A DataTable whose cell updates repaint only the cells that changed.

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
index)); ``tests/tui/test_scale.py`` checks that what is painted is what was
set. Every row is one line high (the rows are added with the default height).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from rich.style import Style
from textual.cache import LRUCache
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

__all__ = ["KeyedTable"]

CellType = TypeVar("CellType")
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


class KeyedTable(DataTable[CellType]):
    """A :class:`~textual.widgets.DataTable` with :meth:`set_cell`, a cheap ``update_cell``."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._cell_render_cache = _IndexedCache(10000, 2)
        self._row_render_cache = _IndexedCache(1000, 1)
        self._line_cache = _IndexedCache(1000, 1)
        self._frame_style: Style | None = None

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

    def set_cell(self, row_key: str, column_key: str, value: CellType) -> None:
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
