"""The confirmation asked before deleting a mapping from the gateway's table.

Deleting another host's mapping cuts its connections (a game console, a NAS);
nothing is deleted without this dialog, which names the host and the port.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from engine.router_view import RouterEntry

from ..formatting import endpoint
from ..safe_text import sanitize

__all__ = ["ConfirmDelete"]


class ConfirmDelete(ModalScreen[bool]):
    """Ask whether to delete ``entry``'s mapping; dismisses with True only on "Delete"."""

    BINDINGS = [
        Binding("escape,n", "cancel", "Keep it", id="confirm_delete.cancel",
                tooltip="Close without deleting anything"),
        Binding("y", "confirm", "Delete", id="confirm_delete.confirm",
                tooltip="Ask the gateway to delete this mapping"),
    ]

    def __init__(self, entry: RouterEntry) -> None:
        super().__init__()
        self.entry = entry

    @property
    def question(self) -> str:
        """``Delete tcp 41900 of host 198.18.0.3 (to 198.18.0.3:41900, "Transmission")?``"""
        m = self.entry.mapping
        client = sanitize(str(m.internal_client), limit=45)
        target = endpoint(client, m.internal_port)
        description = sanitize(m.description, limit=60)
        return (f"Delete {sanitize(m.label, limit=80)} of host {client} "
                f"(to {target}, \u201c{description}\u201d)?")

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-delete") as box:
            box.border_title = "Delete a mapping"
            yield Static(Text(self.question, style="bold"), id="confirm-question")
            yield Static(Text("The host loses this port at once; the gateway may refuse "
                              "(miniupnpd's secure_mode lets a host delete only its own).",
                              style="dim"), id="confirm-note")
            with Horizontal(id="confirm-buttons"):
                yield Button("Delete", variant="error", id="confirm-yes")
                yield Button("Keep it", variant="primary", id="confirm-no")

    def on_mount(self) -> None:
        # The safe answer has the focus: Enter alone deletes nothing.
        self.query_one("#confirm-no", Button).focus()

    @on(Button.Pressed, "#confirm-yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no")
    def _no(self) -> None:
        self.dismiss(False)

    def action_confirm(self) -> None:
        """Delete it."""
        self.dismiss(True)

    def action_cancel(self) -> None:
        """Keep it."""
        self.dismiss(False)
