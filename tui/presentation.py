"""What the widgets show, computed from engine state and a clock, as styled text.

Pure: a :class:`~engine.events.ManagedMapping` or a
:class:`~engine.events.GatewayStatus` and the current loop time in, plain
strings with a style out. The widgets only compare and paint these, which
keeps the per-second tick cheap (a tuple comparison per row) and lets tests
check the words without a screen. Every string that may carry text from the
network goes through :func:`~tui.safe_text.sanitize`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from engine.errors import GatewayTimeout, NatDeckError, ResultCodeError
from engine.events import GatewayStatus, ManagedMapping, MappingState
from engine.protocols import protocol_name

from .formatting import PROTOCOL_LABELS, countdown, duration, endpoint, rtt, since
from .safe_text import clip, sanitize

__all__ = [
    "MAPPING_COLUMNS",
    "STATE_REASON_CELLS",
    "Cell",
    "Cells",
    "EngineNote",
    "gateway_lines",
    "gateway_notes",
    "mapping_cells",
    "other_port",
    "short_error",
]

#: A cell: its text and its Rich style ("" for the default).
Cell = tuple[str, str]
Cells = tuple[Cell, ...]

#: (column key, heading, width) of the mappings table, in order. A width of None sizes
#: the column to its content: it grows when a longer value arrives (a countdown going
#: from 9:59 to 1:59:59, a state with its reason), and shrinks once the widest value is
#: gone (a count of the cells of each width: a tick never re-measures the table).
MAPPING_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("mapping", "Mapping", None),
    ("external", "External", None),
    ("via", "Via", None),
    ("lifetime", "Lifetime", None),
    ("expires", "Expires", None),
    ("renewal", "Renews", None),
    ("state", "State", None),
)

#: Longest reason shown in the State column; the detail line under the table has all of it.
STATE_REASON_CELLS = 28

_STATE_STYLE = {
    MappingState.REQUESTING: "cyan",
    MappingState.ACTIVE: "green",
    MappingState.RENEWING: "yellow",
    MappingState.LOST: "bold red",
    MappingState.FAILED: "bold red",
    MappingState.CONFIRMING: "bold yellow",
    MappingState.REMOVING: "dim",
    MappingState.REMOVED: "dim",
}


def short_error(error: NatDeckError) -> str:
    """A few words for a table cell: ``NO_RESOURCES for 30s``, ``no answer (9 tries)``.

    For PCP the time is the error lifetime: how long the gateway says the condition
    lasts (RFC 6887 §7.4, §15); none is shown when it gave 0. The detail line and the
    event log have the whole sentence.
    """
    if isinstance(error, ResultCodeError):
        lasting = f" for {duration(error.error_lifetime)}" if error.error_lifetime else ""
        return f"{error.name}{lasting}"
    if isinstance(error, GatewayTimeout):
        return f"no answer ({error.tries} {'try' if error.tries == 1 else 'tries'})"
    return sanitize(str(error), limit=STATE_REASON_CELLS)


#: Each state in a word, for a State column without room for a reason (under 100 columns).
_STATE_WORDS = {
    MappingState.REQUESTING: "requesting…",
    MappingState.CONFIRMING: "confirming…",
    MappingState.REMOVING: "removing…",
}


def _state_cell(mapping: ManagedMapping, brief: bool = False,
                cells: int | None = None) -> Cell:
    text, style = _state_words(mapping, brief)
    return (text if cells is None else clip(text, cells), style)


def _state_words(mapping: ManagedMapping, brief: bool) -> Cell:
    state = mapping.state
    style = _STATE_STYLE.get(state, "")
    if state is MappingState.ACTIVE and (mapping.reason or "").startswith("delete failed"):
        # A d that failed hands the mapping back active: a bare "active" would read as if
        # d had never been pressed. The detail line has the error.
        return ("not deleted" if brief else "active (delete failed)", "yellow")
    if brief:
        # The reason is in the detail line under the table, and in the event log.
        return (_STATE_WORDS.get(state, str(state.value)), style)
    why = ""
    if mapping.error is not None:
        why = short_error(mapping.error)
    elif mapping.reason:
        why = sanitize(mapping.reason, limit=STATE_REASON_CELLS)
    if state is MappingState.REQUESTING:
        return ("requesting…", style)
    if state is MappingState.REMOVING:
        return ("removing…", style)
    if state is MappingState.REMOVED:
        return ("removed", style)
    if state is MappingState.CONFIRMING:
        # Why is the same for every row (the gateway's announcement): the detail line
        # and the event log say it; a failed confirmation says its error here.
        return (f"confirming: {why}" if mapping.error is not None else "confirming…", style)
    if state is MappingState.RENEWING:
        if mapping.failures:
            failed = f"renewing ({mapping.failures} failed)"
            return (f"{failed}: {why}" if why else failed, style)
        return ("renewing", style)
    if state in (MappingState.LOST, MappingState.FAILED):
        return (f"{state.value}: {why}" if why else state.value, style)
    return (str(state.value), style)


def other_port(mapping: ManagedMapping, suggested: int | None = None) -> int | None:
    """The suggested external port when the gateway granted another one, else None.

    The engine's own record (``mapping.suggested_external_port``) wins; ``suggested`` (what
    the app remembers asking) is read only where the engine has none."""
    if mapping.suggested_external_port is not None:
        return mapping.other_port()
    if suggested is None or mapping.external_port is None:
        return None
    return suggested if mapping.external_port != suggested else None


def _expires_cell(mapping: ManagedMapping, now: float) -> Cell:
    if mapping.permanent and mapping.state is not MappingState.LOST:
        return ("permanent", "")  # a UPnP lease without end: deleted on exit
    if mapping.state is MappingState.LOST:
        # The old countdown means nothing once the gateway no longer holds the mapping.
        return ("unknown", "dim")
    remaining = mapping.remaining(now)
    if remaining is None or mapping.state is MappingState.REMOVED:
        return ("—", "dim")
    if remaining <= 0:
        return ("expired", "bold red")
    if mapping.state is MappingState.CONFIRMING:
        # What the last grant said, if the gateway still holds it: the confirmation tells.
        return (f"{countdown(remaining)}?", "dim")
    return (countdown(remaining), "yellow" if remaining < 60 else "")


def _renewal_cell(mapping: ManagedMapping, now: float) -> Cell:
    until = mapping.until_renewal(now)
    if mapping.state is MappingState.LOST:
        if until is None or until <= 0:
            return ("re-requesting", "yellow")
        return (f"retry {countdown(until)}", "yellow")
    if mapping.permanent and mapping.state is MappingState.ACTIVE:
        return ("permanent", "dim")  # nothing to renew; looked up now and then
    if mapping.state is MappingState.CONFIRMING:
        if until is None or until <= 0:
            return ("asking now", "yellow")
        return (f"ask {countdown(until)}", "yellow")
    if until is None or mapping.state in (MappingState.REQUESTING, MappingState.REMOVING,
                                          MappingState.REMOVED):
        return ("—", "dim")
    if until <= 0:
        return ("now", "yellow")
    return (countdown(until), "")


def mapping_cells(mapping: ManagedMapping, now: float, *, suggested: int | None = None,
                  brief: bool = False, state_cells: int | None = None,
                  external_cells: int | None = None) -> Cells:
    """The cells of one mapping's row at loop time ``now``, in :data:`MAPPING_COLUMNS` order.

    A grant on another external port than the suggested one (the engine's record, else
    ``suggested``) says so in the External cell. ``brief``: the State cell is one word
    ("failed", not "failed: NOT_AUTHORIZED for 30m00s"), so that a row fits 80 columns.
    ``state_cells`` and ``external_cells``: the State or External cell is cut to that many
    cells (an ellipsis ends it), the room the other columns leave it.
    """
    if mapping.external_port is not None:
        where = endpoint(mapping.external_address, mapping.external_port)
        other = other_port(mapping, suggested)
        external: Cell = ((f"{where} (asked {other})", "bold yellow") if other is not None
                          else (where, "bold"))
    else:
        external = ("—", "dim")
    if external_cells is not None:
        external = (clip(external[0], external_cells), external[1])
    via: Cell = (PROTOCOL_LABELS.get(mapping.via, "—") if mapping.via else "—", "")
    if mapping.permanent:
        lifetime: Cell = ("permanent", "")
    elif mapping.lifetime:
        wanted = (f" (asked {mapping.requested_lifetime})"
                  if mapping.lifetime != mapping.requested_lifetime else "")
        lifetime = (f"{mapping.lifetime} s{wanted}", "")
    else:
        lifetime = (f"({mapping.requested_lifetime} s)", "dim")
    return (
        (f"{protocol_name(int(mapping.protocol))} {mapping.internal_port}", ""),
        external,
        via,
        lifetime,
        _expires_cell(mapping, now),
        _renewal_cell(mapping, now),
        _state_cell(mapping, brief, state_cells),
    )


@dataclass(frozen=True, slots=True)
class EngineNote:
    """A line about the app's own engine worker (starting, failed, quitting)."""

    text: str
    style: str = ""


