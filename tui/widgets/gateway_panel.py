"""The gateway panel: where the gateway is, what it speaks, what it said last."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

__all__ = ["GatewayPanel"]


class GatewayPanel(Static):
    """Shows the lines :func:`tui.presentation.gateway_lines` computes.

    :meth:`show` repaints only when the text changed, so the one-second tick
    costs a string comparison when nothing happened, and lays the screen out
    again only when a line's length changed (a line may then wrap differently):
    "5 s ago" becoming "6 s ago" repaints the panel alone.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text("Starting…", style="dim"), id=id)
        self.border_title = "Gateway"
        self._shown: str | None = None
        self._lengths: tuple[int, ...] = ()

    def show(self, lines: list[Text]) -> None:
        """Display ``lines`` (already sanitized, styled text; never parsed as markup)."""
        text = Text("\n").join(lines)
        fingerprint = text.markup
        if fingerprint != self._shown:
            lengths = tuple(line.cell_len for line in lines)
            self._shown = fingerprint
            self.update(text, layout=lengths != self._lengths)
            self._lengths = lengths

    @property
    def plain(self) -> str:
        """The panel's text without styles (for tests and screen readers)."""
        return "" if self._shown is None else Text.from_markup(self._shown).plain
