"""Show the engine's INFO log records (retransmissions, dropped packets) in the event log.

The engine logs through the standard ``logging`` module under the ``engine``
logger. :class:`EngineLogHandler` turns each record into a :class:`LogLine`
message for the app. Records can quote what a gateway sent (the repr of a
decoded message), so the text is sanitized; it is never parsed as markup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from textual.message import Message

from .messages import LogLine
from .safe_text import sanitize

__all__ = ["EngineLogHandler", "EngineLogTap"]

ENGINE_LOGGER = "engine"

_LEVEL_STYLE = {logging.WARNING: "yellow", logging.ERROR: "bold red",
                logging.CRITICAL: "bold red"}


class EngineLogHandler(logging.Handler):
    """A handler that posts every record as a :class:`LogLine` (``post`` is thread-safe)."""

    def __init__(self, post: Callable[[Message], object], level: int = logging.INFO) -> None:
        super().__init__(level)
        self._post = post

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string must not break the UI
            text = str(record.msg)
        source = record.name.removeprefix(f"{ENGINE_LOGGER}.")
        style = _LEVEL_STYLE.get(record.levelno, "dim")
        self._post(LogLine(record.created, sanitize(f"[{source}] {text}"), style))


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