def _answers(flag: bool | None, name: str) -> Text:
    if flag is None:
        return Text(f"{name} ?", style="dim")
    return Text(f"{name} yes", style="green") if flag else Text(f"{name} no", style="red")


def _pair(line: Text, label: str, value: str | Text, style: str = "") -> None:
    if line.plain:
        line.append("  ·  ", style="dim")
    line.append(f"{label} ", style="dim")
    if isinstance(value, Text):
        line.append_text(value)
    else:
        line.append(value, style=style)


def _igd_model(status: GatewayStatus) -> str:
    igd = status.igd
    if igd is None:
        return ""
    return " ".join(part for part in (sanitize(igd.manufacturer, limit=20),
                                      sanitize(igd.model_name, limit=28),
                                      sanitize(igd.model_number, limit=12)) if part)


def _igd_line(status: GatewayStatus, *, model: bool = True) -> Text:
    """``IGD My Router · AVM FRITZ!Box 7590 · IGDv2``: what the IGD said about itself
    (without ``model``: ``IGD My Router · IGDv2``)."""
    igd = status.igd
    assert igd is not None
    line = Text()
    _pair(line, "IGD", sanitize(igd.friendly_name, limit=32) or "?", "bold")
    if model and (model_text := _igd_model(status)):
        line.append("  ·  ", style="dim")
        line.append(model_text)
    line.append("  ·  ", style="dim")
    line.append(f"IGDv{igd.igd_version}")
    return line


