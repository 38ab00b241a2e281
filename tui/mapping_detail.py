"""The detail line under the mappings table: everything known about the selected mapping.

Pure, like :mod:`tui.presentation`: a :class:`~engine.events.ManagedMapping`,
what this session asked for it (:class:`Asked`) and the loop time in, styled
lines out. The table's cells are short; this is where a reason is shown in
full (wrapped by the widget), with the nonce, the epoch, when the mapping was
granted and renewed, and what the gateway answered last.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from engine.errors import GatewayTimeout, ResultCodeError
from engine.events import ManagedMapping, MappingState, error_words
from engine.protocols import protocol_name

from .formatting import PROTOCOL_LABELS, countdown, endpoint, since
from .presentation import other_port, short_error
from .safe_text import sanitize

__all__ = ["NO_SELECTION", "Asked", "detail_lines"]

NO_SELECTION = "No mapping selected: press m to map a port."


@dataclass(slots=True)
class Asked:
    """What the app remembers of a mapping it asked for. The engine's
    :class:`~engine.events.ManagedMapping` now carries both (``suggested_external_port``,
    ``first_granted_at``) and wins; these are only read where it has nothing (a mapping
    from an engine that does not fill them)."""

    suggested: int | None = None
    """The external port this session suggested (None: not known, or no port)."""
    first_granted_at: float | None = None
    """Loop time of the first grant this session saw."""


def _pair(line: Text, label: str, value: str, style: str = "") -> None:
    if line.plain:
        line.append("  ·  ", style="dim")
    line.append(f"{label} ", style="dim")
    line.append(value, style=style)


def _ago(now: float, at: float | None) -> str:
    return since(None if at is None else max(now - at, 0.0))


def _last_answer(mapping: ManagedMapping, now: float) -> list[Text]:
    """The gateway's last answer (a grant or a result code), and a later request that got
    none (a timeout is not an answer: the one before it still says what the gateway holds)."""
    lines = []
    line = Text("Last answer: ", style="dim")
    answer = mapping.last_answer
    if answer is not None:
        style = "" if answer.granted else "red"
        line.append(sanitize(answer.describe()), style=style)
        line.append(f", {_ago(now, answer.at)}", style="dim")
    elif isinstance(mapping.error, ResultCodeError):
        line.append(sanitize(str(mapping.error)), style="red")
    elif mapping.granted_at is not None and mapping.external_port is not None:
        where = endpoint(mapping.external_address, mapping.external_port)
        line.append(f"granted {mapping.lifetime} s on {where}, {_ago(now, mapping.granted_at)}")
    else:
        line.append("none yet", style="dim")
    lines.append(line)
    error = mapping.error
    if error is not None and not isinstance(error, ResultCodeError):
        # Short: the event log has the whole sentence.
        unanswered = Text("Since then: ", style="dim")
        said = short_error(error)
        if isinstance(error, GatewayTimeout):
            said = f"{error.request}: {said} over {error.elapsed:.1f} s"
        unanswered.append(sanitize(said), style="yellow")
        lines.append(unanswered)
    return lines


def _reason(mapping: ManagedMapping) -> str | None:
    why = sanitize(mapping.reason) if mapping.reason else None
    if why is None or mapping.error is None:
        return why
    said = {sanitize(str(mapping.error)),
            sanitize(error_words(mapping.error, answered_before=True))}
    return None if why in said else why  # the lines above say it already


def _doing(mapping: ManagedMapping, now: float) -> Text | None:
    """What natdeck is doing about a mapping that is not simply active, and what keys do."""
    until = mapping.until_renewal(now)
    when = "now" if until is None or until <= 0 else f"in {countdown(until)}"
    why = _reason(mapping)
    if mapping.state is MappingState.LOST:
        text = Text("Lost: ", style="bold red")
        if why:
            text.append(f"{why}. ")
        text.append(f"natdeck is asking the gateway for it again ({when}); r asks now; "
                    "d stops that and sends the gateway a delete.")
        return text
    if mapping.state is MappingState.CONFIRMING:
        text = Text("Confirming: ", style="bold yellow")
        if why:
            text.append(f"{why}. ")
        text.append(f"the gateway said something changed, so natdeck asks for the mapping "
                    f"again ({when}) to be sure it still holds it; r asks now; d sends the "
                    "gateway a delete.")
        return text
    if mapping.state is MappingState.FAILED:
        text = Text("Failed: ", style="bold red")
        text.append(f"{why}. " if why else "")
        text.append("natdeck asks again when something changes; r asks now; d stops natdeck "
                    "asking and sends the gateway a delete.")
        return text
    if mapping.state is MappingState.RENEWING and mapping.failures:
        text = Text("Renewing: ", style="yellow")
        text.append(f"{mapping.failures} renewal(s) failed"
                    f"{f' ({why})' if why else ''}; the mapping holds until it expires.")
        return text
    return None


def detail_lines(mapping: ManagedMapping | None, now: float,
                 asked: Asked | None = None) -> list[Text]:
    """The detail lines for ``mapping`` (None: nothing is selected) at loop time ``now``."""
    if mapping is None:
        return [Text(NO_SELECTION, style="dim")]
    asked = asked if asked is not None else Asked()
    first = Text()
    first.append(f"{protocol_name(int(mapping.protocol))} {mapping.internal_port}", style="bold")
    if mapping.external_port is not None:
        first.append(f" → {endpoint(mapping.external_address, mapping.external_port)}",
                     style="bold")
    if mapping.via:
        first.append(f" via {PROTOCOL_LABELS.get(mapping.via, mapping.via)}")
    other = other_port(mapping, asked.suggested)
    if other is not None:
        first.append(f"  the gateway gave external port {mapping.external_port}, "
                     f"not the {other} suggested", style="yellow")
    lines = [first]

    second = Text()
    granted = mapping.first_granted_at
    if granted is None:
        granted = asked.first_granted_at or mapping.granted_at
    if granted is not None:
        _pair(second, "Granted", _ago(now, granted))
    if mapping.renewals:
        times = "once" if mapping.renewals == 1 else f"{mapping.renewals} times"
        last = mapping.renewed_at if mapping.renewed_at is not None else mapping.granted_at
        _pair(second, "Renewed", f"{times}, last {_ago(now, last)}")
    _pair(second, "Epoch", "?" if mapping.epoch is None else str(mapping.epoch))
    _pair(second, "Nonce", "—" if mapping.nonce is None else mapping.nonce.hex())
    lines.append(second)
    lines.extend(_last_answer(mapping, now))
    doing = _doing(mapping, now)
    if doing is not None:
        lines.append(doing)
    return lines
