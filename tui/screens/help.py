"""The help screen: every key of the main screen, built from the live bindings."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["HelpScreen", "KeyHelp"]

#: (key as shown, description, tooltip).
KeyHelp = tuple[str, str, str]

_ABOUT = (
    "natdeck maps ports on your gateway with PCP (RFC 6887), NAT-PMP (RFC 6886) or UPnP IGD "
    "and keeps them alive: renewals at 1/2-5/8 of the lifetime (PCP) or 1/2 (NAT-PMP, UPnP), "
    "recovery after a gateway restart (epoch check; UPnP: a look-up that no longer finds it), "
    "and the external address updated when the gateway announces a change."
)

_STATES = (
    ("requesting…", "asked for; waiting for the gateway's answer"),
    ("active", "granted; renewed before it expires"),
    ("renewing", "a renewal is in flight or being retried"),
    ("lost", "the gateway no longer holds it (it expired, or the gateway restarted or forgot "
             "it): natdeck is asking for it again on its own, nothing to do; d stops that "
             "and sends the gateway a delete"),
    ("failed", "refused with a lasting error: natdeck asks again when something changes, r "
               "asks now; d stops that and sends the gateway a delete"),
    ("removing…", "a delete is on its way to the gateway"),
)


class HelpScreen(ModalScreen[None]):
    """Lists the keys (from the bindings the main screen has right now) and the states."""

    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close",
                tooltip="Back to the main screen"),
    ]

    def __init__(self, keys: Sequence[KeyHelp]) -> None:
        super().__init__()
        self._keys = tuple(keys)

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, description, tooltip in self._keys:
            table.add_row(Text(key), Text(description), Text(tooltip, style="dim"))
        states = Table.grid(padding=(0, 2))
        states.add_column(style="bold", no_wrap=True)
        states.add_column()
        for name, meaning in _STATES:
            states.add_row(Text(name), Text(meaning, style="dim"))
        with VerticalScroll(id="help-body") as body:
            body.border_title = "Help"
            body.border_subtitle = "esc to close"
            yield Static(Text(_ABOUT), classes="help-about")
            yield Static(Text("Keys", style="bold underline"), classes="help-heading")
            yield Static(table, id="help-keys")
            yield Static(Text("Mapping states", style="bold underline"), classes="help-heading")
            yield Static(states, id="help-states")

    def action_close(self) -> None:
        """Back to the main screen."""
        self.dismiss(None)
