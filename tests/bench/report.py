"""Markdown tables and the few statistics the benchmarks report.

Every benchmark prints Markdown: a table per question, with a line or two saying what
was measured. Times are medians over interleaved rounds (natdeck and its peers take
turns in each round, so a noisy moment on the machine hits all of them alike).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["DASH", "TIMES", "Goal", "Table", "goal_table", "median", "ms", "ratio", "spread",
           "us"]

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


@dataclass(frozen=True)
class Goal:
    """One goal of issue 15, measured: ``value`` should be at most ``target``.

    ``unit`` is how both print: ``"x"`` (a ratio, printed with the multiplication sign),
    ``"ms"``, ``"us"`` or ``""`` (a count). ``detail`` names the peers' numbers from the same
    rounds, so the row can be read on its own.
    """

    name: str
    value: float
    target: float
    unit: str
    detail: str = ""

    @property
    def met(self) -> bool | None:
        """Whether the goal is met (None: not measured)."""
        if self.value != self.value:
            return None
        return self.value <= self.target

    def show(self, number: float) -> str:
        """``number`` in this goal's unit."""
        if number != number:
            return "—"
        if self.unit == "x":
            return f"{number:.2f}{TIMES}"
        if self.unit == "ms":
            return f"{number * 1e3:,.0f} ms" if number >= 0.01 else f"{number * 1e3:.1f} ms"
        if self.unit == "us":
            return f"{number * 1e6:,.0f} µs"
        return f"{number:,.0f}"


def goal_table(goals: Iterable[Goal]) -> str:
    """The goals as a Markdown table: measured, target, met, and the peers beside it."""
    table = Table(["goal", "measured", "target", "met", "in the same rounds"], "lrrcl")
    for goal in goals:
        met = {True: "yes", False: "**no**", None: "—"}[goal.met]
        table.add(goal.name, goal.show(goal.value), f"≤ {goal.show(goal.target)}", met,
                  goal.detail)
    return table.render()
