"""The help screen: a screen's keys, built from its live bindings, and what it shows.

The main screen's help explains natdeck and the mapping states (:data:`MAIN_HELP`); the
router view's, the gateway's table and its Who column (:data:`ROUTER_HELP`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["MAIN_HELP", "ROUTER_HELP", "HelpBody", "HelpScreen", "KeyHelp"]

#: (key as shown, description, tooltip).
KeyHelp = tuple[str, str, str]

_ABOUT = (
    "natdeck maps ports on your gateway with PCP (RFC 6887), NAT-PMP (RFC 6886) or UPnP IGD "
    "and keeps them alive: renewals at 1/2-5/8 of the lifetime (PCP) or 1/2 (NAT-PMP, UPnP); "
    "after a gateway restart (its epoch went back; UPnP: a look-up that no longer finds it) "
    "or an announcement (a new external address, a PCP ANNOUNCE) it asks for every mapping "
    "again. Select a row: the line under the table says what the gateway answered last and "
    "what natdeck is doing about it. Wherever it stands, d sends the gateway a delete and r "
    "asks now."
)

#: Each state by what natdeck is doing about it, and what d and r do then.
_STATES = (
    ("requesting…", "the first request is on its way; d waits for the answer, then deletes"),
    ("active", "granted; natdeck renews it before it expires. r renews now, d deletes"),
    ("renewing", "a renewal is in flight, or is retried in the RFC's next window while the "
                 "mapping still holds; nothing to do. r renews now, d deletes"),
    ("confirming…", "the gateway announced a change: natdeck asks for the mapping again "
                    "within a few seconds, to be sure the gateway still holds it (Expires "
                    "shows the last grant's, with a ?); nothing to do. r asks now, d deletes"),
    ("lost", "the gateway no longer holds it, as far as natdeck can tell (it expired, or the "
             "gateway restarted or forgot it): natdeck asks for it again on its own, backing "
             "off to once a minute; nothing to do. r asks now; d stops that and sends the "
             "gateway a delete anyway"),
    ("failed", "the gateway refused with a lasting error (the line under the table says "
               "which): natdeck asks again when the gateway restarts or announces a change. r "
               "asks now; d stops that and sends the gateway a delete"),
    ("removing…", "a delete is on its way to the gateway; the row goes once it is answered"),
    ("removed", "deleted at the gateway; natdeck no longer manages it"),
)


@dataclass(frozen=True, slots=True)
class HelpBody:
    """What a help screen says besides the keys: a paragraph, then a glossary."""

    about: str
    glossary_title: str
    glossary: tuple[tuple[str, str], ...]
    """(term, meaning) rows."""


#: The main screen's help: natdeck, then each mapping state.
MAIN_HELP = HelpBody(_ABOUT, "Mapping states", _STATES)

#: The router view's help: the gateway's whole table, then what its Who and Lease cells say.
ROUTER_HELP = HelpBody(
    "The router view lists every mapping the gateway holds, whoever made it, as its UPnP "
    "IGD lists them (NAT-PMP and PCP cannot list a table; on miniupnpd the three share "
    "one), refreshed every few seconds while the view is open. New entries are highlighted "
    "and logged, vanished ones struck through for a moment. Enter on one of natdeck's own "
    "selects it in the main table; d deletes another host's, after a confirmation, and the "
    "gateway's answer (a refusal too) is shown above the table. A gateway that cannot list "
    "its table is said to be so, and natdeck's own mappings are shown instead.",
    "Reading the table",
    (("ours", "one of natdeck's own mappings (unmap it in the main table)"),
     ("this", "another program on this host made it"),
     ("other", "another host on the network made it"),
     ("PCP, NAT-PMP, UPnP", "the protocol that made it, as the gateway's description tells"),
     ("perm.", "a lease without end (UPnP's 0): it stays until deleted")),
)


class HelpScreen(ModalScreen[None]):
    """Lists the gateway panel's notes in full, the keys (from the bindings the screen
    below has right now) and ``body``'s glossary (the main screen's: the states)."""

    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close",
                tooltip="Back to the screen below"),
    ]

    def __init__(self, keys: Sequence[KeyHelp], notes: Sequence[Text] = (),
                 body: HelpBody = MAIN_HELP) -> None:
        super().__init__()
        self._keys = tuple(keys)
        self._body = body
        self._notes = tuple(notes)
        """What the gateway panel says in a word, in full (announcements off, a warning)."""

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
        for name, meaning in self._body.glossary:
            states.add_row(Text(name), Text(meaning, style="dim"))
        with VerticalScroll(id="help-body") as body:
            body.border_title = "Help"
            body.border_subtitle = "esc to close"
            yield Static(Text(self._body.about), classes="help-about")
            if self._notes:
                yield Static(Text("The gateway now", style="bold underline"),
                             classes="help-heading")
                yield Static(Text("\n").join(self._notes), id="help-notes")
            yield Static(Text("Keys", style="bold underline"), classes="help-heading")
            yield Static(table, id="help-keys")
            yield Static(Text(self._body.glossary_title, style="bold underline"),
                         classes="help-heading")
            yield Static(states, id="help-states")

    def action_close(self) -> None:
        """Back to the screen below."""
        self.dismiss(None)
