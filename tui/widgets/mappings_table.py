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

The State cell is bounded at every width: under 100 columns it is a word (the
screen sets :attr:`MappingsTable.brief_states`), and from 100 on it has the
reason, cut with an ellipsis to the room the other columns leave
(:attr:`MappingsTable.state_room`): a long reason never pushes the row past the
table's edge. Under 100 columns the External cell takes that place: it is cut to
the room the others leave (an IPv6 address, an "(asked …)" port, a wide
"confirming…" in the State column), so the row fits 80 columns. Columns narrow
again once their widest value is gone. The detail line and the event log say the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rich.cells import cell_len
from textual.binding import Binding

from engine.events import ManagedMapping, MappingKey

from ..mapping_detail import Asked
from ..presentation import MAPPING_COLUMNS, mapping_cells
from .keyed_table import KeyedTable

__all__ = ["EXTERNAL_MIN_CELLS", "STATE_MIN_CELLS", "MappingsTable"]

#: The State cell keeps at least this many cells however wide the other columns grow (the
#: longest state in a word, "confirming…", and one more).
STATE_MIN_CELLS = 12

#: Under 100 columns the External cell keeps at least this many (an IPv4 address whole):
#: narrower than 80 columns, the row may still scroll.
EXTERNAL_MIN_CELLS = 15


def _row_key(key: MappingKey) -> str:
    return str(key)


class MappingsTable(KeyedTable):
    """The managed mappings, one row each, keyed by mapping key.

    ``asked`` holds what this session knows of each mapping beyond the engine's view
    (the external port it suggested); the app fills it, the table reads it.
    """

    shrink_columns = True  # a wide "confirming…" or "ask 0:03" must not keep its room

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
        self.state_room: int | None = None
        """The most cells the State cell takes (the External cell under 100 columns, with
        :attr:`brief_states`): what the other columns leave of the table's width (at
        least :data:`STATE_MIN_CELLS`, :data:`EXTERNAL_MIN_CELLS`); None until the table
        has a size."""
        self._room_stale = False  # another column widened: the room is measured again

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
        else:
            asked = self.asked.get(key)
            self._keys[row] = key
            brief = self.brief_states
            self.show_cells(row, mapping_cells(
                mapping, now, suggested=None if asked is None else asked.suggested,
                brief=brief, state_cells=None if brief else self.state_room,
                external_cells=self.state_room if brief else None))
        if self._room_stale:
            self.fit_state_room()

    @property
    def _elastic(self) -> str:
        """The column cut to the room the others leave."""
        return "external" if self.brief_states else "state"

    def set_brief_states(self, brief: bool) -> None:
        """Say each state in a word (True), or with its reason; every row is shown again
        and the State column fits what it holds now (it may narrow)."""
        if brief == self.brief_states:
            return
        self.brief_states = brief
        # Uncut first: the room is measured once the State column fits its new cells.
        self.state_room = None
        for row in list(self._keys):
            self.show_row(row)
        self.fit_column("state")
        self.fit_column("external")
        self.fit_state_room()

    def column_widened(self, column: str) -> None:
        if column != self._elastic:
            self._room_stale = True  # (made once the row is shown: not in the middle of it)

    def column_narrowed(self, column: str) -> None:
        # More room for the elastic column: the cells it cut may be shown whole again.
        self.column_widened(column)

    def on_resize(self) -> None:
        self.fit_state_room()

    def fit_state_room(self) -> None:
        """Measure the room the other columns leave the State column (External, with
        :attr:`brief_states`); if it changed, cut again the rows whose cell it changes,
        and narrow the column if it must."""
        self._room_stale = False
        width = self.scrollable_content_region.width
        if width <= 0:
            return
        if not self.show_vertical_scrollbar:
            # Kept for the scroll bar that more rows bring, so that they do not overflow.
            width -= self.styles.scrollbar_size_vertical
        padding = 2 * self.cell_padding
        elastic = self._elastic
        others = sum(self.column_width(key) + padding for key in self.column_keys
                     if key != elastic)
        least = EXTERNAL_MIN_CELLS if self.brief_states else STATE_MIN_CELLS
        room = max(width - others - padding, least)
        if room == self.state_room:
            return
        self.state_room = room
        index = self.column_keys.index(elastic)
        for row, cells in list(self.shown_cells.items()):
            text = cells[index][0]
            if cell_len(text) > room or text.endswith("…"):  # too long now, or was cut
                self.show_row(row)
        if self.column_width(elastic) > room:
            self.fit_column(elastic)
