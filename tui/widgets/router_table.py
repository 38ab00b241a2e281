"""The router table: every entry of the gateway's mapping table, one keyed row each.

Rows are keyed by the entry's (protocol, external port, remote host) and never
rebuilt (:class:`~tui.widgets.keyed_table.KeyedTable`): :meth:`RouterTableView.sync`
adds the new rows, removes the gone ones, reorders with one ``sort`` only when
the model's order changed, and updates only the cells that changed. The leases
tick every second in every row, so a tick recomputes only the rows on screen;
with 1,000 entries a tick costs what it costs with 20.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text

from engine.router_view import EntryKey, RouterEntry

from ..router_presentation import ROUTER_COLUMNS, router_cells
from .keyed_table import KeyedTable

__all__ = ["RouterTableView", "row_key"]


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


class RouterTableView(KeyedTable):
    """The gateway's entries in the model's order (filtered and sorted)."""

    def __init__(self, *, clock: Callable[[], float] | None = None,
                 id: str | None = None) -> None:
        super().__init__(ROUTER_COLUMNS, clock=clock, id=id)
        self.border_title = "Gateway's mappings"
        self._entries: dict[str, RouterEntry] = {}
        self._order: list[str] = []
        self.sorts = 0
        """How many times the rows were reordered (the tests check it is rare)."""

    @property
    def shown(self) -> list[RouterEntry]:
        """The entries of the rows, in display order."""
        return [self._entries[row.key.value] for row in self.ordered_rows
                if row.key.value is not None and row.key.value in self._entries]

    def selected(self) -> RouterEntry | None:
        """The entry under the cursor, or None when the table is empty."""
        key = self.selected_row_key()
        return None if key is None else self._entries.get(key)

    def sync(self, entries: Sequence[RouterEntry], now: float) -> None:
        """Show ``entries`` in this order at loop time ``now`` (call inside
        ``app.batch_update()``)."""
        self.now = now
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
            self.show_row(key)
        self.refresh_visible(now)

    def _reorder(self, order: list[str]) -> None:
        selected = self.selected()
        rank = {key: index for index, key in enumerate(order)}
        self.sort(self.column_keys[0],
                  key=lambda cell: rank.get(getattr(cell, "row", ""), len(rank)))
        self._order = order
        self.sorts += 1
        if selected is not None:
            index = rank.get(row_key(selected.key))
            if index is not None and index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)

    def show_row(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            self.show_cells(key, router_cells(entry, self.now))

    def make_cell(self, column: str, cell: tuple[str, str], key: str) -> Text:
        text, style = cell
        if column == self.column_keys[0]:
            return _KeyedText(text, style, key)
        return Text(text, style=style)

    def _add(self, key: str, entry: RouterEntry) -> None:
        self.show_cells(key, router_cells(entry, self.now))
        self._order.append(key)

    def _remove(self, key: str) -> None:
        self._entries.pop(key, None)
        if key in self._order:
            self._order.remove(key)
        self.remove_key(key)


def _identity(entry: RouterEntry) -> tuple[object, ...]:
    # What, besides the lease (which every listing reads anew) and the fading highlight,
    # changes a row's cells; those two are brought up to date for the rows in view.
    m = entry.mapping
    return (m.internal_client, m.internal_port, m.description, m.enabled, m.made_by,
            entry.ours, entry.this_host, entry.gone_at)
