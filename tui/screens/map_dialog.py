"""The map dialog: a typed form for one mapping, checked before anything is sent.

What is mapped is what the fields show when Map (or Enter) is pressed: the
fields are :class:`~tui.widgets.FormInput`, which apply keys in the order they
arrive however fast they come (see its module), Tab moves on only after the
keys before it reached their field, and a field's text is selected when it is
focused, so typing replaces it.
"""

from __future__ import annotations

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, RadioButton, RadioSet, Static

from ..map_request import VIAS, MapRequest, Via, parse_map_form
from ..widgets import FormInput

__all__ = ["VIA_NOTES", "MapDialog"]

#: (field id, label, hint shown while the field is valid).
_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("protocol", "Protocol", "tcp, udp, all, a number 0-255 or a name (gre)"),
    ("internal_port", "Internal port", "the port your program listens on, 1-65535"),
    ("external_port", "External port", "suggested; blank: the same as the internal port"),
    ("lifetime", "Lifetime", "seconds, or 30m, 2h, 1d; the gateway may grant less"),
)

_VIA_LABELS: dict[Via, str] = {"auto": "auto", "pcp": "PCP", "natpmp": "NAT-PMP",
                               "upnp": "UPnP"}

#: The note under the Via choice, for the choice selected.
VIA_NOTES: dict[Via, str] = {
    "auto": "auto: PCP, else NAT-PMP, else UPnP IGD (what answers)",
    "pcp": "PCP only (RFC 6887): tcp, udp and other protocols; IPv4, IPv6",
    "natpmp": "NAT-PMP only (RFC 6886): tcp and udp over IPv4",
    "upnp": "UPnP IGD only (most home routers): tcp and udp over IPv4",
}


class MapDialog(ModalScreen[MapRequest | None]):
    """Ask for a mapping. Dismisses with a :class:`MapRequest`, or ``None`` on cancel.

    ``lifetime`` is the manager's default, shown as the Lifetime field's placeholder:
    a blank field asks for it.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="map_dialog.cancel",
                tooltip="Close the dialog without mapping anything"),
        # Priority: focus moves when Tab arrives, after the keys before it were handed to
        # the field they were typed in, and before the keys after it are handed out.
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False,
                priority=True),
    ]

    def __init__(self, *, via: Via = "auto", lifetime: int | None = None,
                 protocol: str = "tcp", internal_port: str = "",
                 external_port: str = "") -> None:
        super().__init__()
        self._via: Via = via
        self._initial = {
            "protocol": protocol,
            "internal_port": internal_port,
            "external_port": external_port,
            "lifetime": "",
        }
        self._placeholders = {field: hint.split(";")[0] for field, _, hint in _FIELDS}
        if lifetime is not None:
            self._placeholders["lifetime"] = f"{lifetime} (the default)"
        self.errors: dict[str, str] = {}
        """The messages shown after the last submit, by field (for tests)."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="map-dialog") as dialog:
            dialog.border_title = "Map a port"
            dialog.border_subtitle = "Enter: map · Esc: cancel"
            for field, label, hint in _FIELDS:
                with Horizontal(classes="field"):
                    yield Label(label, classes="field-label")
                    yield FormInput(value=self._initial[field], id=field,
                                    placeholder=self._placeholders[field],
                                    select_on_focus=True)
                yield Static(Text(hint), id=f"{field}-note", classes="field-note")
            with Horizontal(classes="field"):
                yield Label("Via", classes="field-label")
                with RadioSet(id="via"):
                    for via in VIAS:
                        yield RadioButton(_VIA_LABELS[via], value=via == self._via,
                                          id=f"via-{via}")
            yield Static(Text(VIA_NOTES[self._via]), id="via-note", classes="field-note")
            with Horizontal(id="map-buttons"):
                yield Button("Map", variant="primary", id="map-submit", compact=True)
                yield Button("Cancel", id="map-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#internal_port", FormInput).focus()

    def _value(self, field: str) -> str:
        return self.query_one(f"#{field}", FormInput).value

    def _chosen_via(self) -> str:
        pressed = self.query_one("#via", RadioSet).pressed_button
        if pressed is None or pressed.id is None:
            return ""
        return pressed.id.removeprefix("via-")

    def _hint(self, field: str) -> str:
        if field == "via":
            chosen = self._chosen_via()
            return next((VIA_NOTES[v] for v in VIAS if v == chosen), "")
        return next(hint for f, _, hint in _FIELDS if f == field)

    def _show_note(self, field: str, error: str | None) -> None:
        note = self.query_one(f"#{field}-note", Static)
        note.set_class(error is not None, "-error")
        note.update(Text(error if error is not None else self._hint(field)))
        if field != "via":
            self.query_one(f"#{field}", FormInput).set_class(error is not None, "-invalid")

    def submit(self) -> None:
        """Check the form as it shows now; dismiss with the request, or show what is wrong."""
        result = parse_map_form(self._value("protocol"), self._value("internal_port"),
                                self._value("external_port"), self._value("lifetime"),
                                self._chosen_via())
        if isinstance(result, MapRequest):
            self.errors = {}
            self.dismiss(result)
            return
        self.errors = dict(result)
        for field in (*(f for f, _, _ in _FIELDS), "via"):
            self._show_note(field, result.get(field))
        first = next(f for f, _, _ in (*_FIELDS, ("via", "", "")) if f in result)
        self.query_one(f"#{first}").focus()

    def on_key(self, event: events.Key) -> None:
        # Enter submits from the Via choice too (RadioSet's own Enter would only select
        # the highlighted choice; Space still does that). Handled here, before the key
        # reaches the bindings, which run only after it bubbled up to the app.
        if event.key == "enter" and isinstance(self.focused, RadioSet):
            event.stop()
            event.prevent_default()
            self.submit()

    @on(FormInput.Submitted)
    def _submitted(self) -> None:
        self.submit()

    @on(FormInput.Changed)
    def _changed(self, event: FormInput.Changed) -> None:
        field = event.input.id
        if field is not None and field in self.errors:
            del self.errors[field]
            self._show_note(field, None)

    @on(RadioSet.Changed, "#via")
    def _via_changed(self) -> None:
        self.errors.pop("via", None)
        self._show_note("via", None)

    @on(Button.Pressed, "#map-submit")
    def _map_pressed(self) -> None:
        self.submit()

    @on(Button.Pressed, "#map-cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        """Close without mapping."""
        self.dismiss(None)
