"""The event log: every request, answer, retry, error and change, time-stamped."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widgets import RichLog

from ..formatting import clock_time

__all__ = ["EventLog"]

#: Lines kept; older ones scroll away (a long session must not grow without bound).
MAX_LINES = 2000


class EventLog(RichLog):
    """A scrolling log of styled lines.

    Lines are :class:`~rich.text.Text` built from sanitized strings; markup is
    off, so nothing a gateway sends can restyle the screen. ``timestamp``
    turns a wall-clock time into the stamp at the start of each line (the
    snapshot tests fix it).
    """

    def __init__(self, *, timestamp: Callable[[float], str] = clock_time,
                 id: str | None = None) -> None:
        super().__init__(max_lines=MAX_LINES, markup=False, highlight=False, wrap=True,
                         auto_scroll=True, id=id)
        self.border_title = "Events"
        self.timestamp = timestamp
        self.lines_written: list[str] = []
        """Plain text of the lines written (the last :data:`MAX_LINES`), for tests."""

    def add(self, wall: float, text: str, style: str = "") -> None:
        """Append one line: ``text`` must already be sanitized."""
        line = Text(f"{self.timestamp(wall)} ", style="dim")
        line.append(text, style=style)
        self.lines_written.append(line.plain)
        if len(self.lines_written) > MAX_LINES:
            del self.lines_written[: len(self.lines_written) - MAX_LINES]
        self.write(line)
