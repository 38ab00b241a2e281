"""Quitting :class:`~tui.app.NatDeckApp`: the engine worker deletes the mappings first (unless
kept), with progress on the gateway panel; a second q exits without waiting."""

from __future__ import annotations

import asyncio
import contextlib

from engine.manager import CLOSE_DEADLINE

from .app_base import NatDeckBase
from .engine_link import Quit
from .presentation import EngineNote

__all__ = ["CLOSE_WAIT", "Quitting"]

#: How long closing the app waits for the engine worker to leave the manager: the
#: manager's own deadline for deleting the mappings, and a little more.
CLOSE_WAIT = CLOSE_DEADLINE + 1.0


class Quitting(NatDeckBase):
    """q, a second q, and the wait for the engine worker when the app closes."""

    async def on_unmount(self) -> None:
        # Textual cancels the workers when the app closes but does not wait for them.
        # Give the engine worker the time its manager takes to delete the mappings
        # (the app may be closing by another way than q: the palette, app.exit(), a
        # test ending), unless the user already asked to quit without waiting.
        if self.engine_running and not self.force_quit:
            wait = CLOSE_WAIT if self.manager is None else self.manager.close_deadline + 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.link.finished.wait(), wait)
        self._log_tap.detach()

    async def action_quit(self) -> None:
        """Quit at once; the worker deletes the mappings first (unless kept).

        A second quit while that runs exits without waiting.
        """
        if not self.engine_running or self.link.quitting:
            self.force_quit = self.engine_running
            if self.engine_running:
                self.left_behind = self._not_yet_deleted()
            self._leave(1 if self.engine_error is not None else 0)
            return
        if self.manager is not None and self.manager.keep:
            self.note = EngineNote("Quitting (keeping the mappings)…", "bold")
        else:
            self._show_quit_progress()
            self.set_interval(0.2, self._show_quit_progress, name="natdeck-quit-progress")
        self.link.send(Quit())
        self.refresh_view()

    def _not_yet_deleted(self) -> int:
        """Mappings still open at the gateway as far as natdeck knows (for the exit line)."""
        if self.manager is None or self.manager.keep:
            return 0
        progress = self.manager.closing
        if progress is None:
            return len(self.manager.mappings)
        return progress.total - progress.deleted

    def _show_quit_progress(self) -> None:
        """While quitting: how many of the mappings are deleted, and how to stop waiting."""
        progress = self.manager.closing if self.manager is not None else None
        if progress is None:
            count = len(self.manager.mappings) if self.manager is not None else 0
            text = f"Quitting: deleting {count} mapping(s)…"
        else:
            text = f"Quitting: deleted {progress.deleted}/{progress.total} mapping(s)…"
        self.note = EngineNote(f"{text} (q again to quit now and leave the rest open "
                               "until they expire)", "bold")
        self.refresh_view()
