"""A panel of styled lines that repaints only when they changed, and lays the screen out
again only when its height changed."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

__all__ = ["TextPanel"]


class TextPanel(Static):
    """Shows lines of :class:`~rich.text.Text` (sanitized, never parsed as markup).

    The one-second tick calls :meth:`show` with lines that often read the same
    ("Last contact just now"), or differ by a character ("9 s ago", "10 s ago").
    The first costs a string comparison; the second repaints the panel alone. A
    new layout of the screen (tens of milliseconds with a full table) happens only
    when the lines, wrapped to the panel's width, take another number of rows.
    """

    def __init__(self, text: Text, *, id: str | None = None) -> None:
        super().__init__(text, id=id)
        self._shown: str | None = None
        self._rows = -1

    def show(self, lines: list[Text]) -> None:
        """Display ``lines`` (already sanitized, styled text)."""
        text = Text("\n").join(lines)
        fingerprint = text.markup
        if fingerprint == self._shown:
            return
        self._shown = fingerprint
        self.update(text, layout=False)
        width = self.size.width
        if width <= 0:
            self.refresh(layout=True)
            return
        # Textual's own measure of the new text at this width: a new layout only if the
        # panel needs another height.
        rows = self.get_content_height(self.size, self.app.size, width)
        if rows != self._rows:
            self._rows = rows
            self.refresh(layout=True)

    def on_resize(self) -> None:
        self._rows = -1  # the next change measures again at the new width

    @property
    def plain(self) -> str:
        """The text shown, without styles (for tests and screen readers)."""
        return "" if self._shown is None else Text.from_markup(self._shown).plain
