"""The map dialog: a typed form for one mapping, checked before anything is sent."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from ..map_request import VIAS, MapRequest, Via, parse_map_form

__all__ = ["MapDialog"]

#: (field id, label, hint shown while the field is valid).
_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("protocol", "Protocol", "tcp, udp, all, a number 0-255 or a name (gre)"),
    ("internal_port", "Internal port", "the port your program listens on, 1-65535"),
    ("external_port", "External port", "suggested; blank: the same as the internal port"),
    ("lifetime", "Lifetime", "seconds, or 30m, 2h, 1d; the gateway may grant less"),
)

_VIA_LABELS: dict[Via, str] = {"auto": "auto", "pcp": "PCP", "natpmp": "NAT-PMP"}


class MapDialog(ModalScreen[MapRequest | None]):
    """Ask for a mapping. Dismisses with a :class:`MapRequest`, or ``None`` on cancel."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="map_dialog.cancel",
                tooltip="Close the dialog without mapping anything"),
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
            "lifetime": "" if lifetime is None else str(lifetime),
        }
        self.errors: dict[str, str] = {}
        """The messages shown after the last submit, by field (for tests)."""

    def compose(self) -> ComposeResult:
        with Vertical(id="map-dialog") as dialog:
            dialog.border_title = "Map a port"
            for field, label, hint in _FIELDS:
                with Horizontal(classes="field"):
                    yield Label(label, classes="field-label")
                    yield Input(value=self._initial[field], id=field,
                                placeholder=hint.split(";")[0], select_on_focus=False)
                yield Static(Text(hint), id=f"{field}-note", classes="field-note")
            with Horizontal(classes="field"):
                yield Label("Via", classes="field-label")
                with RadioSet(id="via"):
                    for via in VIAS:
                        yield RadioButton(_VIA_LABELS[via], value=via == self._via,
                                          id=f"via-{via}")
            yield Static(Text("auto: PCP, falling back to NAT-PMP"), id="via-note",
                         classes="field-note")
            with Horizontal(id="map-buttons"):
                yield Button("Map", variant="primary", id="map-submit")
                yield Button("Cancel", id="map-cancel")

    def on_mount(self) -> None:
        self.query_one("#internal_port", Input).focus()

    def _value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value

    def _chosen_via(self) -> str:
        pressed = self.query_one("#via", RadioSet).pressed_button
        if pressed is None or pressed.id is None:
            return ""
        return pressed.id.removeprefix("via-")

    def _show_note(self, field: str, error: str | None) -> None:
        note = self.query_one(f"#{field}-note", Static)
        hints = {f: h for f, _, h in _FIELDS}
        hints["via"] = "auto: PCP, falling back to NAT-PMP"
        note.set_class(error is not None, "-error")
        note.update(Text(error if error is not None else hints[field]))
        if field != "via":
            self.query_one(f"#{field}", Input).set_class(error is not None, "-invalid")

    def submit(self) -> None:
        """Check the form; dismiss with the request, or show what is wrong."""
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

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.submit()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        field = event.input.id
        if field is not None and field in self.errors:
            del self.errors[field]
            self._show_note(field, None)

    @on(Button.Pressed, "#map-submit")
    def _map_pressed(self) -> None:
        self.submit()

    @on(Button.Pressed, "#map-cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        """Close without mapping."""
        self.dismiss(None)
