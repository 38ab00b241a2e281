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
as with 10,000. All of that is :class:`~tui.widgets.keyed_table.KeyedTable`'s
(a changed cell repaints its row and nothing else); this module says which row
shows which mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from textual.binding import Binding

from engine.events import ManagedMapping, MappingKey

from ..mapping_detail import Asked
from ..presentation import MAPPING_COLUMNS, mapping_cells
from .keyed_table import KeyedTable

__all__ = ["MappingsTable"]


def _row_key(key: MappingKey) -> str:
    return str(key)


class MappingsTable(KeyedTable):
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
        super().__init__(MAPPING_COLUMNS, clock=clock, id=id)
        self.asked: Mapping[MappingKey, Asked] = asked if asked is not None else {}
        self.border_title = "Mappings"
        self._keys: dict[str, MappingKey] = {}
        self._source: Mapping[MappingKey, ManagedMapping] = {}
        self.brief_states = False
        """Whether the State column says each state in a word (the reason is in the
        detail line): a narrow terminal has no room for it."""

    @property
    def shown_keys(self) -> list[MappingKey]:
        """The mapping keys of the rows, in display order."""
        return [self._keys[row.key.value] for row in self.ordered_rows
                if row.key.value is not None and row.key.value in self._keys]

    def selected_key(self) -> MappingKey | None:
        """The mapping under the cursor, or None when the table is empty."""
        row = self.selected_row_key()
        return None if row is None else self._keys.get(row)

    def sync(self, mappings: Mapping[MappingKey, ManagedMapping], now: float) -> None:
        """Make the rows match ``mappings`` at loop time ``now``: add new ones, drop gone
        ones, update the changed cells of the rows in view. Call inside
        ``app.batch_update()``."""
        self._source = mappings
        self.now = now
        if len(self._keys) != len(mappings) or any(k not in mappings
                                                   for k in self._keys.values()):
            for key in [k for k in self._keys.values() if k not in mappings]:
                self.show_mapping(key, None, now)
            for key, mapping in mappings.items():
                if _row_key(key) not in self._keys:
                    self.show_mapping(key, mapping, now)
        self.refresh_visible(now)

    def show_row(self, key: str) -> None:
        mapping_key = self._keys.get(key)
        mapping = None if mapping_key is None else self._source.get(mapping_key)
        if mapping_key is not None and mapping is not None:
            self.show_mapping(mapping_key, mapping, self.now)

    def show_mapping(self, key: MappingKey, mapping: ManagedMapping | None, now: float) -> None:
        """Show one mapping as it is now (add its row if new); ``None`` removes the row."""
        row = _row_key(key)
        if mapping is None:
            self._keys.pop(row, None)
            self.remove_key(row)
            return
        asked = self.asked.get(key)
        self._keys[row] = key
        self.show_cells(row, mapping_cells(
            mapping, now, suggested=None if asked is None else asked.suggested,
            brief=self.brief_states))

    def set_brief_states(self, brief: bool) -> None:
        """Say each state in a word (True), or with its reason; every row is shown again
        and the State column fits what it holds now (it may narrow)."""
        if brief == self.brief_states:
            return
        self.brief_states = brief
        for row in list(self._keys):
            self.show_row(row)
        self.fit_column("state")
