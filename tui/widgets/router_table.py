"""The router table: every entry of the gateway's mapping table, one keyed row each.

Rows are keyed by the entry's (protocol, external port, remote host) and never
rebuilt: :meth:`RouterTableView.sync` adds the new rows, removes the gone ones,
reorders with one ``sort`` only when the order changed, and calls ``update_cell``
only for cells whose text or style changed. The leases tick every second in
every row, so a tick recomputes only the rows on screen (and a few around them);
a row scrolled into view is brought up to date before it is painted. With 1,000
entries a tick costs what it costs with 20.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from engine.router_view import EntryKey, RouterEntry

from ..presentation import Cells
from ..router_presentation import ROUTER_COLUMNS, router_cells

__all__ = ["RouterTableView", "row_key"]

#: Rows refreshed above and below the visible ones.
MARGIN = 5

_COLUMN_KEYS = tuple(key for key, _, _ in ROUTER_COLUMNS)


def row_key(key: EntryKey) -> str:
    """The DataTable row key of an entry: ``6/41900/`` (protocol/port/remote host)."""
    protocol, port, remote = key
    return f"{protocol}/{port}/{remote}"


class _KeyedText(Text):
    """The first cell of a row, which knows its row: ``DataTable.sort`` hands the key
    function cell values only, and the order is the model's."""

    __slots__ = ("row",)

    def __init__(self, text: str, style: str, row: str) -> None:
        super().__init__(text, style=style)
        self.row = row


class RouterTableView(DataTable[Text]):
    """The gateway's entries in the model's order (filtered and sorted)."""

    def __init__(self, *, clock: Callable[[], float] | None = None,
                 id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self.clock = clock
        self.border_title = "Gateway's mappings"
        self._entries: dict[str, RouterEntry] = {}
        self._shown: dict[str, Cells] = {}
        self._order: list[str] = []
        self._widths: dict[str, int] = {}
        self._now = 0.0
        self.cell_updates = 0
        """How many cells ``update_cell`` changed (the tests check a tick's cost)."""
        self.sorts = 0

    def on_mount(self) -> None:
        for key, label, width in ROUTER_COLUMNS:
            self.add_column(label, key=key, width=width)
            if width is None:
                self._widths[key] = cell_len(label)

    @property
    def shown(self) -> list[RouterEntry]:
        """The entries of the rows, in display order."""
        return [self._entries[row.key.value] for row in self.ordered_rows
                if row.key.value is not None and row.key.value in self._entries]

    def selected(self) -> RouterEntry | None:
        """The entry under the cursor, or None when the table is empty."""
        if not self.row_count:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # the cursor is past the last row while rows are removed
            return None
        return None if key.value is None else self._entries.get(key.value)

    def sync(self, entries: Sequence[RouterEntry], now: float) -> None:
        """Show ``entries`` in this order at loop time ``now`` (call inside
        ``app.batch_update()``)."""
        self._now = now
        wanted = {row_key(e.key): e for e in entries}
        for key in [k for k in self._entries if k not in wanted]:
            self._remove(key)
        changed: list[str] = []
        for key, entry in wanted.items():
            old = self._entries.get(key)
            self._entries[key] = entry
            if old is None:
                self._add(key, entry)
            elif _identity(old) != _identity(entry):
                changed.append(key)
        order = list(wanted)
        if order != self._order:
            self._reorder(order)
        for key in changed:
            self._show(key)
        self.refresh_visible(now)

    def _reorder(self, order: list[str]) -> None:
        selected = self.selected()
        rank = {key: index for index, key in enumerate(order)}
        first = _COLUMN_KEYS[0]
        self.sort(first, key=lambda cell: rank.get(getattr(cell, "row", ""), len(rank)))
        self._order = order
        self.sorts += 1
        if selected is not None:
            index = rank.get(row_key(selected.key))
            if index is not None and index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)

    def visible_keys(self) -> list[str]:
        """The row keys on screen, and :data:`MARGIN` rows either side."""
        rows = self.ordered_rows
        if not rows:
            return []
        first = max(int(self.scroll_y) - MARGIN, 0)
        height = max(self.size.height - self.header_height, 0)
        last = min(int(self.scroll_y) + height + MARGIN, len(rows))
        return [row.key.value for row in rows[first:last] if row.key.value is not None]

    def refresh_visible(self, now: float | None = None) -> None:
        """Bring the rows in view up to date at ``now`` (default: the clock's time)."""
        if now is None:
            now = self.clock() if self.clock is not None else self._now
        self._now = now
        for key in self.visible_keys():
            self._show(key)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value):
            self.refresh_visible()

    def on_resize(self) -> None:
        self.refresh_visible()

    def _show(self, key: str) -> None:
        entry = self._entries.get(key)
        shown = self._shown.get(key)
        if entry is None or shown is None:
            return
        cells = router_cells(entry, self._now)
        if cells == shown:
            return
        for column, new, old in zip(_COLUMN_KEYS, cells, shown, strict=True):
            if new != old:
                self.update_cell(key, column, self._cell(column, new, key),
                                 update_width=self._grows(column, new[0]))
                self.cell_updates += 1
        self._shown[key] = cells

    @staticmethod
    def _cell(column: str, cell: tuple[str, str], key: str) -> Text:
        text, style = cell
        return _KeyedText(text, style, key) if column == _COLUMN_KEYS[0] else Text(text,
                                                                                  style=style)

    def _grows(self, column: str, text: str) -> bool:
        known = self._widths.get(column)
        if known is None:
            return False
        width = cell_len(text)
        if width <= known:
            return False
        self._widths[column] = width
        return True

    def _add(self, key: str, entry: RouterEntry) -> None:
        cells = router_cells(entry, self._now)
        for column, cell in zip(_COLUMN_KEYS, cells, strict=True):
            self._grows(column, cell[0])
        self.add_row(*(self._cell(c, cell, key) for c, cell in zip(_COLUMN_KEYS, cells,
                                                                    strict=True)), key=key)
        self._shown[key] = cells
        self._order.append(key)

    def _remove(self, key: str) -> None:
        self._entries.pop(key, None)
        if self._shown.pop(key, None) is None:
            return
        if key in self._order:
            self._order.remove(key)
        try:
            self.remove_row(key)
        except RowDoesNotExist:
            return


def _identity(entry: RouterEntry) -> tuple[object, ...]:
    # What, besides the lease (which every listing reads anew) and the fading highlight,
    # changes a row's cells; those two are brought up to date for the rows in view.
    m = entry.mapping
    return (m.internal_client, m.internal_port, m.description, m.enabled, m.made_by,
            entry.ours, entry.this_host, entry.gone_at)
