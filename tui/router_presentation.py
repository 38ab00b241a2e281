"""What the router view shows for each entry of the gateway's table, as styled text (pure).

An entry and the current loop time in, cells (text, style) out, so the widget
only compares and paints them. Everything the gateway sent (description,
internal client, remote host) goes through :func:`~tui.safe_text.sanitize`: a
UPnP description is whatever any host on the LAN chose to write.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from engine.errors import NatDeckError
from engine.protocols import protocol_name
from engine.router_view import MADE_BY_LABELS, RouterEntry, RouterSummary

from .formatting import countdown, endpoint
from .presentation import Cell, Cells
from .safe_text import sanitize

__all__ = ["ROUTER_COLUMNS", "RouterStatus", "router_cells", "skipped_text"]

#: (column key, heading, width) of the router table; None sizes a column to its content.
ROUTER_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("protocol", "Proto", None),
    ("external", "Ext.", None),
    ("internal", "Internal", None),
    ("lease", "Lease", 7),
    ("enabled", "On", None),
    ("who", "Who", None),
    ("description", "Description", None),
)


def skipped_text(skipped: int) -> str:
    """``2 entries the gateway listed could not be read`` (the view's status line and
    ``natdeck list`` say it)."""
    return (f"{skipped} entr{'y' if skipped == 1 else 'ies'} the gateway listed could not "
            "be read")


_WHO_STYLE = {"ours": "bold cyan", "this": "cyan", "other": ""}


def _who(entry: RouterEntry) -> Cell:
    host = "ours" if entry.ours is not None else ("this" if entry.this_host else "other")
    via = MADE_BY_LABELS.get(entry.mapping.made_by, sanitize(entry.mapping.made_by, limit=8))
    return (f"{host} {via}", _WHO_STYLE[host])


def router_cells(entry: RouterEntry, now: float) -> Cells:
    """The cells of one entry's row at loop time ``now``, in :data:`ROUTER_COLUMNS` order.

    A new entry is highlighted for a moment, a vanished one struck through until it
    leaves the table, a disabled one dimmed.
    """
    m = entry.mapping
    if entry.gone_at is not None:
        row_style = "strike red"
    elif entry.fresh(now):
        row_style = "bold green"
    elif not m.enabled:
        row_style = "dim"
    else:
        row_style = ""
    remaining = entry.remaining(now)
    if remaining is None:
        lease: Cell = ("perm.", row_style or "dim")
    elif remaining <= 0:
        lease = ("expired", row_style or "bold red")
    else:
        lease = (countdown(remaining), row_style or ("yellow" if remaining < 60 else ""))
    who_text, who_style = _who(entry)
    external = str(m.external_port)
    if m.remote_host:
        external += f" ←{sanitize(m.remote_host, limit=40)}"
    return (
        (protocol_name(m.protocol), row_style),
        (external, row_style or "bold"),
        (endpoint(sanitize(str(m.internal_client), limit=45), m.internal_port), row_style),
        lease,
        ("yes" if m.enabled else "no", row_style or ("" if m.enabled else "yellow")),
        (who_text, row_style or who_style),
        (sanitize(m.description, limit=60), row_style),
    )


@dataclass(frozen=True, slots=True)
class RouterStatus:
    """What the two lines above the router table say."""

    summary: RouterSummary
    sort_by: str
    reverse: bool
    filter_text: str | None
    """The filter as typed (None: no filter)."""
    shown: int
    listed: bool
    """Whether the gateway has listed its table at least once."""
    unavailable: NatDeckError | None
    """Why the last listing failed."""
    answer: Text | None
    """The gateway's answer to the last delete."""
    interval: float
    retry_in: float | None = None
    """Seconds to the next try after a failed listing (0: trying now; None: no failure)."""
    skipped: int = 0
    """Entries the last good listing held but could not read (not in the table)."""

    def text(self) -> Text:
        """The summary, the order and the filter; then the state of the listing."""
        line = Text(str(self.summary), style="bold")
        arrow = " ↑" if self.reverse else ""
        line.append(f"  ·  sorted by {self.sort_by}{arrow}", style="dim")
        if self.filter_text is not None:
            typed = sanitize(self.filter_text, limit=40)
            line.append(f"  ·  filter {typed}: {self.shown} shown", style="cyan")
        if self.retry_in is not None:
            # The poller backs off after failures (an SSDP search nothing answers): say when
            # it asks again; r asks now.
            line.append("  ·  asking again…" if self.retry_in < 0.5 else
                        f"  ·  retry in {countdown(self.retry_in)} (r: now)", style="yellow")
        line.append("\n")
        why = None if self.unavailable is None else sanitize(str(self.unavailable), limit=160)
        if not self.listed:
            if why is None:
                line.append("Listing the gateway's mappings…", style="dim")
            else:
                line.append(f"{why}. Showing natdeck's own mappings.", style="yellow")
        elif why is not None:
            line.append(f"The last listing failed: {why}", style="yellow")
        else:
            if self.skipped:
                # First: the table is not the gateway's whole table.
                line.append(f"{skipped_text(self.skipped)} · ", style="yellow")
            if self.answer is not None:
                line.append_text(self.answer)
            else:
                line.append(f"Listed every {self.interval:g} s · d deletes another host's · "
                            "Enter on ours shows it", style="dim")
        return line
