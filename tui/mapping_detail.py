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

from engine.events import ManagedMapping, MappingState
from engine.protocols import protocol_name

from .formatting import PROTOCOL_LABELS, countdown, endpoint, since
from .presentation import other_port
from .safe_text import sanitize

__all__ = ["NO_SELECTION", "Asked", "detail_lines"]

NO_SELECTION = "No mapping selected: press m to map a port."


@dataclass(slots=True)
class Asked:
    """What the TUI knows of a mapping that the engine's ``ManagedMapping`` does not carry:
    the external port this session suggested, and when the mapping was first granted
    (the mapping's ``granted_at`` moves with every renewal)."""

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


def _last_answer(mapping: ManagedMapping, now: float) -> Text:
    line = Text("Gateway's last answer: ", style="dim")
    if mapping.error is not None:
        line.append(sanitize(str(mapping.error)), style="red")
    elif mapping.granted_at is not None and mapping.external_port is not None:
        where = endpoint(mapping.external_address, mapping.external_port)
        line.append(f"granted {mapping.lifetime} s on {where}, {_ago(now, mapping.granted_at)}")
    else:
        line.append("none yet", style="dim")
    return line


def _doing(mapping: ManagedMapping, now: float) -> Text | None:
    """What natdeck is doing about a mapping that is not simply active, and what keys do."""
    until = mapping.until_renewal(now)
    why = sanitize(mapping.reason) if mapping.reason else None
    if why is not None and mapping.error is not None and why == sanitize(str(mapping.error)):
        why = None  # the gateway's last answer, on the line above, says it already
    if mapping.state is MappingState.LOST:
        when = ("now" if until is None or until <= 0 else f"next try in {countdown(until)}")
        text = Text("Lost: ", style="bold red")
        if why:
            text.append(f"{why}. ")
        text.append(f"natdeck is asking the gateway for it again ({when}); "
                    "d stops that and sends the gateway a delete.")
        return text
    if mapping.state is MappingState.FAILED:
        text = Text("Failed: ", style="bold red")
        text.append(f"{why}. " if why else "")
        text.append("r asks again now; d stops natdeck asking and sends the gateway a delete.")
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
    if asked.first_granted_at is not None:
        _pair(second, "Granted", _ago(now, asked.first_granted_at))
    if mapping.renewals:
        times = "once" if mapping.renewals == 1 else f"{mapping.renewals} times"
        _pair(second, "Renewed", f"{times}, last {_ago(now, mapping.granted_at)}")
    elif mapping.granted_at is not None and asked.first_granted_at is None:
        _pair(second, "Granted", _ago(now, mapping.granted_at))
    _pair(second, "Epoch", "?" if mapping.epoch is None else str(mapping.epoch))
    _pair(second, "Nonce", "—" if mapping.nonce is None else mapping.nonce.hex())
    lines.append(second)
    lines.append(_last_answer(mapping, now))
    doing = _doing(mapping, now)
    if doing is not None:
        lines.append(doing)
    return lines