def gateway_lines(status: GatewayStatus | None, now: float,
                  note: EngineNote | None = None, *, narrow: bool = False,
                  records_error: str | None = None) -> list[Text]:
    """The gateway panel's lines for ``status`` at loop time ``now``; ``narrow`` (under 70
    columns) puts the external address beside the RTT and leaves the IGD's model to help.
    ``records_error`` (``manager.records.error``) says why the state file is not written."""
    lines: list[Text] = []
    if status is None:
        lines.append(Text("No gateway yet.", style="dim"))
    else:
        # Four short lines rather than three long ones: each fits 80 columns with
        # typical values (narrow: 58, so that 60x20's eight rows hold the whole panel).
        first = Text()
        _pair(first, "Gateway", endpoint(status.gateway, status.port), "bold")
        _pair(first, "Local", str(status.local_address) if status.local_address else "?")
        external = Text() if narrow else first
        _pair(external, "External",
              str(status.external_address) if status.external_address else "?", "bold cyan")
        lines.append(first)
        if narrow:
            _pair(external, "RTT", rtt(status.rtt))
            lines.append(external)

        second = Text()
        answered = Text()
        answered.append_text(_answers(status.speaks_pcp, "PCP"))
        answered.append(", ", style="dim")
        answered.append_text(_answers(status.speaks_natpmp, "NAT-PMP"))
        answered.append(", ", style="dim")
        answered.append_text(_answers(status.speaks_upnp, "UPnP"))
        using = PROTOCOL_LABELS[status.via] if status.via else "?"
        protocol = Text(using, style="bold")
        protocol.append(" (answered: ", style="dim")
        protocol.append_text(answered)
        protocol.append(")", style="dim")
        _pair(second, "Protocol", protocol)
        if not narrow:
            _pair(second, "RTT", rtt(status.rtt))
        lines.append(second)
        if status.igd is not None:
            lines.append(_igd_line(status, model=not narrow))

        third = Text()
        if status.epoch is not None:
            age = 0.0 if status.last_contact is None else max(now - status.last_contact, 0.0)
            epoch = Text(str(status.epoch))
            epoch.append(f" (up {duration(status.epoch + age)})", style="dim")
            _pair(third, "Epoch", epoch)
        else:
            _pair(third, "Epoch", "?")
        if status.restarts:
            _pair(third, "Restarts", str(status.restarts), "yellow")
        if status.reachable is None:
            _pair(third, "Reachable", "not yet asked", "dim")
        elif status.reachable:
            _pair(third, "Reachable", "yes", "bold green")
        else:
            _pair(third, "Reachable", "NO", "bold red")
        lines.append(third)

        fourth = Text()
        last = None if status.last_contact is None else now - status.last_contact
        _pair(fourth, "Last contact", since(last))
        if status.listening:
            _pair(fourth, "Announcements", "listening", "green")
        elif status.listen_error:
            # Why natdeck cannot hear the gateway's notices takes a sentence: the panel has
            # no row for it at 60x20 (it would scroll); help (?) and the event log have it.
            _pair(fourth, "Announcements", "off", "yellow")
            fourth.append(" (? says why)", style="dim")
        else:
            _pair(fourth, "Announcements", "off", "dim")
        lines.append(fourth)

        if status.warning:
            # Its first clause: the panel has a few rows (40% of the screen, less at 60x20);
            # the event line of the address change has the whole warning.
            head, _, more = status.warning.partition(": ")
            line = Text("Warning: ", style="bold yellow")
            line.append(sanitize(head), style="yellow")
            if more:
                line.append(" (the event log says why)", style="dim")
            lines.append(line)
    if records_error is not None:
        lines.append(state_file_line(records_error))
    if note is not None:
        lines.append(Text(sanitize(note.text), style=note.style))
    return lines


def state_file_line(error: str) -> Text:
    """The panel's line while the state file cannot be written: until a write succeeds,
    'natdeck unmap' would not know the new mappings, were natdeck stopped."""
    line = Text("State file ", style="bold")
    line.append("not written: ", style="bold red")
    line.append(sanitize(error, limit=60), style="red")
    return line


def gateway_notes(status: GatewayStatus | None) -> list[Text]:
    """The gateway panel's notes in full, for the help screen: why announcements are off
    (the panel says only "off"), the whole warning (the panel has its first clause), the
    IGD's model (a narrow panel leaves it out)."""
    notes: list[Text] = []
    if status is None:
        return notes
    if status.listen_error:
        line = Text("Announcements ", style="bold")
        line.append("listening, but " if status.listening else "off: ",
                    style="green" if status.listening else "yellow")
        line.append(sanitize(status.listen_error))
        notes.append(line)
    if status.warning:
        line = Text("Warning: ", style="bold yellow")
        line.append(sanitize(status.warning))
        notes.append(line)
    if status.igd is not None and (model := _igd_model(status)):
        line = Text("IGD ", style="bold")
        line.append(f"{sanitize(status.igd.friendly_name, limit=32) or '?'}: {model}")
        notes.append(line)
    return notes
