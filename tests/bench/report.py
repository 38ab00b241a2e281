"""Markdown tables and the few statistics the benchmarks report.

Every benchmark prints Markdown: a table per question, with a line or two saying what
was measured. Times are medians over interleaved rounds (natdeck and its peers take
turns in each round, so a noisy moment on the machine hits all of them alike).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

__all__ = ["DASH", "TIMES", "Table", "median", "ms", "ratio", "spread", "us"]

#: For ratios ("1.15" then this): Markdown renders it; ruff would flag it in a literal.
TIMES = "\N{MULTIPLICATION SIGN}"
#: For ranges ("12" this "15").
DASH = "\N{EN DASH}"


def median(values: Iterable[float]) -> float:
    """Median, or NaN for no values."""
    data = list(values)
    return statistics.median(data) if data else float("nan")


def spread(values: Iterable[float]) -> str:
    """``min-max`` of the values, in ms (shows how noisy the rounds were)."""
    data = list(values)
    if len(data) < 2:
        return "—"
    return f"{min(data) * 1e3:,.0f}{DASH}{max(data) * 1e3:,.0f}"


def ms(seconds: float, digits: int = 0) -> str:
    """Seconds as milliseconds, e.g. ``1,234`` or ``12.3``."""
    if seconds != seconds:  # NaN
        return "—"
    return f"{seconds * 1e3:,.{digits}f}"


def us(seconds: float, digits: int = 0) -> str:
    """Seconds as microseconds."""
    if seconds != seconds:
        return "—"
    return f"{seconds * 1e6:,.{digits}f}"


def ratio(value: float, reference: float) -> str:
    """``1.23`` and the multiplication sign: value over reference."""
    if reference != reference or value != value or reference <= 0:
        return "—"
    return f"{value / reference:.2f}{TIMES}"


class Table:
    """A Markdown table built row by row; ``align`` is ``l``/``r`` per column."""

    def __init__(self, headers: Sequence[str], align: str | None = None) -> None:
        self.headers = list(headers)
        self.align = align or "l" + "r" * (len(headers) - 1)
        if len(self.align) != len(self.headers):
            raise ValueError("one alignment letter per column")
        self.rows: list[list[str]] = []

    def add(self, *cells: object) -> None:
        """Add a row (cells are turned into text)."""
        if len(cells) != len(self.headers):
            raise ValueError(f"{len(cells)} cells for {len(self.headers)} columns")
        self.rows.append([str(cell) for cell in cells])

    def render(self) -> str:
        """The table as Markdown text."""
        marks = {"l": "---", "r": "---:", "c": ":---:"}
        lines = ["| " + " | ".join(self.headers) + " |",
                 "|" + "|".join(marks[a] for a in self.align) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()
