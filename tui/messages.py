"""The Textual messages the engine worker posts to the app.

The worker (see :mod:`tui.engine_link`) is the only place that talks to the
network; everything it learns comes back to the UI as one of these.
"""

from __future__ import annotations

from textual.message import Message

from engine.events import Event

from .backend import EngineParts

__all__ = ["CommandDone", "CommandFailed", "EngineEvent", "EngineStarted", "EngineStopped",
           "LogLine"]


class EngineStarted(Message):
    """The manager is running; ``parts`` holds it (and the demo gateway, if any)."""

    def __init__(self, parts: EngineParts) -> None:
        super().__init__()
        self.parts = parts


class EngineStopped(Message):
    """The worker ended: after a quit (``error`` None), or because the engine failed."""

    def __init__(self, error: BaseException | None, *, quitting: bool) -> None:
        super().__init__()
        self.error = error
        self.quitting = quitting


class EngineEvent(Message):
    """One event from ``MappingManager.events()``."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class CommandDone(Message):
    """A command finished; ``text`` says what came of it (for the event log)."""

    def __init__(self, what: str, text: str) -> None:
        super().__init__()
        self.what = what
        self.text = text


class CommandFailed(Message):
    """A command failed; ``error`` says why (its text is a sentence for the user).

    ``in_events`` is true when the manager also reported the failure as an event
    (a refused or unanswered map or renewal), which the event log shows already.
    """

    def __init__(self, what: str, error: BaseException, *, in_events: bool = False) -> None:
        super().__init__()
        self.what = what
        self.error = error
        self.in_events = in_events


class LogLine(Message):
    """A line for the event log that is not a manager event: a request being sent,
    or an INFO record from the ``engine`` logger (retransmissions, dropped packets).

    ``text`` is already sanitized.
    """

    def __init__(self, wall: float, text: str, style: str = "") -> None:
        super().__init__()
        self.wall = wall
        self.text = text
        self.style = style
