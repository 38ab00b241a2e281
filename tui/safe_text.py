"""Making text that came from the network (or from anything it touched) safe to show.

A gateway controls some of the text the engine reports: the reprs of the
messages it sent, addresses, option payloads. None of it may reach the terminal
as control characters (which could move the cursor or change the terminal's
state) or as Textual/Rich markup (which could restyle or hide the screen). The
TUI therefore builds every line as a :class:`rich.text.Text` (never parsed as
markup) from strings that went through :func:`sanitize` first.
"""

from __future__ import annotations

import unicodedata

from rich.cells import cell_len
from rich.text import Text

__all__ = ["MAX_LINE", "clip", "sanitize"]

#: Longest line the event log shows; longer text is cut with an ellipsis.
MAX_LINE = 400


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def sanitize(text: str, *, limit: int = MAX_LINE) -> str:
    """Return ``text`` on one line, with every control or format character escaped.

    Newlines and tabs become spaces (a log line stays one line); other characters
    of the Unicode categories C* (controls, format characters such as bidi
    overrides, surrogates, unassigned) become ``\\xNN``/``\\uNNNN`` escapes. The
    result is cut to ``limit`` characters.
    """
    out: list[str] = []
    for char in text:
        if char in "\n\r\t":
            out.append(" ")
        elif unicodedata.category(char).startswith("C"):
            out.append(_escape(char))
        else:
            out.append(char)
    result = "".join(out)
    if len(result) > limit:
        result = result[: max(limit - 1, 0)] + "…"
    return result


def clip(text: str, cells: int) -> str:
    """``text`` cut to ``cells`` terminal cells, ending in an ellipsis where it was cut
    (measured in cells, not characters: a wide character takes two)."""
    if cell_len(text) <= cells:
        return text
    cut = Text(text)
    cut.truncate(cells, overflow="ellipsis")
    return cut.plain
