"""How :class:`~tui.app.NatDeckApp` takes the engine worker's messages (:mod:`tui.messages`).

Each event becomes a sanitized, styled line in the event log and marks its mapping's row to
repaint with the next flush; what an event tells about a mapping that the manager's view does
not (the external port asked for, when it was first granted) is kept on the main screen.
"""

from __future__ import annotations

import time

from engine.errors import NatDeckError
from engine.events import (
    AnnouncementsOff,
    Event,
    ExternalAddressChanged,
    GatewayReachable,
    GatewayRestarted,
    GatewayUnreachable,
    ManagedMapping,
    MappingAdded,
    MappingFailed,
    MappingKey,
    MappingLost,
    MappingRecovered,
    MappingRemoved,
    MappingRenewalFailed,
    MappingsConfirming,
    error_words,
)

from .app_base import NatDeckBase
from .formatting import countdown
from .mapping_detail import Asked
from .messages import CommandDone, CommandFailed, EngineEvent, EngineStarted, EngineStopped, LogLine
from .presentation import EngineNote, other_port, short_error
from .safe_text import sanitize
from .screens.main import NARROW

__all__ = ["EngineMessages"]

_EVENT_STYLE: dict[type[Event], str] = {
    MappingAdded: "green",
    MappingRecovered: "green",
    MappingRemoved: "",
    MappingLost: "bold red",
    MappingFailed: "bold red",
    MappingRenewalFailed: "yellow",
    ExternalAddressChanged: "bold cyan",
    GatewayRestarted: "bold yellow",
    GatewayUnreachable: "bold red",
    GatewayReachable: "green",
    AnnouncementsOff: "yellow",
    MappingsConfirming: "yellow",
}


class EngineMessages(NatDeckBase):
    """The handlers of the engine worker's messages."""

    def on_engine_started(self, message: EngineStarted) -> None:
        self.manager = message.parts.manager
        self.engine_started = True
        self.note = None
        if self.manager.keep:
            self.note = EngineNote("Mappings are kept when natdeck quits (--keep).", "dim")
        self.refresh_view()

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        text = sanitize(event.summary)
        retry_at = getattr(event, "retry_at", None)
        if isinstance(retry_at, float):
            text += f" (next try in {countdown(retry_at - event.at)})"
        key = getattr(event, "key", None)
        key = key if isinstance(key, MappingKey) else None
        text += self._note_event(event, key)
        self.log_line(event.wall, text, _EVENT_STYLE.get(type(event), ""))
        if key is not None:
            self._dirty[key] = None
        self._schedule_flush()

    def _note_event(self, event: Event, key: MappingKey | None) -> str:
        """Keep what an event tells about a mapping that its view does not; return what to
        add to its log line (a grant on another external port than the one suggested)."""
        if key is None:
            return ""
        if isinstance(event, MappingRemoved) or (
                isinstance(event, MappingFailed) and self.manager is not None
                and key not in self.manager.mappings):
            self.main.asked.pop(key, None)  # gone, or never granted
            return ""
        mapping = getattr(event, "mapping", None)
        if not isinstance(mapping, ManagedMapping):
            return ""
        asked = self.main.asked.setdefault(key, Asked())
        if isinstance(event, MappingAdded) and asked.first_granted_at is None:
            asked.first_granted_at = event.at
        # Another external port than the one suggested is said by the engine's own summary
        # (MappingAdded, from ManagedMapping.suggested_external_port); say it only where it
        # does not, so that the line says it once.
        other = other_port(mapping, asked.suggested)
        if other is None or "gave external port" in event.summary:
            return ""
        return (f" (the gateway gave external port {mapping.external_port}, "
                f"not the {other} suggested)")

    def on_command_done(self, message: CommandDone) -> None:
        self.log_line(time.time(), sanitize(message.text), "green")

    def on_command_failed(self, message: CommandFailed) -> None:
        # Without the "is it the right gateway?" hint once the gateway has answered before.
        answered = self.manager is not None and self.manager.status.last_contact is not None
        error = sanitize(error_words(message.error, answered_before=answered)
                         if isinstance(message.error, NatDeckError) else str(message.error))
        if not message.in_events:
            self.log_line(time.time(), f"{sanitize(message.what)} failed: {error}", "bold red")
        if self.size.width < NARROW and isinstance(message.error, NatDeckError):
            # A toast is half the screen wide: the sentence took 7 of 24 rows a toast, and a
            # few failures hid the table. The event log, under the table, keeps the sentence.
            error = short_error(message.error)
        self.notify(error, title=f"Could not {sanitize(message.what, limit=60)}",
                    severity="error", timeout=8)

    def on_log_line(self, message: LogLine) -> None:
        self.log_line(message.wall, message.text, message.style)

    def on_engine_stopped(self, message: EngineStopped) -> None:
        self.engine_running = False
        if message.quitting:
            self._leave(0)
            return
        error = message.error
        self.engine_error = error
        if isinstance(error, NatDeckError):
            text = str(error)
        elif error is None:
            text = "the engine stopped"
        else:
            text = f"{type(error).__name__}: {error}"
        self.note = EngineNote(f"Engine stopped: {text} (press q to quit)", "bold red")
        self.log_line(time.time(), sanitize(f"engine stopped: {text}"), "bold red")
        self.notify(sanitize(text), title="The engine stopped", severity="error", timeout=10)
        self.refresh_view()
