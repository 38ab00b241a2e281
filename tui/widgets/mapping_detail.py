"""The detail line under the mappings table: all that is known about the selected mapping."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

__all__ = ["MappingDetail"]


class MappingDetail(Static):
    """Shows the lines :func:`tui.mapping_detail.detail_lines` computes; long lines wrap.

    Like the gateway panel, :meth:`show` repaints only when the text changed and lays
    the screen out again only when a line's length changed.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text(""), id=id)
        self._shown: str | None = None
        self._lengths: tuple[int, ...] = ()

    def show(self, lines: list[Text]) -> None:
        """Display ``lines`` (already sanitized, styled text; never parsed as markup)."""
        text = Text("\n").join(lines)
        fingerprint = text.markup
        if fingerprint == self._shown:
            return
        lengths = tuple(line.cell_len for line in lines)
        self._shown = fingerprint
        self.update(text, layout=lengths != self._lengths)
        self._lengths = lengths

    @property
    def plain(self) -> str:
        """The text shown, without styles (for tests)."""
        return "" if self._shown is None else Text.from_markup(self._shown).plain
