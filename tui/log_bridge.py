"""Show the engine's INFO log records (retransmissions, dropped packets) in the event log.

The engine logs through the standard ``logging`` module under the ``engine``
logger. :class:`EngineLogHandler` turns each record into a :class:`LogLine`
message for the app. Records can quote what a gateway sent (the repr of a
decoded message), so the text is sanitized; it is never parsed as markup.

A flood of one kind of record (a host spoofing the gateway's address: each datagram
dropped is logged) is shown as :data:`BURST` lines a second, then a count of the
rest (with the next record of that kind): a line each kept the UI writing the event
log instead of answering keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from textual.message import Message

from .messages import LogLine
from .safe_text import sanitize

__all__ = ["BURST", "EngineLogHandler", "EngineLogTap"]

ENGINE_LOGGER = "engine"
#: Lines of one kind (one logger, one format string) shown a second at most.
BURST = 10

_LEVEL_STYLE = {logging.WARNING: "yellow", logging.ERROR: "bold red",
                logging.CRITICAL: "bold red"}


class EngineLogHandler(logging.Handler):
    """A handler that posts every record as a :class:`LogLine` (``post`` is thread-safe)."""

    def __init__(self, post: Callable[[Message], object], level: int = logging.INFO) -> None:
        super().__init__(level)
        self._post = post
        # Per kind (logger, format string: a few dozen in the engine): the second counted
        # from, the records in it, and the wall time of the last one.
        self._kinds: dict[tuple[str, str], list[float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg
        kind = (record.name, msg if isinstance(msg, str) else type(msg).__name__)  # hashable
        seen = self._kinds.get(kind)
        if seen is None or record.created - seen[0] >= 1.0:
            if seen is not None and seen[1] > BURST:
                self._said_more(record.name, int(seen[1]) - BURST, seen[2])
            self._kinds[kind] = [record.created, 1.0, record.created]
        else:
            seen[1] += 1
            seen[2] = record.created
            if seen[1] > BURST:
                return
        try:
            text = record.getMessage()
        except Exception:  # a bad format string must not break the UI
            text = str(record.msg)
        source = record.name.removeprefix(f"{ENGINE_LOGGER}.")
        style = _LEVEL_STYLE.get(record.levelno, "dim")
        self._post(LogLine(record.created, sanitize(f"[{source}] {text}"), style))

    def _said_more(self, name: str, more: int, wall: float) -> None:
        source = name.removeprefix(f"{ENGINE_LOGGER}.")
        self._post(LogLine(wall, f"[{source}] … and {more} more like it within a second",
                           "dim"))


class EngineLogTap:
    """Attaches an :class:`EngineLogHandler` to the ``engine`` logger while the app runs.

    The logger's level is lowered to ``level`` if it is higher (so INFO records are
    made at all) and restored by :meth:`detach`.
    """

    def __init__(self, handler: EngineLogHandler, level: int = logging.INFO) -> None:
        self.handler = handler
        self.level = level
        self._logger = logging.getLogger(ENGINE_LOGGER)
        self._previous: int | None = None

    def attach(self) -> None:
        """Start showing records."""
        if self._previous is not None:
            return
        self._previous = self._logger.level
        if self._logger.getEffectiveLevel() > self.level:
            self._logger.setLevel(self.level)
        self._logger.addHandler(self.handler)

    def detach(self) -> None:
        """Stop showing records and restore the logger's level."""
        if self._previous is None:
            return
        self._logger.removeHandler(self.handler)
        self._logger.setLevel(self._previous)
        self._previous = None
